"""The size limit of HTTP request bodies: forms and JSON posts."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The largest request body accepted, 64 KiB. The largest valid form is the live
# schedule form. URL-encoded, its description of at most 5,000 characters takes at
# most 60,000 bytes, 12 for a character of four UTF-8 bytes. Its other fields take
# less than 2,000 more.
REQUEST_BODY_MAX_BYTES = 64 * 1024
BODY_TOO_LARGE_MESSAGE = (
    "La requête est trop volumineuse : un formulaire ne peut pas dépasser 64 Ko. "
    "Raccourcissez le texte, puis recommencez."
)


class BodySizeLimitMiddleware:
    """Reject an HTTP request whose body is above `max_bytes` with a French 413.

    The check runs while the endpoint reads the body, so the HTTPException goes through
    the application's error handler like any other. A Content-Length above the limit is
    rejected at the first read, before any byte of the body is received.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = REQUEST_BODY_MAX_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        declared = _content_length(scope)
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            if declared is not None and declared > self.max_bytes:
                raise HTTPException(413, BODY_TOO_LARGE_MESSAGE)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, BODY_TOO_LARGE_MESSAGE)
            return message

        await self.app(scope, receive_within_limit, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
