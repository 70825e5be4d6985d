"""Mentoring pages: the dashboard, the mentor offer, help requests and their ranking,
a mentor's requests, notifications, and the operator's batch page.

The conversation page and the JSON endpoints are in mentoring.conversation_routes.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

import mentoring.conversation_routes
from accounts.models import Role, User
from core.routing import Access, Route
from core.web import ID_MAX, database_of, render, require_user
from mentoring import conversations, notifications, queries
from mentoring.batch import run_batch
from mentoring.catalog import ACADEMIES, DISCIPLINES, LEVELS
from mentoring.errors import ErrorKind, MentoringError
from mentoring.models import AttemptOutcome, OfferStatus, RequestStatus
from mentoring.service import MentoringService
from mentoring.validation import CAPACITY_MAX, NEED_MAX_CHARS, PRESENTATION_MAX_CHARS, parse_need
from mentoring.validation import parse_offer as parse_offer_form

logger = logging.getLogger(__name__)

# Maps each error kind to the HTTP status of the page that shows it.
STATUS_OF_KIND: dict[ErrorKind, int] = {
    ErrorKind.INVALID: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TRY_AGAIN: 503,
}

OFFER_STATUS_LABELS = {
    OfferStatus.ACTIVE: "Active : vous pouvez recevoir des demandes",
    OfferStatus.PAUSED: "En pause : vous ne recevez pas de nouvelle demande",
    OfferStatus.WITHDRAWN: "Retirée",
}
REQUEST_STATUS_LABELS = {
    RequestStatus.PENDING: "En attente de la réponse d'un mentor",
    RequestStatus.WAITING: "En attente de la prochaine répartition",
    RequestStatus.MATCHED: "Acceptée : un mentor vous accompagne",
    RequestStatus.CANCELLED: "Retirée",
}
OUTCOME_LABELS = {
    AttemptOutcome.PENDING: "en attente de réponse",
    AttemptOutcome.ACCEPTED: "acceptée",
    AttemptOutcome.DECLINED: "déclinée",
    AttemptOutcome.TIMED_OUT: "sans réponse dans le délai",
    AttemptOutcome.WITHDRAWN: "retirée",
}
# Maps the offer form's buttons to the status they set.
OFFER_ACTIONS = {
    "pause": OfferStatus.PAUSED,
    "resume": OfferStatus.ACTIVE,
    "withdraw": OfferStatus.WITHDRAWN,
}
OPERATOR_ONLY = "Cette page est réservée aux opératrices et opérateurs de Veillée."


def mentoring_of(connection: HTTPConnection) -> MentoringService:
    service: MentoringService = connection.app.state.mentoring
    return service


def catalog_context() -> dict[str, Any]:
    return {
        "DISCIPLINES": DISCIPLINES,
        "LEVELS": LEVELS,
        "ACADEMIES": ACADEMIES,
        "OFFER_STATUS_LABELS": OFFER_STATUS_LABELS,
        "REQUEST_STATUS_LABELS": REQUEST_STATUS_LABELS,
        "OUTCOME_LABELS": OUTCOME_LABELS,
        "OfferStatus": OfferStatus,
        "RequestStatus": RequestStatus,
        "AttemptOutcome": AttemptOutcome,
    }


async def _page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    return await render(request, template, {**catalog_context(), **context}, status_code)


def _raise_http(error: MentoringError) -> HTTPException:
    return HTTPException(STATUS_OF_KIND[error.kind], error.message)


# dashboard


async def dashboard(request: Request) -> Response:
    user = await require_user(request)
    service = mentoring_of(request)
    offer = await service.get_offer(user.id)
    async with database_of(request).session() as session:
        requests = await queries.requests_of(session, user.id)
        pending, _ = await queries.inbox(session, user.id)
        conversation_list = await conversations.list_conversations(session, user.id)
        unread_notifications = await notifications.count_unread(session, user.id)
    return await _page(
        request,
        "mentoring/index.html",
        {
            "offer": offer,
            "open_request": next((view for view in requests if view.is_open), None),
            "pending_count": len(pending),
            "conversations": conversation_list,
            "unread_notifications": unread_notifications,
        },
    )


# the mentor offer


def _offer_values(form: FormData) -> dict[str, Any]:
    return {
        "disciplines": [str(value) for value in form.getlist("disciplines")],
        "levels": [str(value) for value in form.getlist("levels")],
        "academy": str(form.get("academy", "")),
        "presentation": str(form.get("presentation", "")),
        "capacity": str(form.get("capacity", "")),
    }


def _offer_context(values: dict[str, Any], offer: object) -> dict[str, Any]:
    return {
        "form": values,
        "offer": offer,
        "limits": {"capacity_max": CAPACITY_MAX, "presentation": PRESENTATION_MAX_CHARS},
    }


async def offer_page(request: Request) -> Response:
    user = await require_user(request)
    service = mentoring_of(request)
    offer = await service.get_offer(user.id)
    if request.method == "GET":
        if offer is not None:
            values: dict[str, Any] = {
                "disciplines": list(offer.disciplines),
                "levels": list(offer.levels),
                "academy": offer.academy,
                "presentation": offer.presentation,
                "capacity": str(offer.capacity),
            }
        else:
            values = {"disciplines": [], "levels": [], "academy": "", "presentation": ""}
            values["capacity"] = "1"
        return await _page(request, "mentoring/offer.html", _offer_context(values, offer))

    form = await request.form()
    values = _offer_values(form)
    try:
        details = parse_offer_form(**values)
        await service.save_offer(user.id, details)
    except MentoringError as error:
        logger.info("mentor offer of user=%s rejected: %s", user.id, error.code)
        context = {**_offer_context(values, offer), "error": error.message}
        return await _page(request, "mentoring/offer.html", context, STATUS_OF_KIND[error.kind])
    return RedirectResponse("/mentoring/offer?saved=1", status_code=303)


async def offer_status(request: Request) -> Response:
    user = await require_user(request)
    form = await request.form()
    status = OFFER_ACTIONS.get(str(form.get("action", "")))
    if status is None:
        raise HTTPException(400, "Cette action sur l'offre n'existe pas.")
    try:
        await mentoring_of(request).set_offer_status(user.id, status)
    except MentoringError as error:
        raise _raise_http(error) from error
    return RedirectResponse("/mentoring/offer", status_code=303)


# help requests


def _need_values(form: FormData) -> dict[str, str]:
    return {key: str(form.get(key, "")) for key in ("discipline", "level", "academy", "need")}


async def request_form(request: Request) -> Response:
    user = await require_user(request)
    open_request = await mentoring_of(request).open_request_of(user.id)
    values = {"discipline": "", "level": "", "academy": "", "need": ""}
    return await _page(
        request,
        "mentoring/request_form.html",
        {"form": values, "open_request": open_request, "need_max": NEED_MAX_CHARS},
    )


async def request_submit(request: Request) -> Response:
    """Show the ranked mentors for the need (`action=preview`), or send the request to
    the chosen mentor (`action=send` with `mentor_id`, or none to wait for a batch)."""
    user = await require_user(request)
    form = await request.form()
    values = _need_values(form)
    service = mentoring_of(request)
    try:
        need = parse_need(**values)
        if form.get("action") == "send":
            mentor_id = _mentor_id(form)
            sent = await service.send_request(user.id, need, mentor_id)
            return RedirectResponse(f"/mentoring/requests/{sent.id}?sent=1", status_code=303)
        cards = await service.propose_mentors(user.id, need)
    except MentoringError as error:
        logger.info("mentoring request by user=%s rejected: %s", user.id, error.code)
        if form.get("action") == "send" and error.kind is not ErrorKind.INVALID:
            # The need was valid: show the updated ranking with the error above it.
            cards = await service.propose_mentors(user.id, parse_need(**values))
            return await _page(
                request,
                "mentoring/proposals.html",
                {"form": values, "cards": cards, "error": error.message},
                STATUS_OF_KIND[error.kind],
            )
        return await _page(
            request,
            "mentoring/request_form.html",
            {"form": values, "need_max": NEED_MAX_CHARS, "error": error.message},
            STATUS_OF_KIND[error.kind],
        )
    return await _page(request, "mentoring/proposals.html", {"form": values, "cards": cards})


def _mentor_id(form: FormData) -> int | None:
    raw = str(form.get("mentor_id", "")).strip()
    if raw == "":
        return None
    # Ids are 32-bit database keys: a longer number names nobody.
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or int(raw) > ID_MAX:
        raise MentoringError("mentor_invalid", "Choisissez un mentor dans la liste proposée.")
    return int(raw)


async def request_page(request: Request) -> Response:
    user = await require_user(request)
    request_id: int = request.path_params["request_id"]
    async with database_of(request).session() as session:
        view = await queries.own_request(session, request_id, user.id)
    if view is None:
        raise HTTPException(404, "Cette demande de mentorat n'existe pas.")
    return await _page(
        request, "mentoring/request.html", {"view": view, "sent": "sent" in request.query_params}
    )


async def request_cancel(request: Request) -> Response:
    user = await require_user(request)
    request_id: int = request.path_params["request_id"]
    try:
        await mentoring_of(request).cancel_request(user.id, request_id)
    except MentoringError as error:
        raise _raise_http(error) from error
    return RedirectResponse(f"/mentoring/requests/{request_id}", status_code=303)


# a mentor's requests


async def inbox_page(
    request: Request, error: str | None = None, status_code: int = 200
) -> Response:
    user = await require_user(request)
    async with database_of(request).session() as session:
        pending, past = await queries.inbox(session, user.id)
    return await _page(
        request,
        "mentoring/inbox.html",
        {"pending": pending, "past": past, "error": error},
        status_code,
    )


async def inbox(request: Request) -> Response:
    return await inbox_page(request)


async def request_answer(request: Request) -> Response:
    user = await require_user(request)
    request_id: int = request.path_params["request_id"]
    accept = request.url.path.endswith("/accept")
    try:
        mentorship = await mentoring_of(request).answer_request(user.id, request_id, accept=accept)
    except MentoringError as error:
        return await inbox_page(request, error.message, STATUS_OF_KIND[error.kind])
    if mentorship is not None:
        return RedirectResponse(
            f"/mentoring/conversations/{mentorship.conversation_id}", status_code=303
        )
    return RedirectResponse("/mentoring/inbox", status_code=303)


# notifications


async def notifications_page(request: Request) -> Response:
    """Show the notifications, the unread ones marked "Nouveau", and mark them all read."""
    user = await require_user(request)
    async with database_of(request).session() as session:
        items = await notifications.list_notifications(session, user.id)
    async with database_of(request).session() as session, session.begin():
        await notifications.mark_all_read(session, user.id, mentoring_of(request).now())
    return await _page(request, "mentoring/notifications.html", {"notifications": items})


# the operator's batch page


async def require_operator(request: Request) -> User:
    user = await require_user(request)
    if user.role is not Role.OPERATOR:
        logger.warning("mentoring batch page rejected for user=%s, not an operator", user.id)
        raise HTTPException(403, OPERATOR_ONLY)
    return user


async def batch_page(request: Request) -> Response:
    user = await require_operator(request)
    if request.method == "GET":
        async with database_of(request).session() as session:
            waiting = await queries.count_waiting(session)
        return await _page(request, "mentoring/batch.html", {"waiting": waiting, "report": None})

    form = await request.form()
    dry_run = form.get("dry_run") is not None
    report = await run_batch(mentoring_of(request), dry_run=dry_run, started_by_id=user.id)
    async with database_of(request).session() as session:
        waiting = await queries.count_waiting(session)
    return await _page(request, "mentoring/batch.html", {"waiting": waiting, "report": report})


routes: list[BaseRoute] = [
    Route("/mentoring", dashboard, access=Access.MEMBER, methods=["GET"], name="mentoring"),
    Route(
        "/mentoring/offer",
        offer_page,
        access=Access.MEMBER,
        methods=["GET", "POST"],
        name="mentoring_offer",
    ),
    Route("/mentoring/offer/status", offer_status, access=Access.MEMBER, methods=["POST"]),
    Route(
        "/mentoring/request",
        request_form,
        access=Access.MEMBER,
        methods=["GET"],
        name="mentoring_request",
    ),
    Route("/mentoring/request", request_submit, access=Access.MEMBER, methods=["POST"]),
    Route(
        "/mentoring/requests/{request_id:id}",
        request_page,
        access=Access.REQUEST_MENTEE,
        methods=["GET"],
    ),
    Route(
        "/mentoring/requests/{request_id:id}/cancel",
        request_cancel,
        access=Access.REQUEST_MENTEE,
        methods=["POST"],
    ),
    Route(
        "/mentoring/requests/{request_id:id}/accept",
        request_answer,
        access=Access.REQUEST_MENTOR,
        methods=["POST"],
    ),
    Route(
        "/mentoring/requests/{request_id:id}/decline",
        request_answer,
        access=Access.REQUEST_MENTOR,
        methods=["POST"],
    ),
    Route("/mentoring/inbox", inbox, access=Access.MEMBER, methods=["GET"], name="mentoring_inbox"),
    Route("/mentoring/notifications", notifications_page, access=Access.MEMBER, methods=["GET"]),
    Route("/mentoring/operator/batch", batch_page, access=Access.OPERATOR, methods=["GET", "POST"]),
    *mentoring.conversation_routes.routes,
]
