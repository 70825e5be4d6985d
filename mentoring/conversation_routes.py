"""The private conversation page, ending a mentorship, and the JSON endpoints behind
unread counts.

A conversation that does not exist and one of other people get the same answer
(404 and the same French sentence), so that nobody learns by trying ids which
conversations exist.
"""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from chat.models import SEQ_MAX
from core.routing import Access, Route
from core.web import database_of, render, require_user
from mentoring import conversations, notifications
from mentoring.errors import ErrorKind, MentoringError
from mentoring.service import MentoringService

logger = logging.getLogger(__name__)

CONVERSATION_NOT_FOUND = "Cette conversation n'existe pas."
# A read mark is a few bytes of JSON; anything much larger is not one.
READ_BODY_MAX_BYTES = 1024


def _service(connection: HTTPConnection) -> MentoringService:
    service: MentoringService = connection.app.state.mentoring
    return service


async def conversation_page(request: Request) -> Response:
    user = await require_user(request)
    conversation_id: str = request.path_params["conversation_id"]
    async with database_of(request).session() as session:
        summary = await conversations.get_conversation(session, conversation_id, user.id)
    if summary is None:
        logger.warning("conversation page rejected for user=%s: no conversation of theirs", user.id)
        raise HTTPException(404, CONVERSATION_NOT_FOUND)
    return await render(request, "mentoring/conversation.html", {"conversation": summary})


async def conversation_end(request: Request) -> Response:
    user = await require_user(request)
    conversation_id: str = request.path_params["conversation_id"]
    try:
        await _service(request).end_mentorship(user.id, conversation_id)
    except MentoringError as error:
        if error.kind is ErrorKind.NOT_FOUND:
            raise HTTPException(404, CONVERSATION_NOT_FOUND) from error
        raise HTTPException(409, error.message) from error
    return RedirectResponse(f"/mentoring/conversations/{conversation_id}", status_code=303)


# JSON


async def conversations_json(request: Request) -> Response:
    user = await require_user(request)
    async with database_of(request).session() as session:
        items = await conversations.list_conversations(session, user.id)
    return JSONResponse({"conversations": [item.to_json() for item in items]})


async def summary_json(request: Request) -> Response:
    """Return the counts behind the "Mentorat" badge of every page."""
    user = await require_user(request)
    async with database_of(request).session() as session:
        unread_messages = await conversations.total_unread(session, user.id)
        unread_notifications = await notifications.count_unread(session, user.id)
    pending_requests = await _service(request).count_pending_for(user.id)
    return JSONResponse(
        {
            "unread_messages": unread_messages,
            "unread_notifications": unread_notifications,
            "pending_requests": pending_requests,
        }
    )


async def conversation_read(request: Request) -> Response:
    """Mark the conversation as read up to `{"seq": N}`; 204 on success."""
    user = await require_user(request)
    body = await request.body()
    if len(body) > READ_BODY_MAX_BYTES:
        raise HTTPException(413)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise HTTPException(
            400, "Le corps de la requête n'est pas un objet JSON valide."
        ) from error
    seq = payload.get("seq") if isinstance(payload, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq <= SEQ_MAX:
        raise HTTPException(400, f"Le champ seq doit être un entier entre 0 et {SEQ_MAX}.")

    conversation_id: str = request.path_params["conversation_id"]
    if not await conversations.mark_read(database_of(request), conversation_id, user.id, seq):
        raise HTTPException(404, CONVERSATION_NOT_FOUND)
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route(
        "/mentoring/conversations/{conversation_id}",
        conversation_page,
        access=Access.CONVERSATION_MEMBER,
        methods=["GET"],
    ),
    Route(
        "/mentoring/conversations/{conversation_id}/end",
        conversation_end,
        access=Access.CONVERSATION_MEMBER,
        methods=["POST"],
    ),
    Route(
        "/api/mentoring/conversations",
        conversations_json,
        access=Access.MEMBER,
        methods=["GET"],
    ),
    Route("/api/mentoring/summary", summary_json, access=Access.MEMBER, methods=["GET"]),
    Route(
        "/api/mentoring/conversations/{conversation_id}/read",
        conversation_read,
        access=Access.CONVERSATION_MEMBER,
        methods=["POST"],
    ),
]
