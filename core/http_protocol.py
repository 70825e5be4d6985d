"""Uvicorn's httptools HTTP protocol, with a limit on the size of a request's head.

The httptools parser keeps a request's line and headers in memory until the head is
complete, however long it grows: a client could send a megabyte of headers and get an
answer, or keep a connection filling memory. `BoundedHeadHttpProtocol` counts the bytes
received while a head is incomplete and answers 431 and closes the connection once
they pass `REQUEST_HEAD_MAX_BYTES`. Bodies have their own limit (core.bodies).
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

logger = logging.getLogger(__name__)

# The request line and headers of one request: a browser's, cookies included, take a
# few kilobytes. Node.js has the same default.
REQUEST_HEAD_MAX_BYTES = 16 * 1024
HEAD_TOO_LARGE_TEXT = (
    "La requête est trop longue : son adresse et ses en-têtes ne peuvent pas dépasser 16 Ko."
)


class BoundedHeadHttpProtocol(HttpToolsProtocol):
    """Answers 431 to a request whose head passes REQUEST_HEAD_MAX_BYTES."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Only a head still incomplete after the whole chunk counts: a chunk that
        # completes the head may also carry a body.
        too_large = self._reading_head and self._head_bytes > REQUEST_HEAD_MAX_BYTES
        if too_large and not self.transport.is_closing():
            self._send_head_too_large()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes = 0

    def _send_head_too_large(self) -> None:
        client = self.client[0] if self.client else "?"
        logger.warning(
            "request head above %d bytes from client=%s: answered 431",
            REQUEST_HEAD_MAX_BYTES,
            client,
        )
        body = HEAD_TOO_LARGE_TEXT.encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[431],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n",
                    b"\r\n",
                    body,
                ]
            )
        )
        self.transport.close()
