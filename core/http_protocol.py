"""Uvicorn's httptools HTTP protocol, with a limit on the size of a request's head.

The httptools parser keeps a request's line and headers in memory until the head is
complete, however long it grows: a client could send a megabyte of headers and get a
response, or keep a connection filling memory. `BoundedHeadHttpProtocol` counts the bytes
received while a head is incomplete and responds 431 and closes the connection once
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


class HeadTooLargeError(Exception):
    """Raised from a parser callback to stop parsing a head above the limit."""


class BoundedHeadHttpProtocol(HttpToolsProtocol):
    """Responds 431 to a request whose head passes REQUEST_HEAD_MAX_BYTES.

    Two counts cover the two ways a head grows. The parser hands over the URL and each
    complete header, whose sizes add up to the head's size whatever the chunks. A
    header still incomplete stays inside the parser, so the bytes received while the
    head is incomplete are counted too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes_received = 0
        self._head_size = 0
        self._head_too_large = False

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes_received += len(data)
        super().data_received(data)
        # Only a head still incomplete after the whole chunk counts here: a chunk that
        # completes the head may also carry a body.
        too_large = self._reading_head and self._head_bytes_received > REQUEST_HEAD_MAX_BYTES
        if too_large and not self.transport.is_closing():
            self._head_too_large = True
            self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # the name, ": ", the value and CRLF
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        self._head_bytes_received = 0

    def _count_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > REQUEST_HEAD_MAX_BYTES:
            self._head_too_large = True
            # httptools raises HttpParserCallbackError from feed_data, and uvicorn's
            # data_received responds through send_400_response
            raise HeadTooLargeError

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        client = self.client[0] if self.client else "?"
        logger.warning(
            "request head above %d bytes from client=%s: responded 431",
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
