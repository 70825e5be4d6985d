"""The session cookie middleware: Starlette's signed cookie, marked `Secure` on every
request that reached the site over HTTPS."""

from __future__ import annotations

from typing import Literal

from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Schemes of a request that came over TLS. Behind a reverse proxy, uvicorn sets the
# scheme from X-Forwarded-Proto only when the proxy's address is in
# FORWARDED_ALLOW_IPS (127.0.0.1 by default), so a client cannot claim HTTPS itself.
SECURE_SCHEMES = frozenset({"https", "wss"})


class SessionCookieMiddleware:
    """Starlette's SessionMiddleware with a per-request `Secure` flag.

    The cookie is `Secure` on every response when `always_secure` is set (a site
    configured as HTTPS), and otherwise on the responses to requests whose scheme is
    https or wss. SessionMiddleware fixes the flag when it is built, so one instance
    of each kind serves the requests of its kind.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret_key: str,
        session_cookie: str,
        max_age: int,
        same_site: Literal["lax", "strict", "none"],
        always_secure: bool,
    ) -> None:
        def build(https_only: bool) -> SessionMiddleware:
            return SessionMiddleware(
                app,
                secret_key=secret_key,
                session_cookie=session_cookie,
                max_age=max_age,
                same_site=same_site,
                https_only=https_only,
            )

        self.secure = build(https_only=True)
        self.plain = self.secure if always_secure else build(https_only=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self.secure if scope.get("scheme") in SECURE_SCHEMES else self.plain
        await chosen(scope, receive, send)
