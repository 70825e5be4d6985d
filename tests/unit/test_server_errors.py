"""Error pages of the application built by server.create_app, driven in-process: French
for an unexpected exception and for a form that the multipart parser rejects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import server
from core.settings import Settings

UNEXPECTED_ERROR = "Une erreur inattendue est survenue. Réessayez dans un instant."


async def fail(request: Request) -> Response:
    raise RuntimeError("a bug in a route")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The real application, without its lifespan, plus two routes that raise."""
    app = server.create_app(Settings(data_dir=tmp_path, secret_key="test-secret"))
    app.router.routes.append(Route("/panne", fail))
    app.router.routes.append(Route("/api/panne", fail))
    # ServerErrorMiddleware sends its response, then raises the error again for the
    # server to log; the transport keeps the response instead of raising.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_server_error_page_in_french(client: httpx.AsyncClient) -> None:
    """An unexpected exception returned Starlette's plain-text "Internal Server Error"."""
    page = await client.get("/panne")
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert UNEXPECTED_ERROR in page.text
    assert "Internal Server Error" not in page.text

    api = await client.get("/api/panne")
    assert api.status_code == 500
    assert api.json() == {"error": {"code": "http_500", "message": UNEXPECTED_ERROR}}


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"csrf_token=x"),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data\r\n\r\nx"),
    ],
)
async def test_server_malformed_form_in_french(
    client: httpx.AsyncClient, content_type: str, body: bytes
) -> None:
    """The multipart parser's English message ("Missing boundary in multipart.") was
    shown as the page's error."""
    page = await client.post("/login", content=body, headers={"content-type": content_type})
    assert page.status_code == 400
    assert "La requête est mal formée. Rechargez la page et recommencez." in page.text
    assert "multipart" not in page.text
