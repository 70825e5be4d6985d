"""Chat endpoints: the WebSocket `/ws/chat/{channel}` and the JSON history of a channel."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.websockets import WebSocket

from chat.errors import AccessDeniedError, CloseCode
from chat.models import SEQ_MAX
from chat.service import ChatService
from chat.session import ChatSession
from core.routing import Access, Route, WebSocketRoute
from core.web import require_user, settings_of

# Events per page of GET /api/chat/{channel}/events.
EVENTS_PAGE_MAX = 1000


def chat_of(connection: HTTPConnection) -> ChatService:
    service: ChatService = connection.app.state.chat
    return service


async def chat_socket(websocket: WebSocket) -> None:
    channel: str = websocket.path_params["channel"]
    await ChatSession(websocket, chat_of(websocket), settings_of(websocket), channel).run()


def _query_integer(request: Request, name: str, default: int, minimum: int, maximum: int) -> int:
    """Return the query parameter `name` as an integer, lowered to `maximum` when above it."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit():
        raise _invalid_parameter(name, minimum)
    digits = raw.lstrip("0") or "0"
    # Compared by length first, because int() rejects strings of more than 4,300 digits.
    value = maximum if len(digits) > len(str(maximum)) else min(int(digits), maximum)
    if value < minimum:
        raise _invalid_parameter(name, minimum)
    return value


def _invalid_parameter(name: str, minimum: int) -> HTTPException:
    return HTTPException(
        status_code=400,
        detail=f"Le paramètre {name} doit être un entier supérieur ou égal à {minimum}.",
    )


async def channel_events(request: Request) -> Response:
    """Return the channel's events after `after`, as the socket sends them.

    A deleted message comes with `"deleted": true` and an empty text, followed by its
    deletion event. `has_more` is true when another page follows.
    """
    user = await require_user(request)
    channel: str = request.path_params["channel"]
    after = _query_integer(request, "after", default=0, minimum=0, maximum=SEQ_MAX)
    limit = _query_integer(
        request, "limit", default=EVENTS_PAGE_MAX, minimum=1, maximum=EVENTS_PAGE_MAX
    )

    service = chat_of(request)
    try:
        _, last_seq = await service.open(channel, user.id)
    except AccessDeniedError as denied:
        if denied.close_code is CloseCode.NOT_FOUND:
            raise HTTPException(
                status_code=404, detail="Cette discussion n'existe pas."
            ) from denied
        raise HTTPException(
            status_code=403, detail="Vous ne participez pas à cette discussion."
        ) from denied

    events = await service.events(channel, after, last_seq, limit)
    return JSONResponse(
        {
            "channel": channel,
            "last_seq": last_seq,
            "events": [event.to_frame() for event in events],
            "has_more": bool(events) and events[-1].seq < last_seq,
        }
    )


routes: list[BaseRoute] = [
    WebSocketRoute(
        "/ws/chat/{channel}", chat_socket, access=Access.CHANNEL_MEMBER, name="chat_socket"
    ),
    Route(
        "/api/chat/{channel}/events",
        channel_events,
        access=Access.CHANNEL_MEMBER,
        methods=["GET"],
        name="chat_events",
    ),
]
