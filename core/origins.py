"""The Origin check of every WebSocket endpoint: only pages of this site may open a
socket with a visitor's session cookie (cross-site WebSocket hijacking)."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from core.settings import Settings


def origin_allowed(connection: HTTPConnection, settings: Settings) -> bool:
    """Return whether the handshake's Origin header is this site's.

    With `settings.site_url`, the Origin must be that scheme and host. Without it, the
    Origin's host must be the request's Host header, whatever the scheme, so that a
    site served over HTTPS by a proxy that speaks HTTP to this server still passes. A
    handshake without Origin is accepted: browsers always send one, and other clients
    carry no visitor's cookie.
    """
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin.strip())
    if not parts.scheme or not parts.netloc:
        # "null", sent by sandboxed frames and file: pages, and anything malformed
        return False
    if settings.site_url:
        site = urlsplit(settings.site_url)
        return (parts.scheme.lower(), parts.netloc.lower()) == (
            site.scheme.lower(),
            site.netloc.lower(),
        )
    host = connection.headers.get("host")
    return host is not None and parts.netloc.lower() == host.lower()
