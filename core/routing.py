"""Routes that declare who may use them.

Every HTTP and WebSocket route of the application is built with `Route`,
`WebSocketRoute` or `Mount` from this module, each with an `access` level. The
declaration states the rule that the endpoint enforces. The access matrix test
(tests/integration/test_access_matrix.py) walks the router, fails on a route that
declares nothing, and checks each level against every kind of person.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any

from starlette import routing
from starlette.types import ASGIApp


class Access(enum.StrEnum):
    """The people allowed to use a route. Each level names the check its endpoint makes."""

    # Anyone, logged in or not.
    PUBLIC = "public"
    # Anyone holding the secret token in the URL (calendar feed, password reset link).
    TOKEN = "token"  # noqa: S105 - the name of a level, not a secret
    # Any logged-in person.
    MEMBER = "member"
    # A logged-in person holding an unexpired link signed with the site's key.
    SIGNED_LINK = "signed_link"
    # The live's host or one of its registered attendees.
    LIVE_PARTICIPANT = "live_participant"
    # The live's host.
    LIVE_HOST = "live_host"
    # The people the channel's policy lets read: for `live:<id>` the live's participants,
    # for `conversation:<id>` its mentor and mentee.
    CHANNEL_MEMBER = "channel_member"
    # The people the channel's policy lets moderate: the host, for a live's channel.
    CHANNEL_MODERATOR = "channel_moderator"
    # The mentor or the mentee of the conversation.
    CONVERSATION_MEMBER = "conversation_member"
    # The new teacher who made the mentoring request.
    REQUEST_MENTEE = "request_mentee"
    # A mentor to whom the mentoring request was sent.
    REQUEST_MENTOR = "request_mentor"
    # A person with the operator role.
    OPERATOR = "operator"


class Route(routing.Route):
    """A Starlette `Route` with the access level its endpoint enforces."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        access: Access,
        methods: Collection[str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(path, endpoint, methods=methods, name=name)
        self.access = access


class WebSocketRoute(routing.WebSocketRoute):
    """A Starlette `WebSocketRoute` with the access level its endpoint enforces."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        access: Access,
        name: str | None = None,
    ) -> None:
        super().__init__(path, endpoint, name=name)
        self.access = access


class Mount(routing.Mount):
    """A Starlette `Mount` whose whole subtree has one access level."""

    def __init__(
        self,
        path: str,
        app: ASGIApp | None = None,
        *,
        access: Access,
        routes: Sequence[routing.BaseRoute] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(path, app=app, routes=routes, name=name)
        self.access = access


def access_of(route: routing.BaseRoute) -> Access | None:
    """Return the level `route` declares, or None for a route built without one."""
    if isinstance(route, Route | WebSocketRoute | Mount):
        return route.access
    return None


def walk_routes(
    routes: Sequence[routing.BaseRoute], prefix: str = ""
) -> Iterator[tuple[str, routing.BaseRoute]]:
    """Yield (full path, route) for every route, then every route inside each mount."""
    for route in routes:
        path = prefix + str(getattr(route, "path", ""))
        yield path, route
        if isinstance(route, routing.Mount):
            yield from walk_routes(route.routes, path)
