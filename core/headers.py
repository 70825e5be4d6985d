"""Security headers added to every HTTP response, the Content Security Policy first."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Maps each header to its value. No page of the site may be framed, so that another
# site cannot lay it under a decoy and have a logged-in teacher click "Annuler le
# live" or "Je m'inscris" unknowingly (clickjacking). Browsers that predate CSP
# frame-ancestors read X-Frame-Options. nosniff keeps an uploaded or served file from
# being run as a script of another type.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# The Content Security Policy, without its connect-src, which names the site's
# WebSocket origin. Scripts and styles come only from the site's own files, so an
# injected <script> or inline handler does not run; the pages have none of their own.
# Media is the site's recordings, and blob: URLs for media built in the page.
# WebRTC media is not fetched and is not governed by this policy.
CSP_DIRECTIVES = (
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "media-src 'self' blob:",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
)
# A Host header is used in the policy only when it is a plain host name or address
# with an optional port, so that a forged one cannot add directives.
_HOST_PATTERN = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def websocket_sources(site_url: str | None, host: str | None) -> str:
    """Return the connect-src sources of the site's WebSockets.

    CSP Level 3 lets 'self' match ws: and wss: URLs of the page's own host, but browsers
    that predate it do not, so the WebSocket origin is named too: from `site_url` when
    set, else from the request's Host header.
    """
    if site_url:
        site = urlsplit(site_url)
        scheme = "wss" if site.scheme == "https" else "ws"
        return f"'self' {scheme}://{site.netloc}"
    if host and _HOST_PATTERN.fullmatch(host):
        return f"'self' ws://{host} wss://{host}"
    return "'self'"


def content_security_policy(site_url: str | None, host: str | None) -> str:
    return "; ".join([*CSP_DIRECTIVES, f"connect-src {websocket_sources(site_url, host)}"])


class SecurityHeadersMiddleware:
    """Add the Content Security Policy and SECURITY_HEADERS to each HTTP response
    that does not set them itself."""

    def __init__(self, app: ASGIApp, site_url: str | None = None) -> None:
        self.app = app
        self.site_url = site_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        policy = content_security_policy(self.site_url, Headers(scope=scope).get("host"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
