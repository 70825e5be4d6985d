"""One chat WebSocket connection: check access, subscribe, resume, then carry
frames both ways until either side closes."""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocket, WebSocketDisconnect

from chat.connections import ConnectionTicket, TooManySocketsError
from chat.errors import (
    FRAME_MAX_BYTES,
    PROTOCOL_ERRORS,
    AccessDeniedError,
    ChatError,
    CloseCode,
    ErrorCode,
)
from chat.hub import Subscriber
from chat.log import Person, dump_frame
from chat.policy import ChannelAccess
from chat.service import ChatService
from chat.text import TEXT_MAX_CHARS, InvalidTextError, clean_text
from core.origins import origin_allowed
from core.routing import Access
from core.settings import Settings
from core.web import ID_MAX, current_user
from core.websocket import FRAME_WRITER_EXTENSION, FrameWriter, encode_text_frame

logger = logging.getLogger(__name__)

# `resume` without `after` sends this many of the latest events, and so does a
# `resume` that would send more than RESUME_MAX_EVENTS (after a `reset` frame).
HISTORY_DEFAULT_EVENTS = 200
RESUME_MAX_EVENTS = 5000
# Events read from the database per query while sending history.
HISTORY_PAGE_EVENTS = 500
# A connection that sent this many malformed frames is closed with 4400.
PROTOCOL_ERRORS_MAX = 20
# How long a close frame may wait behind unsent data before the server stops
# waiting. A dropped slow consumer receives its 4408 only once it reads again.
CLOSE_TIMEOUT_SECS = 20.0

CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Maps each client frame type to the people who may send it on an open socket.
# Opening the socket already needs CHANNEL_MEMBER; the service checks the channel's
# policy again for every write. The access matrix test sends each one as each role.
FRAME_ACCESS: dict[str, Access] = {
    "resume": Access.CHANNEL_MEMBER,
    "ping": Access.CHANNEL_MEMBER,
    "send": Access.CHANNEL_MEMBER,
    # any message for a moderator, otherwise only the person's own
    "delete": Access.CHANNEL_MEMBER,
    "mute": Access.CHANNEL_MODERATOR,
    "unmute": Access.CHANNEL_MODERATOR,
    "slow_mode": Access.CHANNEL_MODERATOR,
}


class SessionState(enum.StrEnum):
    """connecting -> open (welcome sent) -> syncing (history) -> live; any -> closed."""

    CONNECTING = "connecting"
    OPEN = "open"
    SYNCING = "syncing"
    LIVE = "live"
    CLOSED = "closed"


def integer_field(
    frame: dict[str, Any], name: str, minimum: int, maximum: int | None = None
) -> int | None:
    """Return the frame's integer field `name`, None when absent or null.

    Raise ChatError(invalid_frame) for any other type (JSON's true and false
    included) or a value below `minimum` or above `maximum`.
    """
    value = frame.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ChatError(ErrorCode.INVALID_FRAME)
    if maximum is not None and value > maximum:
        raise ChatError(ErrorCode.INVALID_FRAME)
    return value


def parse_frame(text: str) -> tuple[dict[str, Any], str | None]:
    """Parse one text frame into its JSON object and the `ref` that its errors repeat.

    Raise ChatError(too_large) above FRAME_MAX_BYTES of UTF-8, and
    ChatError(invalid_json) when the text is not a JSON object.
    """
    if len(text) * 4 > FRAME_MAX_BYTES and len(text.encode()) > FRAME_MAX_BYTES:
        raise ChatError(ErrorCode.TOO_LARGE)
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ChatError(ErrorCode.INVALID_JSON) from error
    if not isinstance(frame, dict):
        raise ChatError(ErrorCode.INVALID_JSON)

    client_id = frame.get("client_id")
    ref = client_id if isinstance(client_id, str) and len(client_id) <= 64 else None
    return frame, ref


class ChatSession:
    """The chat socket of one person on one channel."""

    def __init__(
        self, websocket: WebSocket, service: ChatService, settings: Settings, channel: str
    ) -> None:
        self.websocket = websocket
        self.service = service
        self.settings = settings
        self.channel = channel
        self.state = SessionState.CONNECTING
        self.person: Person | None = None
        self.access: ChannelAccess | None = None
        # The subscriber keeps the highest seq sent (`last_sent`), which the history
        # and the live events both advance.
        self.subscriber = Subscriber(
            channel, service.send_queue_max_events, writer=frame_writer(websocket)
        )
        self.protocol_errors = 0
        # Checked before any write frame reaches the database (see chat.throttle).
        self.write_bucket = service.connections.write_bucket()
        self.frames_throttled = 0
        self.frames_received = 0
        self.frames_sent = 0
        self.client_gone = False
        self._synced = asyncio.Event()
        self._send_lock = asyncio.Lock()
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "resume": self._on_resume,
            "send": self._on_send,
            "delete": self._on_delete,
            "ping": self._on_ping,
            "mute": self._on_mute,
            "unmute": self._on_unmute,
            "slow_mode": self._on_slow_mode,
        }
        # This socket in the service's registry, once access is granted.
        self.ticket: ConnectionTicket | None = None

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self.ticket is not None:
                self.service.connections.release(self.ticket)

    async def _run(self) -> None:
        # The handshake is always accepted, so that a browser can read the close code.
        await self.websocket.accept()
        started = time.monotonic()
        try:
            close_code = await self._open()
        except WebSocketDisconnect:
            # The client went away before its welcome frame: nothing to clean up.
            logger.info("chat session channel=%r: client left before welcome", self.channel)
            return
        if close_code is not None:
            await self._close(close_code)
            return

        try:
            await self.service.hub.subscribe(self.subscriber)
        except Exception:
            logger.exception("chat session channel=%s: subscribing failed", self.channel)
            await self._close(CloseCode.INTERNAL_ERROR)
            return
        try:
            close_code = await self._serve()
        finally:
            await self.service.hub.unsubscribe(self.subscriber)
        if close_code is not None:
            await self._close(close_code)

        logger.info(
            "chat session closed channel=%s user=%s code=%s duration=%.1f s received=%d "
            "sent=%d throttled=%d",
            self.channel,
            self.person.id if self.person else None,
            close_code.value if close_code is not None else "client",
            time.monotonic() - started,
            self.frames_received,
            self.frames_sent + self.subscriber.frames_written,
            self.frames_throttled,
        )

    async def _open(self) -> CloseCode | None:
        """Check the origin, the log-in and the channel's policy, then send `welcome`."""
        # Until the policy accepts it, the channel name is any text from the URL, line
        # breaks included, so it is logged with repr() to keep one event per log line.
        if not origin_allowed(self.websocket, self.settings):
            logger.warning(
                "chat session channel=%r: rejected origin %r",
                self.channel,
                self.websocket.headers.get("origin"),
            )
            return CloseCode.FORBIDDEN

        try:
            user = await current_user(self.websocket)
            if user is None:
                logger.warning("chat session channel=%r: not logged in", self.channel)
                return CloseCode.NOT_LOGGED_IN
            self.person = Person(user.id, user.display_name)
            # Registered before the access check, so that a removal committed after
            # the check still finds this socket to close.
            self.ticket = self.service.connections.open(self.channel, user.id)
            self.access, last_seq = await self.service.open(self.channel, user.id)
            moderation = await self.service.moderation.state_of(self.channel, user.id)
        except TooManySocketsError:
            logger.warning(
                "chat session channel=%s user=%s: too many sockets open",
                self.channel,
                self.person.id if self.person else None,
            )
            return CloseCode.TOO_MANY_SOCKETS
        except AccessDeniedError as denied:
            logger.warning(
                "chat session channel=%r user=%s: access denied, close %d",
                self.channel,
                self.person.id if self.person else None,
                denied.close_code.value,
            )
            return denied.close_code
        except (SQLAlchemyError, OSError):
            logger.exception("chat session channel=%r: database failed on open", self.channel)
            return CloseCode.INTERNAL_ERROR

        await self._send_frame(
            {
                "type": "welcome",
                "channel": self.channel,
                "user": self.person.to_frame(),
                "role": self.access.role.value,
                "can_write": self.access.can_send,
                "muted": moderation.muted,
                "slow_mode_secs": moderation.slow_mode_secs,
                "last_seq": last_seq,
                "limits": {"text_max_chars": TEXT_MAX_CHARS, "frame_max_bytes": FRAME_MAX_BYTES},
            }
        )
        self.state = SessionState.OPEN
        logger.info(
            "chat session opened channel=%s user=%s role=%s last_seq=%d",
            self.channel,
            self.person.id,
            self.access.role.value,
            last_seq,
        )
        return None

    async def _serve(self) -> CloseCode | None:
        """Run the reader and the writer until one ends; return the close code to send,
        or None when the client went away."""
        reader = asyncio.create_task(self._read_frames(), name=f"chat-read-{self.channel}")
        writer = asyncio.create_task(self._write_events(), name=f"chat-write-{self.channel}")
        dropped = asyncio.create_task(self.subscriber.dropped.wait())
        if self.ticket is None:
            raise RuntimeError(f"serving in session state {self.state}, expected a ticket")
        revoked = asyncio.create_task(self.ticket.closed.wait())
        tasks = (reader, writer, dropped, revoked)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if revoked in done:
            # the person lost access: removed, or logged out in another browser
            return self.ticket.close_code or CloseCode.FORBIDDEN

        if dropped in done:
            logger.warning(
                "chat session channel=%s user=%s: too slow, dropped after seq=%d",
                self.channel,
                self.person.id if self.person else None,
                self.subscriber.last_sent,
            )
            return CloseCode.TOO_SLOW
        finished = reader if reader in done else writer
        error = finished.exception()
        if error is None:
            return reader.result() if finished is reader else None
        if isinstance(error, WebSocketDisconnect | OSError):
            self.client_gone = True
            return None
        logger.error(
            "chat session channel=%s: %s failed",
            self.channel,
            finished.get_name(),
            exc_info=error,
        )
        return CloseCode.INTERNAL_ERROR

    async def _read_frames(self) -> CloseCode | None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.client_gone = True
                return None
            self.frames_received += 1

            text = message.get("text")
            if text is None:
                # NOTE: the protocol has no frame for binary data, so it counts as malformed.
                error: ChatError | None = ChatError(ErrorCode.INVALID_FRAME)
            else:
                error = await self._handle_text(text)
            if error is None:
                continue

            await self._send_frame(error.to_frame())
            if error.code in PROTOCOL_ERRORS:
                self.protocol_errors += 1
                if self.protocol_errors >= PROTOCOL_ERRORS_MAX:
                    logger.warning(
                        "chat session channel=%s user=%s: %d protocol errors, closing",
                        self.channel,
                        self.person.id if self.person else None,
                        self.protocol_errors,
                    )
                    return CloseCode.TOO_MANY_ERRORS

    async def _handle_text(self, text: str) -> ChatError | None:
        """Parse and carry out one frame; return the error to send back, if any."""
        try:
            frame, ref = parse_frame(text)
        except ChatError as error:
            return error

        frame_type = frame.get("type")
        handler = self._handlers.get(frame_type) if isinstance(frame_type, str) else None
        if handler is None:
            return ChatError(ErrorCode.UNKNOWN_TYPE, ref=ref)
        try:
            await handler(frame)
        except ChatError as error:
            if error.ref is None:
                error.ref = ref
            return error
        return None

    def _take_write_token(self) -> None:
        """Take a token for a well-formed write frame (send, delete, mute, unmute,
        slow_mode) before it reaches the database.

        Raise ChatError(rate_limited) when the connection's bucket is empty.
        """
        wait_secs = self.write_bucket.take()
        if wait_secs <= 0:
            return
        self.frames_throttled += 1
        if self.frames_throttled == 1:
            logger.warning(
                "chat session channel=%s user=%s: write frames too fast, rejecting them "
                "until the bucket refills",
                self.channel,
                self.person.id if self.person else None,
            )
        retry_after = max(1, math.ceil(wait_secs))
        raise ChatError(
            ErrorCode.RATE_LIMITED,
            message=(
                "Vous agissez trop vite : patientez une seconde avant d'envoyer ou de "
                "supprimer un autre message."
            ),
            fields={"retry_after_secs": retry_after},
        )

    async def _on_ping(self, frame: dict[str, Any]) -> None:
        await self._send_frame({"type": "pong"})

    async def _on_send(self, frame: dict[str, Any]) -> None:
        client_id = frame.get("client_id")
        text = frame.get("text")
        if not isinstance(client_id, str) or not CLIENT_ID_PATTERN.fullmatch(client_id):
            raise ChatError(ErrorCode.INVALID_FRAME)
        if not isinstance(text, str):
            raise ChatError(ErrorCode.INVALID_FRAME)
        if self.person is None:
            raise RuntimeError(f"send in session state {self.state}, expected a logged-in person")
        # A text rejected without the database does not use up the bucket.
        try:
            clean_text(text)
        except InvalidTextError as error:
            code = ErrorCode.TEXT_TOO_LONG if error.too_long else ErrorCode.INVALID_TEXT
            raise ChatError(code) from error
        self._take_write_token()
        result = await self.service.send(self.channel, self.person, client_id, text)
        await self._send_frame({"type": "ack", "client_id": client_id, "seq": result.seq})

    async def _on_delete(self, frame: dict[str, Any]) -> None:
        seq = integer_field(frame, "seq", minimum=1)
        if seq is None:
            raise ChatError(ErrorCode.INVALID_FRAME)
        if self.person is None:
            raise RuntimeError(f"delete in session state {self.state}, expected a logged-in person")
        self._take_write_token()
        # The deletion event reaches this connection like every other event.
        await self.service.delete(self.channel, self.person, seq)

    async def _on_mute(self, frame: dict[str, Any]) -> None:
        user_id = integer_field(frame, "user_id", minimum=1, maximum=ID_MAX)
        if user_id is None or self.person is None:
            raise ChatError(ErrorCode.INVALID_FRAME)
        self._take_write_token()
        # The mute event reaches this connection like every other event.
        await self.service.moderation.mute(self.channel, self.person, user_id)

    async def _on_unmute(self, frame: dict[str, Any]) -> None:
        user_id = integer_field(frame, "user_id", minimum=1, maximum=ID_MAX)
        if user_id is None or self.person is None:
            raise ChatError(ErrorCode.INVALID_FRAME)
        self._take_write_token()
        await self.service.moderation.unmute(self.channel, self.person, user_id)

    async def _on_slow_mode(self, frame: dict[str, Any]) -> None:
        interval_secs = integer_field(frame, "interval_secs", minimum=0)
        if interval_secs is None or self.person is None:
            raise ChatError(ErrorCode.INVALID_FRAME)
        self._take_write_token()
        await self.service.moderation.set_slow_mode(self.channel, self.person, interval_secs)

    async def _on_resume(self, frame: dict[str, Any]) -> None:
        after = integer_field(frame, "after", minimum=0)
        # Only once per connection: live events are held back until it is done.
        if self.state is not SessionState.OPEN:
            raise ChatError(ErrorCode.INVALID_FRAME)

        self.state = SessionState.SYNCING
        try:
            current = await self.service.last_seq(self.channel)
            if after is not None and after <= current and current - after <= RESUME_MAX_EVENTS:
                start = after
            else:
                start = max(0, current - HISTORY_DEFAULT_EVENTS)
                if after is not None:
                    await self._send_frame({"type": "reset", "last_seq": current})
            await self._send_history(start, current)
        except (SQLAlchemyError, OSError) as error:
            logger.error("chat session channel=%s: reading history failed: %s", self.channel, error)
            self.state = SessionState.OPEN
            raise ChatError(ErrorCode.TRY_AGAIN) from error

        subscriber = self.subscriber
        subscriber.last_sent = max(subscriber.last_sent, current)
        await self._send_frame({"type": "synced", "last_seq": subscriber.last_sent})
        self.state = SessionState.LIVE
        self._synced.set()

    async def _send_history(self, after: int, up_to: int) -> None:
        """Send the stored events with `after < seq <= up_to`, page by page."""
        while after < up_to:
            events = await self.service.events(self.channel, after, up_to, HISTORY_PAGE_EVENTS)
            for event in events:
                await self._send_text(event.to_json())
                self.subscriber.last_sent = max(self.subscriber.last_sent, event.seq)
            if len(events) < HISTORY_PAGE_EVENTS:
                return
            after = events[-1].seq

    async def _write_events(self) -> None:
        """Send the live events queued by the hub once `resume` is done, every event
        waiting at once.

        While this waits on an empty queue, the hub writes the events itself
        (`Subscriber.direct`). The flag is cleared as soon as events are taken from
        the queue, so that no later event overtakes them.
        """
        await self._synced.wait()
        subscriber = self.subscriber
        queue = subscriber.queue
        while True:
            if queue.empty():
                subscriber.direct = True
                try:
                    first = await queue.get()
                finally:
                    subscriber.direct = False
            else:
                first = queue.get_nowait()
            events = [first]
            while not queue.empty():
                events.append(queue.get_nowait())
            await self._send_events(events)

    async def _send_events(self, events: list[tuple[int, str]]) -> None:
        """Send `events` after `last_sent` in order, reading any gap back first."""
        subscriber = self.subscriber
        frames: list[bytes] = []
        for seq, payload in events:
            if seq <= subscriber.last_sent:
                continue
            if seq > subscriber.last_sent + 1:
                # The hub passes events on without gaps; this guards the invariant.
                logger.warning(
                    "chat session channel=%s: gap after seq=%d before seq=%d, reading it back",
                    self.channel,
                    subscriber.last_sent,
                    seq,
                )
                await self._write_frames(frames)
                frames = []
                await self._send_history(subscriber.last_sent, seq - 1)
            if subscriber.writer is None:
                await self._send_text(payload)
            else:
                frames.append(encode_text_frame(payload.encode()))
            subscriber.last_sent = seq
        await self._write_frames(frames)

    async def _write_frames(self, frames: list[bytes]) -> None:
        """Write encoded frames in one write once the transport takes more data."""
        writer = self.subscriber.writer
        if not frames or writer is None:
            return
        await writer.wait_writable()
        if not writer.write(b"".join(frames)):
            raise WebSocketDisconnect(code=1006, reason="connection closed while sending events")
        self.frames_sent += len(frames)

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        await self._send_text(dump_frame(frame))

    async def _send_text(self, text: str) -> None:
        async with self._send_lock:
            await self.websocket.send_text(text)
            self.frames_sent += 1

    async def _close(self, code: CloseCode) -> None:
        self.state = SessionState.CLOSED
        if self.client_gone:
            return
        try:
            await asyncio.wait_for(self.websocket.close(code.value), CLOSE_TIMEOUT_SECS)
        except TimeoutError:
            logger.info(
                "chat session channel=%s: close %d not sent after %.0f s, giving up",
                self.channel,
                code.value,
                CLOSE_TIMEOUT_SECS,
            )
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The client already left, so no close frame can reach it.
            return


def frame_writer(websocket: WebSocket) -> FrameWriter | None:
    """Return the server's writer of encoded frames for `websocket`, when it offers one."""
    extension = websocket.scope.get("extensions", {}).get(FRAME_WRITER_EXTENSION)
    writer = extension.get("writer") if isinstance(extension, dict) else None
    return writer if isinstance(writer, FrameWriter) else None
