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
    assert "frame-ancestors 'none'" in directives(response)
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


async def test_security_headers_keep_route_value(client: httpx.AsyncClient) -> None:
    response = await client.get("/politique")
    assert response.headers.get_list("referrer-policy") == ["no-referrer"]


def directives(response: httpx.Response) -> list[str]:
    return [part.strip() for part in response.headers["content-security-policy"].split(";")]


@pytest.mark.parametrize(
    "path", ["/login", "/password/forgot", "/page-inconnue", "/static/chat.js"]
)
async def test_csp_allows_own_scripts_only(client: httpx.AsyncClient, path: str) -> None:
    """An injected <script> or onclick attribute ran with the page's rights."""
    policy = directives(await client.get(path))
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "default-src 'self'" in policy
    assert "object-src 'none'" in policy
    assert "base-uri 'none'" in policy
    assert "media-src 'self' blob:" in policy
    assert "connect-src 'self' ws://testserver wss://testserver" in policy
    assert not any("unsafe" in directive for directive in policy)


async def test_csp_names_site_websocket(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, secret_key="test-secret", site_url="https://veillee.example.org"
    )
    transport = httpx.ASGITransport(app=server.create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        policy = directives(await http.get("/login"))
    assert "connect-src 'self' wss://veillee.example.org" in policy


@pytest.mark.parametrize("host", ["a; script-src *", "evil.example org", "x'y"])
async def test_csp_ignores_forged_host(client: httpx.AsyncClient, host: str) -> None:
    """A Host header went into the policy as it came, so it could add a directive."""
    policy = directives(await client.get("/login", headers={"Host": host}))
    assert "connect-src 'self'" in policy
    assert policy.count("script-src 'self'") == 1
    assert not any(host in directive for directive in policy)
