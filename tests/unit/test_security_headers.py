"""Security headers on the responses of the application built by server.create_app,
driven in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import server
from core.settings import Settings


async def own_referrer_policy(request: Request) -> Response:
    return PlainTextResponse("ok", headers={"Referrer-Policy": "no-referrer"})


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The real application, without its lifespan: the pages tested need no database."""
    app = server.create_app(Settings(data_dir=tmp_path, secret_key="test-secret"))
    app.router.routes.append(Route("/politique", own_referrer_policy))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.mark.parametrize("path", ["/login", "/signup", "/page-inconnue", "/static/style.css"])
async def test_security_headers_forbid_framing(client: httpx.AsyncClient, path: str) -> None:
    """Pages could be framed by any site, which let it trick a logged-in teacher into
    clicking a form button of the live page (clickjacking)."""
    response = await client.get(path)
    assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


async def test_security_headers_keep_route_value(client: httpx.AsyncClient) -> None:
    response = await client.get("/politique")
    assert response.headers.get_list("referrer-policy") == ["no-referrer"]
