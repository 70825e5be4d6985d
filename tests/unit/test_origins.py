"""The Origin check shared by the chat and signaling sockets (core.origins)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.requests import HTTPConnection

from core.origins import origin_allowed
from core.settings import Settings

SITE = "https://veillee.example.org"


def handshake(origin: str | None, host: str = "veillee.example.org") -> HTTPConnection:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return HTTPConnection({"type": "websocket", "headers": headers, "path": "/ws/chat/live:1"})


@pytest.mark.parametrize(
    ("site_url", "origin", "host", "allowed"),
    [
        # no Origin: not a browser, so it carries no visitor's cookie
        (None, None, "veillee.example.org", True),
        (SITE, None, "veillee.example.org", True),
        # without SITE_URL, the Origin's host must be the request's Host, any scheme
        (None, "http://127.0.0.1:8000", "127.0.0.1:8000", True),
        (None, "https://veillee.example.org", "veillee.example.org", True),
        (None, "HTTPS://Veillee.Example.org", "veillee.example.org", True),
        (None, "https://ailleurs.example", "veillee.example.org", False),
        (None, "http://127.0.0.1:8001", "127.0.0.1:8000", False),
        (None, "null", "veillee.example.org", False),
        (None, "veillee.example.org", "veillee.example.org", False),
        # with SITE_URL, exactly its scheme and host
        (SITE, SITE, "backend:8000", True),
        (SITE, SITE + "/", "backend:8000", True),
        (SITE, "http://veillee.example.org", "veillee.example.org", False),
        (SITE, "https://backend:8000", "backend:8000", False),
        (SITE, "https://veillee.example.org.ailleurs.example", "backend:8000", False),
        (SITE, "null", "backend:8000", False),
    ],
)
def test_origin_allowed_cases(
    tmp_path: Path, site_url: str | None, origin: str | None, host: str, allowed: bool
) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="k" * 32, site_url=site_url)
    assert origin_allowed(handshake(origin, host), settings) is allowed
