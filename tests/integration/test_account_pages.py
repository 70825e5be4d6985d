"""The log-in form through a real server process: each failure names what to fix."""

from __future__ import annotations

import html
from collections.abc import Iterator

import httpx
import pytest

from tests.support.clients import Account, csrf_from, sign_up
from tests.support.processes import ServerProcess

ACCOUNT = Account("claire.dubois@example.org", "cartes-mentales-2026", "Claire Dubois")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("account-pages"))
    try:
        sign_up(process.url, ACCOUNT).close()
        yield process
    finally:
        process.stop()


@pytest.fixture
def visitor(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url) as client:
        yield client


def log_in_with(client: httpx.Client, email: str, password: str) -> httpx.Response:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"csrf_token": csrf_from(page.text), "email": email, "password": password},
    )


def test_login_names_missing_fields(visitor: httpx.Client) -> None:
    """An empty form used to get the error "Adresse électronique ou mot de passe incorrect."."""
    # (email, password, expected error)
    cases = [
        ("", "", "Indiquez votre adresse électronique et votre mot de passe."),
        ("   ", "", "Indiquez votre adresse électronique et votre mot de passe."),
        ("", ACCOUNT.password, "Indiquez votre adresse électronique."),
        (ACCOUNT.email, "", "Indiquez votre mot de passe."),
        (
            ACCOUNT.email,
            "pas-le-bon-mot-de-passe",
            "Adresse électronique ou mot de passe incorrect.",
        ),
    ]
    for email, password, expected in cases:
        response = log_in_with(visitor, email, password)
        text = html.unescape(response.text)
        assert response.status_code == 400, (email, password)
        assert f'<p class="error" role="alert">{expected}</p>' in text, (email, password)
        assert f'name="email" required autocomplete="username" value="{email}"' in text


def test_login_with_right_password(visitor: httpx.Client) -> None:
    response = log_in_with(visitor, ACCOUNT.email, ACCOUNT.password)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
