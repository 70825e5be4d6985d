"""Uvicorn's WebSocket protocol, extended to send frames that are encoded once.

A chat event goes to every connection of its channel in this process, often hundreds.
Through ASGI, each `websocket.send` encodes the text to UTF-8 and builds its frame
again for every connection, in a few layers of Python. `FrameWebSocketProtocol` adds
a `FrameWriter` to the ASGI scope's extensions: the application encodes a text frame
once (`encode_text_frame`) and writes the same bytes to each connection's transport,
several frames in one write when they queue up.

The writer is offered only to connections that negotiated no WebSocket extension,
since permessage-deflate would need frames compressed for each connection; server.py
turns permessage-deflate off. Other ASGI servers (and Starlette's test client) offer
no writer, and the application then sends through ASGI as usual.
"""

from __future__ import annotations

import logging
import struct

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State

logger = logging.getLogger(__name__)

# The close code of a text frame that is not UTF-8 (RFC 6455, section 7.4.1).
INVALID_PAYLOAD_CLOSE_CODE = 1007

# The key of the writer in scope["extensions"]; its value is {"writer": FrameWriter}.
FRAME_WRITER_EXTENSION = "veillee.websocket.frame_writer"


def encode_text_frame(payload: bytes) -> bytes:
    """Return the single, unmasked text frame carrying `payload`, as a server sends it
    (RFC 6455, section 5.2). `payload` must be valid UTF-8."""
    size = len(payload)
    first = 0x80 | Opcode.TEXT.value  # FIN set, no RSV bit: no extension applies
    if size < 126:
        header = struct.pack("!BB", first, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first, 126, size)
    else:
        header = struct.pack("!BBQ", first, 127, size)
    return header + payload


class FrameWriter:
    """Writes encoded frames straight to one accepted connection's transport."""

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @property
    def is_open(self) -> bool:
        """Whether the application accepted the connection and no close began."""
        protocol = self._protocol
        return (
            protocol.handshake_complete
            and protocol.initial_response is None
            and not protocol.close_sent
            and not protocol.disconnected
            and protocol.conn.state is State.OPEN
            and not protocol.transport.is_closing()
        )

    def write_if_writable(self, frames: bytes) -> bool:
        """Write complete frames from `encode_text_frame` when the transport's buffer
        is below its high-water mark; return False, writing nothing, otherwise.

        Called for every subscriber of every event, so it checks only what changes
        once the application has accepted the connection. A close from either side
        sets `close_sent` or closes the transport.
        """
        protocol = self._protocol
        if (
            not protocol.writable.is_set()
            or protocol.close_sent
            or protocol.disconnected
            or protocol.transport.is_closing()
        ):
            return False
        protocol.transport.write(frames)
        return True

    async def wait_writable(self) -> None:
        """Wait until the transport's buffer drains below its low-water mark, or the
        connection is lost."""
        await self._protocol.writable.wait()

    def write(self, frames: bytes) -> bool:
        """Write complete frames from `encode_text_frame`; return False, writing
        nothing, when the connection is no longer open."""
        if not self.is_open:
            return False
        self._protocol.transport.write(frames)
        return True


class FrameWebSocketProtocol(WebSocketsSansIOProtocol):
    """Uvicorn's default WebSocket protocol, with a `FrameWriter` in the scope."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The ASGI task created above starts at the next turn of the event loop, so
        # the extension is in the scope before the application reads it. A rejected
        # handshake has no scope.
        if self.response.status_code == 101 and not self.conn.extensions:
            self.scope["extensions"] = {
                **(self.scope.get("extensions") or {}),
                FRAME_WRITER_EXTENSION: {"writer": FrameWriter(self)},
            }

    def send_receive_event_to_app(self) -> None:
        """Close with 1007 a text message that is not UTF-8, logging one line.

        Uvicorn closes such a connection with 1007 too, but logs a traceback for what
        is only a client's bad input.
        """
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                client = self.client[0] if self.client else "?"
                logger.warning("websocket client=%s sent text that is not UTF-8: 1007", client)
                self.frames = []
                self.conn.send_close(INVALID_PAYLOAD_CLOSE_CODE)
                self.handle_parser_exception()
                return
            self.frames = [data]
        super().send_receive_event_to_app()
