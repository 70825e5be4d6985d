"""The signaling socket, /ws/live/{live_id}/signaling (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocket, WebSocketDisconnect

from core.origins import origin_allowed
from core.routing import Access, WebSocketRoute
from core.socket_counts import SocketCounts
from core.web import current_user, database_of, settings_of
from live.access import LiveRole, live_role
from live.models import LIVE_ID_MAX, Live
from signaling.host_presence import host_presence
from signaling.media import MediaManager
from signaling.peers import PeerRole
from signaling.protocol import (
    CLOSE_REASONS,
    FOREIGN_ORIGIN_REASON,
    PROTOCOL_ERRORS_MAX,
    ClientFrame,
    CloseCode,
    ErrorCode,
    FrameType,
    ProtocolError,
    error_frame,
    parse_client_frame,
)
from signaling.router import Router

logger = logging.getLogger(__name__)

# Frames waiting to be written to one socket. Signaling sends a few frames a minute
# to a healthy client, so a full queue means the client stopped reading.
SEND_QUEUE_MAX_FRAMES = 64
# How long a closing socket may take to write its last frames and the close frame.
CLOSE_WRITE_TIMEOUT_SECS = 5.0


def media_of(websocket: WebSocket) -> MediaManager:
    media: MediaManager = websocket.app.state.media
    return media


def sockets_of(websocket: WebSocket) -> SocketCounts:
    """Return the process's count of open signaling sockets by (live id, user id),
    capped at `Settings.signaling_sockets_per_person`."""
    sockets: SocketCounts = websocket.app.state.signaling_sockets
    return sockets


def router_of(websocket: WebSocket) -> Router:
    router: Router = websocket.app.state.signaling
    return router


def parse_live_id(raw: str) -> int | None:
    """Return the live id of the path segment, or None unless it is canonical digits
    (so `012` names no live instead of a second name for live 12)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > len(str(LIVE_ID_MAX)):
        return None
    if str(int(raw)) != raw or int(raw) > LIVE_ID_MAX:
        return None
    return int(raw)


class SignalingConnection:
    """One accepted signaling socket: the person, their role, and a bounded send queue
    written by its own task, so that a broadcast never waits for a slow client.

    Frames sent before `welcome` wait behind it: the socket joins the live's audience
    before its welcome is read, so that no change falls between the two.
    """

    def __init__(self, websocket: WebSocket, live_id: int, user_id: int, role: PeerRole) -> None:
        self.websocket = websocket
        self.live_id = live_id
        self.user_id = user_id
        self.role = role
        self.protocol_errors = 0
        self._queue: asyncio.Queue[dict[str, Any] | CloseCode] = asyncio.Queue(
            SEND_QUEUE_MAX_FRAMES
        )
        self._closing = False
        # frames sent before the welcome, queued after it
        self._before_welcome: list[dict[str, Any]] | None = []

    def __repr__(self) -> str:
        return f"SignalingConnection(live={self.live_id} user={self.user_id} {self.role.value})"

    @property
    def is_closing(self) -> bool:
        return self._closing

    def send(self, frame: dict[str, Any]) -> None:
        if self._closing:
            return
        if self._before_welcome is not None:
            self._before_welcome.append(frame)
            return
        try:
            self._queue.put_nowait(frame)
        except asyncio.QueueFull:
            logger.warning("%r: send queue full with %d frames; closing", self, self._queue.qsize())
            self.close(CloseCode.TOO_SLOW)

    def send_welcome(self, welcome: dict[str, Any]) -> None:
        """Queue `welcome`, then the frames sent before it."""
        held, self._before_welcome = self._before_welcome or [], None
        for frame in [welcome, *held]:
            self.send(frame)

    def close(self, code: CloseCode) -> None:
        """Close the socket with `code` once the frames queued before it are written,
        or at once for TOO_SLOW."""
        if self._closing:
            return
        self._closing = True
        if code is CloseCode.TOO_SLOW:
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(code)

    async def write_frames(self) -> None:
        """Write queued frames until a close code comes out of the queue."""
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item, CloseCode):
                    await self.websocket.close(item.value, CLOSE_REASONS[item])
                    return
                await self.websocket.send_text(json.dumps(item, ensure_ascii=False))
            except (WebSocketDisconnect, RuntimeError, OSError):
                # the client went away; the reader sees the disconnect too
                return


async def close_at_once(websocket: WebSocket, code: CloseCode, reason: str | None = None) -> None:
    await websocket.close(code.value, reason or CLOSE_REASONS[code])


async def signaling_endpoint(websocket: WebSocket) -> None:
    """Authorize, send `welcome`, then serve the client's frames until it leaves."""
    await websocket.accept()
    settings = settings_of(websocket)

    # who is there, and may they be
    client = websocket.client.host if websocket.client else "?"
    if not origin_allowed(websocket, settings):
        logger.warning(
            "signaling rejected: origin %r client=%s", websocket.headers.get("origin"), client
        )
        await close_at_once(websocket, CloseCode.NOT_ALLOWED, FOREIGN_ORIGIN_REASON)
        return
    user = await current_user(websocket)
    if user is None:
        logger.warning("signaling rejected: not logged in client=%s", client)
        await close_at_once(websocket, CloseCode.NOT_LOGGED_IN)
        return
    live_id = parse_live_id(websocket.path_params["live_id"])
    if live_id is None:
        await close_at_once(websocket, CloseCode.NOT_FOUND)
        return
    try:
        async with database_of(websocket).session() as session:
            live = await session.get(Live, live_id)
            role = None if live is None else await live_role(session, live, user.id)
    except SQLAlchemyError:
        logger.exception("signaling live=%s user=%s: database unavailable", live_id, user.id)
        await close_at_once(websocket, CloseCode.INTERNAL_ERROR)
        return
    if live is None:
        logger.warning("signaling rejected: live %s not found user=%s", live_id, user.id)
        await close_at_once(websocket, CloseCode.NOT_FOUND)
        return
    if role is None:
        logger.warning("signaling rejected: live=%s user=%s not registered", live_id, user.id)
        await close_at_once(websocket, CloseCode.NOT_ALLOWED)
        return

    sockets = sockets_of(websocket)
    if not sockets.try_open((live_id, user.id)):
        logger.warning(
            "signaling rejected: live=%s user=%s has %d sockets open",
            live_id,
            user.id,
            sockets.limit,
        )
        await close_at_once(websocket, CloseCode.TOO_MANY_SOCKETS)
        return
    try:
        await serve_socket(websocket, live_id, user.id, role)
    finally:
        sockets.release((live_id, user.id))


async def serve_socket(websocket: WebSocket, live_id: int, user_id: int, role: LiveRole) -> None:
    """Join the live's audience, send `welcome`, then serve the socket until it ends."""
    settings = settings_of(websocket)
    # join the live's audience, then read what the welcome reports: a change committed
    # after this read is broadcast to the socket, after its welcome
    peer_role = PeerRole.HOST if role is LiveRole.HOST else PeerRole.VIEWER
    connection = SignalingConnection(websocket, live_id, user_id, peer_role)
    router = router_of(websocket)
    await router.join(live_id, connection)
    opened = time.monotonic()
    try:
        try:
            async with database_of(websocket).session() as session:
                row = (
                    await session.execute(
                        select(Live.state, Live.host_away_since).where(Live.id == live_id)
                    )
                ).one_or_none()
            recording = await media_of(websocket).recording_status(live_id)
        except SQLAlchemyError:
            logger.exception("signaling live=%s user=%s: database unavailable", live_id, user_id)
            await close_at_once(websocket, CloseCode.INTERNAL_ERROR)
            return
        if row is None:
            await close_at_once(websocket, CloseCode.NOT_FOUND)
            return
        state, host_away_since = row
        connection.send_welcome(
            {
                "type": "welcome",
                "live_id": live_id,
                "role": peer_role.value,
                "state": state.value,
                "host": host_presence(state, host_away_since).value,
                "ice_servers": list(settings.ice_servers),
                "recording": recording,
            }
        )
        logger.info("%r: connected", connection)
        await serve_connection(connection, router)
    finally:
        await router.leave(live_id, connection)
        logger.info("%r: disconnected after %.1f s", connection, time.monotonic() - opened)


async def serve_connection(connection: SignalingConnection, router: Router) -> None:
    """Run the socket's writer and reader until either ends, then close it."""
    writer = asyncio.create_task(connection.write_frames(), name=f"{connection!r} writer")
    reader = asyncio.create_task(read_frames(connection, router), name=f"{connection!r} reader")
    try:
        done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done and not reader.cancelled() and reader.exception() is not None:
            logger.error("%r: failed", connection, exc_info=reader.exception())
            connection.close(CloseCode.INTERNAL_ERROR)
        if connection.is_closing and not writer.done():
            # let the writer send what is queued, then the close frame
            await asyncio.wait({writer}, timeout=CLOSE_WRITE_TIMEOUT_SECS)
    finally:
        for task in (reader, writer):
            task.cancel()
        results = await asyncio.gather(reader, writer, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and result is not reader.exception():
                logger.error("%r: failed", connection, exc_info=result)


async def read_frames(connection: SignalingConnection, router: Router) -> None:
    """Serve the client's frames in order until it disconnects or must be closed."""
    while True:
        message = await connection.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return

        text = message.get("text")
        try:
            if text is None:
                raise ProtocolError(
                    ErrorCode.INVALID_JSON, "Les messages binaires ne sont pas acceptés."
                )
            await handle_frame(connection, router, text)
        except ProtocolError as error:
            connection.send(error_frame(error))
            if error.code in {ErrorCode.TRY_AGAIN, ErrorCode.LIVE_FULL}:
                # the server's state, not a fault of the client
                continue
            connection.protocol_errors += 1
            logger.info(
                "%r: protocol error %s (%d so far)",
                connection,
                error.code.value,
                connection.protocol_errors,
            )
            if connection.protocol_errors >= PROTOCOL_ERRORS_MAX:
                logger.warning("%r: too many protocol errors; closing", connection)
                connection.close(CloseCode.TOO_MANY_ERRORS)
                return


async def handle_frame(connection: SignalingConnection, router: Router, text: str) -> None:
    frame = parse_client_frame(text)
    try:
        await dispatch_frame(connection, router, frame)
    except ProtocolError as error:
        error.ref = error.ref or frame.ref
        raise


async def dispatch_frame(
    connection: SignalingConnection, router: Router, frame: ClientFrame
) -> None:
    live_id = connection.live_id
    if frame.type is FrameType.PING:
        connection.send({"type": "pong"})
    elif frame.type is FrameType.PUBLISH:
        if connection.role is not PeerRole.HOST:
            raise ProtocolError(ErrorCode.FORBIDDEN)
        answer = await router.publish(live_id, connection, _offer_of(frame.sdp))
        connection.send({"type": "answer", "sdp": answer})
    elif frame.type is FrameType.WATCH:
        answer = await router.watch(live_id, connection, _offer_of(frame.sdp))
        connection.send({"type": "answer", "sdp": answer})
    elif frame.type is FrameType.END:
        if connection.role is not PeerRole.HOST:
            raise ProtocolError(ErrorCode.FORBIDDEN)
        await router.end(live_id, connection)


def _offer_of(sdp: str | None) -> str:
    if sdp is None:
        raise ProtocolError(ErrorCode.INVALID_FRAME)
    return sdp


routes = [
    WebSocketRoute(
        "/ws/live/{live_id}/signaling", signaling_endpoint, access=Access.LIVE_PARTICIPANT
    )
]
