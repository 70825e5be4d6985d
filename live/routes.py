"""Agenda, schedule form, live page, personal agenda and the iCalendar feed endpoint."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from accounts.models import User
from chat.revocations import Revocation, RevocationBus, RevocationReason
from core.database import utc_now
from core.routing import Access, Route
from core.settings import DEFAULT_TIME_ZONE
from core.web import (
    ID_MAX,
    current_user,
    database_of,
    render,
    require_user,
    settings_of,
)
from live import calendar, moderation, service
from live.access import LiveRole, is_removed, live_role
from live.models import LIVE_ID_MAX, Live, LiveState
from live.service import LiveDetails, LiveError
from recordings.service import latest_recording, recent_replays

logger = logging.getLogger(__name__)

# Maps each state to the badge shown beside a live's title.
STATE_LABELS: dict[LiveState, str] = {
    LiveState.SCHEDULED: "Programmé",
    LiveState.OPEN: "Bientôt en direct",
    LiveState.LIVE: "En direct",
    LiveState.ENDED: "Terminé",
    LiveState.CANCELLED: "Annulé",
    LiveState.INTERRUPTED: "Interrompu",
}
LIVE_NOT_FOUND = "Ce live n'existe pas."
# Maps the LiveError codes of a removal to the HTTP status returned; others are 409.
REMOVAL_ERROR_STATUS = {"live_not_found": 404, "not_host": 403, "not_participant": 404}


def _viewer_zone(user: User | None) -> str:
    return user.time_zone if user else DEFAULT_TIME_ZONE


def _live_id(request: Request) -> int:
    """Return the live id of the request's path; raise a 404 when it names no possible live."""
    live_id: int = request.path_params["live_id"]
    # The id convertor turns ids past the 32-bit column into 0, which names no live.
    if live_id < 1 or live_id > LIVE_ID_MAX:
        raise HTTPException(404, LIVE_NOT_FOUND)
    return live_id


def _site_url(request: Request) -> str:
    """Return the public origin for absolute links: SITE_URL, or else the request's base URL."""
    return (settings_of(request).site_url or str(request.base_url)).rstrip("/")


def _live_context() -> dict[str, Any]:
    return {
        "state_labels": STATE_LABELS,
        # the same labels by state name, for web/static/live.js
        "state_label_values": {state.value: label for state, label in STATE_LABELS.items()},
        "LiveState": LiveState,
        "recording_notice": calendar.RECORDING_NOTICE,
    }


# agenda


async def agenda(request: Request) -> Response:
    user = await current_user(request)
    zone_name = _viewer_zone(user)
    async with database_of(request).session() as session:
        lives = await service.coming_lives(session)
        live_ids = [live.id for live in lives]
        counts = await service.registration_counts(session, live_ids)
        registered = (
            await service.registered_live_ids(session, user.id, live_ids) if user else set()
        )
        replays = await recent_replays(session)
    context = {
        "evenings": service.group_by_evening(lives, zone_name),
        "replays": replays,
        "counts": counts,
        "registered": registered,
        "viewer_zone": zone_name,
        **_live_context(),
    }
    return await render(request, "live/agenda.html", context)


# scheduling and editing


def _form_values(form: FormData) -> dict[str, str]:
    keys = ("title", "description", "start_day", "start_time", "time_zone", "duration_minutes")
    return {key: str(form.get(key, "")) for key in keys}


def _values_of(details: LiveDetails) -> dict[str, str]:
    return {
        "title": details.title,
        "description": details.description,
        "start_day": details.start_day.isoformat(),
        "start_time": details.start_time.strftime("%H:%M"),
        "time_zone": details.time_zone,
        "duration_minutes": str(details.duration_minutes),
    }


def _form_context(values: dict[str, str], live: Live | None = None) -> dict[str, Any]:
    return {
        "form": values,
        "live": live,
        "limits": {
            "title": service.TITLE_MAX_CHARS,
            "description": service.DESCRIPTION_MAX_CHARS,
            "duration_min": service.DURATION_MIN_MINUTES,
            "duration_max": service.DURATION_MAX_MINUTES,
        },
    }


async def new_live(request: Request) -> Response:
    user = await require_user(request)
    if request.method == "GET":
        start_day, start_time = service.default_start(user.time_zone)
        values = {
            "title": "",
            "description": "",
            "start_day": start_day.isoformat(),
            "start_time": start_time.strftime("%H:%M"),
            "time_zone": user.time_zone,
            "duration_minutes": str(service.DEFAULT_DURATION_MINUTES),
        }
        return await render(request, "live/new.html", _form_context(values))

    form = await request.form()
    values = _form_values(form)
    try:
        details = service.parse_details(**values)
        async with database_of(request).session() as session:
            live = await service.schedule_live(session, user.id, details)
    except LiveError as error:
        context = {**_form_context(values), "error": error.message}
        return await render(request, "live/new.html", context, 400)
    return RedirectResponse(f"/lives/{live.id}", status_code=303)


async def edit_live(request: Request) -> Response:
    user = await require_user(request)
    live_id = _live_id(request)
    async with database_of(request).session() as session:
        live = await service.get_live(session, live_id)
    if live is None:
        raise HTTPException(404, LIVE_NOT_FOUND)
    if live.host_id != user.id:
        logger.warning("live %s: edit page rejected for user %s, not the host", live_id, user.id)
        raise HTTPException(403, "Seule la personne qui anime ce live peut le modifier.")
    if live.state not in service.NOT_STARTED_STATES:
        return await _render_live_page(
            request,
            live_id,
            error="Ce live a commencé ou est annulé : il ne peut plus être modifié.",
            status_code=409,
        )

    if request.method == "GET":
        return await render(
            request, "live/new.html", _form_context(_values_of(service.details_of(live)), live)
        )

    form = await request.form()
    values = _form_values(form)
    try:
        details = service.parse_details(**values)
        async with database_of(request).session() as session:
            await service.edit_live(session, live_id, user.id, details)
    except LiveError as error:
        context = {**_form_context(values, live), "error": error.message}
        return await render(request, "live/new.html", context, 400)
    return RedirectResponse(f"/lives/{live_id}", status_code=303)


# the live page and its one-click actions


async def _render_live_page(
    request: Request, live_id: int, *, error: str | None = None, status_code: int = 200
) -> Response:
    user = await current_user(request)
    async with database_of(request).session() as session:
        live = await service.get_live(session, live_id)
        if live is None:
            raise HTTPException(404, LIVE_NOT_FOUND)
        registration_count = await service.count_registrations(session, live_id)
        role = await live_role(session, live, user.id) if user else None
        removed = user is not None and await is_removed(session, live_id, user.id)
        recording = await latest_recording(session, live_id)

    is_host = role is LiveRole.HOST
    finished = live.state in service.FINISHED_STATES
    context = {
        "live": live,
        "is_host": is_host,
        "role": role.value if role else None,
        "is_registered": role is LiveRole.ATTENDEE,
        "registration_count": registration_count,
        "recording": recording,
        "viewer_zone": _viewer_zone(user),
        "removed": removed,
        "can_register": user is not None and role is None and not finished and not removed,
        "can_change": is_host and live.state in service.NOT_STARTED_STATES,
        # The stage (video and chat) is for the host and registered colleagues until the
        # live is over. An ended live has its replay page instead.
        "show_stage": role is not None and not finished,
        "error": error,
        **_live_context(),
    }
    return await render(request, "live/live.html", context, status_code)


async def live_page(request: Request) -> Response:
    return await _render_live_page(request, _live_id(request))


async def _user_for_action(request: Request) -> tuple[User | None, int]:
    """Return the logged-in user (None when logged out) and the live id. The route
    checked the CSRF token of a logged-in person's form (core.routing.Route)."""
    live_id = _live_id(request)
    return await current_user(request), live_id


def _log_in_first(live_id: int) -> Response:
    # After logging in, the person comes back to the live page, where the button is.
    return RedirectResponse(f"/login?next=/lives/{live_id}", status_code=303)


async def register(request: Request) -> Response:
    user, live_id = await _user_for_action(request)
    if user is None:
        return _log_in_first(live_id)
    try:
        async with database_of(request).session() as session:
            await service.register(session, live_id, user.id)
    except LiveError as error:
        if error.code == "live_not_found":
            raise HTTPException(404, LIVE_NOT_FOUND) from error
        return await _render_live_page(request, live_id, error=error.message, status_code=409)
    return RedirectResponse(f"/lives/{live_id}", status_code=303)


async def unregister(request: Request) -> Response:
    user, live_id = await _user_for_action(request)
    if user is None:
        return _log_in_first(live_id)
    try:
        async with database_of(request).session() as session:
            await service.unregister(session, live_id, user.id)
    except LiveError as error:
        if error.code == "live_not_found":
            raise HTTPException(404, LIVE_NOT_FOUND) from error
        return await _render_live_page(request, live_id, error=error.message, status_code=409)
    return RedirectResponse(f"/lives/{live_id}", status_code=303)


async def cancel(request: Request) -> Response:
    user, live_id = await _user_for_action(request)
    if user is None:
        return _log_in_first(live_id)
    try:
        async with database_of(request).session() as session:
            await service.cancel_live(session, live_id, user.id)
    except LiveError as error:
        if error.code == "live_not_found":
            raise HTTPException(404, LIVE_NOT_FOUND) from error
        status_code = 403 if error.code == "not_host" else 409
        return await _render_live_page(
            request, live_id, error=error.message, status_code=status_code
        )
    return RedirectResponse(f"/lives/{live_id}", status_code=303)


# moderation


async def remove_participant(request: Request) -> Response:
    """Remove a registered colleague from the live, `{"user_id": N}`, on the host's
    request; 204 on success. Their chat and signaling sockets close at once."""
    user = await require_user(request)
    live_id = _live_id(request)
    body = await request.body()
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise HTTPException(
            400, "Le corps de la requête n'est pas un objet JSON valide."
        ) from error
    target = payload.get("user_id") if isinstance(payload, dict) else None
    if not isinstance(target, int) or isinstance(target, bool) or not 1 <= target <= ID_MAX:
        raise HTTPException(400, "Le champ user_id doit être l'identifiant d'une personne.")

    try:
        async with database_of(request).session() as session:
            live = await moderation.remove_participant(session, live_id, target, user.id, utc_now())
    except LiveError as error:
        status_code = REMOVAL_ERROR_STATUS.get(error.code, 409)
        if error.code == "not_host":
            logger.warning("live %s: removal rejected for user %s, not the host", live_id, user.id)
        raise HTTPException(status_code, error.message) from error

    revocations: RevocationBus = request.app.state.revocations
    await revocations.revoke(
        Revocation(user_id=target, reason=RevocationReason.REMOVED, channel=live.channel)
    )
    return Response(status_code=204)


# personal agenda and calendar feed


async def my_agenda(request: Request) -> Response:
    user = await require_user(request)
    async with database_of(request).session() as session:
        personal = await service.personal_agenda(session, user.id)
        token = await calendar.feed_token(session, user.id)
    feed_url = _site_url(request) + calendar.feed_path(token)
    context = {
        "coming": personal.coming,
        "past": personal.past,
        "feed_url": feed_url,
        "webcal_url": "webcal://" + feed_url.split("://", 1)[1],
        "revoked": request.query_params.get("lien") == "nouveau",
        "viewer_zone": user.time_zone,
        **_live_context(),
    }
    return await render(request, "live/my_agenda.html", context)


async def revoke_calendar(request: Request) -> Response:
    user = await require_user(request)
    async with database_of(request).session() as session:
        await calendar.revoke_feed_token(session, user.id)
    return RedirectResponse("/my-agenda?lien=nouveau", status_code=303)


async def calendar_feed(request: Request) -> Response:
    token: str = request.path_params["token"]
    async with database_of(request).session() as session:
        owner = await calendar.feed_owner(session, token)
        if owner is None:
            # INFO, not WARNING: calendar applications keep polling a revoked URL every
            # hour, which is expected. The token itself is never logged.
            logger.info(
                "calendar feed: unknown or revoked token client=%s",
                request.client.host if request.client else "?",
            )
            raise HTTPException(404)
        body = await calendar.feed_of_person(
            session, owner, site_url=_site_url(request), now=utc_now()
        )
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={
            "Content-Disposition": 'inline; filename="veillee.ics"',
            # The URL is a secret: keep the feed out of shared caches and search engines.
            "Cache-Control": "private, no-cache",
            "X-Robots-Tag": "noindex",
            "Referrer-Policy": "no-referrer",
        },
    )


routes = [
    Route("/", agenda, access=Access.PUBLIC, name="agenda"),
    Route("/lives/new", new_live, access=Access.MEMBER, methods=["GET", "POST"], name="new_live"),
    # The live page is public; its stage (video and chat) shows only to participants.
    Route("/lives/{live_id:id}", live_page, access=Access.PUBLIC, name="live"),
    Route(
        "/lives/{live_id:id}/edit",
        edit_live,
        access=Access.LIVE_HOST,
        methods=["GET", "POST"],
        name="edit_live",
    ),
    Route(
        "/lives/{live_id:id}/register",
        register,
        access=Access.MEMBER,
        methods=["POST"],
        name="register",
    ),
    Route(
        "/lives/{live_id:id}/unregister",
        unregister,
        access=Access.MEMBER,
        methods=["POST"],
        name="unregister",
    ),
    Route(
        "/lives/{live_id:id}/cancel",
        cancel,
        access=Access.LIVE_HOST,
        methods=["POST"],
        name="cancel_live",
    ),
    Route(
        "/api/lives/{live_id:id}/removals",
        remove_participant,
        access=Access.LIVE_HOST,
        methods=["POST"],
        name="remove_participant",
    ),
    Route("/my-agenda", my_agenda, access=Access.MEMBER, name="my_agenda"),
    Route(
        "/calendar/revoke",
        revoke_calendar,
        access=Access.MEMBER,
        methods=["POST"],
        name="revoke_calendar",
    ),
    Route("/calendar/{token}.ics", calendar_feed, access=Access.TOKEN, name="calendar_feed"),
]
