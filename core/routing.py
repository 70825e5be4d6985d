"""Routes that declare who may use them.

Every HTTP and WebSocket route of the application is built with `Route`,
`WebSocketRoute` or `Mount` from this module, each with an `access` level. The
declaration states the rule that the endpoint enforces. The access matrix test
(tests/integration/test_access_matrix.py) walks the router, fails on a route that
declares nothing, and checks each level against every kind of person.

`Route` also checks the CSRF token of every request with a method other than GET,
HEAD and OPTIONS, before its endpoint runs, so that no form or JSON post can go
without it.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from typing import Any

from starlette import routing
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from core.web import check_csrf, current_user

# Methods that change nothing, so a request from another site cannot do harm with them.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Access(enum.StrEnum):
    """The people allowed to use a route. Each level names the check its endpoint makes."""

    # Anyone, logged in or not.
    PUBLIC = "public"
    # Anyone holding the secret token in the URL (calendar feed, password reset link,
    # HLS stream link).
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


Endpoint = Callable[[Request], Awaitable[Response]]


def with_csrf_check(endpoint: Endpoint, access: Access) -> Endpoint:
    """Wrap `endpoint` so that a request with an unsafe method needs the session's CSRF
    token, in the `csrf_token` form field or the X-CSRF-Token header.

    A visitor who is not logged in is let through on routes for logged-in people, whose
    endpoint then sends them to the log-in page without changing anything. The form is
    parsed once: Starlette keeps it on the request for the endpoint.
    """

    @functools.wraps(endpoint)
    async def checked(request: Request) -> Response:
        if request.method not in SAFE_METHODS:
            open_to_visitors = access in (Access.PUBLIC, Access.TOKEN)
            if open_to_visitors or await current_user(request) is not None:
                # Read first, so that an endpoint that reads the raw body (a JSON one
                # sent a form) gets it from the cache. Parsing a form from the stream
                # would leave it consumed, and body() would then raise RuntimeError.
                await request.body()
                check_csrf(request, await request.form())
        return await endpoint(request)

    return checked


class Route(routing.Route):
    """A Starlette `Route` with the access level its endpoint enforces, and the CSRF
    check of `with_csrf_check` on its unsafe methods."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        access: Access,
        methods: Collection[str] | None = None,
        name: str | None = None,
    ) -> None:
        unsafe = {method.upper() for method in methods or ()} - SAFE_METHODS
        if unsafe:
            endpoint = with_csrf_check(endpoint, access)
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
