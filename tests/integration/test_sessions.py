"""Sessions, CSRF tokens, log-in rate limits and body size limits of the application
built by server.create_app, driven in-process with its lifespan and a SQLite file."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

import server
from accounts.throttle import LOGIN_PER_ACCOUNT, LOGIN_PER_ADDRESS
from core.bodies import REQUEST_BODY_MAX_BYTES
from core.routing import SAFE_METHODS, Access, access_of, walk_routes
from core.settings import Settings
from tests.support.clients import csrf_from

SECRET_KEY = "secret-key-of-the-session-tests-0123456789"
PASSWORD = "une longue phrase de passe"
TOO_MANY_ATTEMPTS = "Trop de tentatives de connexion. Réessayez dans"
# The address of the clients, unless a test says otherwise (documentation range).
CLIENT_ADDRESS = "192.0.2.10"

AppFactory = Callable[..., Awaitable[Starlette]]


@pytest.fixture
async def start_app(tmp_path: Path) -> AsyncIterator[AppFactory]:
    """Return a function that starts the application with its lifespan. Every app it
    starts shares one data folder, as two server processes of one deployment do."""
    async with AsyncExitStack() as stack:

        async def start(site_url: str | None = None) -> Starlette:
            settings = Settings(data_dir=tmp_path, secret_key=SECRET_KEY, site_url=site_url)
            app = server.create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            return app

        yield start


def client_of(
    app: Starlette, address: str = CLIENT_ADDRESS, base_url: str = "http://testserver"
) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


async def sign_up(client: httpx.AsyncClient, name: str) -> httpx.Response:
    page = await client.get("/signup")
    response = await client.post(
        "/signup",
        data={
            "csrf_token": csrf_from(page.text),
            "email": f"{name.lower()}@example.org",
            "display_name": name,
            "password": PASSWORD,
            "time_zone": "Europe/Paris",
        },
    )
    assert response.status_code == 303, response.text[:300]
    return response


async def log_in(client: httpx.AsyncClient, name: str, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login",
        data={
            "csrf_token": csrf_from(page.text),
            "email": f"{name.lower()}@example.org",
            "password": password,
        },
    )


async def is_logged_in(client: httpx.AsyncClient) -> bool:
    response = await client.get("/profile")
    return response.status_code == 200


def session_cookie(response: httpx.Response) -> str:
    header = next(
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith("veillee_session=")
    )
    return header


# cookies


async def test_session_cookie_http_only_lax(start_app: AppFactory) -> None:
    app = await start_app()
    async with client_of(app) as client:
        response = await client.get("/login")
    attributes = [part.strip().lower() for part in session_cookie(response).split(";")]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "secure" not in attributes


async def test_session_cookie_secure_over_https(start_app: AppFactory) -> None:
    """A site served over HTTPS sent its session cookie on plain HTTP too."""
    app = await start_app(site_url="https://veillee.example.org")
    async with client_of(app, base_url="https://veillee.example.org") as client:
        response = await client.get("/login")
    attributes = [part.strip().lower() for part in session_cookie(response).split(";")]
    assert "secure" in attributes
    assert "httponly" in attributes


async def test_login_replaces_planted_cookie(start_app: AppFactory) -> None:
    """A session cookie given to the victim before log-in (session fixation) must not
    become a logged-in session."""
    app = await start_app()
    async with client_of(app) as setup:
        await sign_up(setup, "Claire")
    async with client_of(app) as victim, client_of(app) as attacker:
        await attacker.get("/login")
        planted = attacker.cookies["veillee_session"]
        victim.cookies.set("veillee_session", planted, domain="testserver.local")

        response = await log_in(victim, "Claire")
        assert response.status_code == 303
        assert victim.cookies["veillee_session"] != planted
        assert await is_logged_in(victim)
        assert not await is_logged_in(attacker)


async def test_logout_ends_copied_cookie(start_app: AppFactory) -> None:
    """Logging out cleared only the browser's own cookie; a copy kept working for two
    weeks."""
    app = await start_app()
    async with client_of(app) as owner, client_of(app) as thief:
        await sign_up(owner, "Claire")
        thief.cookies.set(
            "veillee_session", owner.cookies["veillee_session"], domain="testserver.local"
        )
        assert await is_logged_in(thief)

        home = await owner.get("/")
        response = await owner.post("/logout", data={"csrf_token": csrf_from(home.text)})
        assert response.status_code == 303
        assert not await is_logged_in(owner)
        assert not await is_logged_in(thief)

        # a new log-in works again
        assert (await log_in(owner, "Claire")).status_code == 303
        assert await is_logged_in(owner)
        assert not await is_logged_in(thief)


# CSRF


def concrete_path(path: str) -> str:
    """Fill every path parameter with a value that the convertors accept."""
    return re.sub(r"\{[^}]+\}", "1", path)


async def test_csrf_required_on_every_unsafe_route(start_app: AppFactory) -> None:
    """Guards against a form or JSON post that another site could send with a
    teacher's cookie, on any route, present or future."""
    app = await start_app()
    async with client_of(app) as member, client_of(app) as visitor:
        await sign_up(member, "Claire")
        await visitor.get("/login")
        checked = []
        for path, route in walk_routes(app.routes):
            methods = set(getattr(route, "methods", None) or ()) - SAFE_METHODS
            for method in sorted(methods):
                url = concrete_path(path)
                for name, client in (("member", member), ("visitor", visitor)):
                    if name == "visitor" and access_of(route) not in (Access.PUBLIC, Access.TOKEN):
                        continue
                    for headers in ({}, {"X-CSRF-Token": "not-the-session-token"}):
                        response = await client.request(
                            method, url, data={"csrf_token": "forged"}, headers=headers
                        )
                        assert response.status_code == 403, f"{method} {url} as {name}"
                        assert "Le formulaire a expiré" in response.text
                checked.append(f"{method} {path}")
    assert "POST /login" in checked
    assert "POST /api/mentoring/conversations/{conversation_id}/read" in checked
    assert "POST /mentoring/requests/{request_id:id}/accept" in checked


async def test_csrf_header_accepted_for_json(start_app: AppFactory) -> None:
    app = await start_app()
    async with client_of(app) as member:
        await sign_up(member, "Claire")
        token = csrf_from((await member.get("/")).text)
        response = await member.post(
            "/api/mentoring/conversations/AAAAAAAAAAAAAAAA/read",
            json={"seq": 1},
            headers={"X-CSRF-Token": token},
        )
    # past the CSRF check, the conversation does not exist
    assert response.status_code == 404


# log-in rate limits


async def test_login_limited_per_account(start_app: AppFactory) -> None:
    app = await start_app()
    async with client_of(app) as client:
        await sign_up(client, "Claire")
    async with client_of(app) as guesser:
        for attempt in range(LOGIN_PER_ACCOUNT.max_events):
            response = await log_in(guesser, "Claire", f"mauvais essai {attempt}")
            assert response.status_code == 400, attempt

        # even the right password is rejected now, like every other guess
        response = await log_in(guesser, "Claire")
        assert response.status_code == 429
        assert TOO_MANY_ATTEMPTS in response.text
        assert 0 < int(response.headers["retry-after"]) <= LOGIN_PER_ACCOUNT.window_secs
        assert not await is_logged_in(guesser)

    # from another address too, because the limit is the account's
    async with client_of(app, address="198.51.100.7") as elsewhere:
        assert (await log_in(elsewhere, "Claire")).status_code == 429


async def test_login_limit_spares_other_accounts(start_app: AppFactory) -> None:
    app = await start_app()
    async with client_of(app) as client:
        await sign_up(client, "Claire")
        await sign_up(client, "Karim")
    async with client_of(app) as guesser:
        for attempt in range(LOGIN_PER_ACCOUNT.max_events):
            await log_in(guesser, "Claire", f"mauvais essai {attempt}")
        assert (await log_in(guesser, "Karim")).status_code == 303


async def test_login_success_resets_account_count(start_app: AppFactory) -> None:
    app = await start_app()
    async with client_of(app) as client:
        await sign_up(client, "Claire")
    async with client_of(app) as owner:
        for attempt in range(LOGIN_PER_ACCOUNT.max_events - 1):
            await log_in(owner, "Claire", f"faute de frappe {attempt}")
        assert (await log_in(owner, "Claire")).status_code == 303
    async with client_of(app) as owner:
        for attempt in range(LOGIN_PER_ACCOUNT.max_events - 1):
            assert (await log_in(owner, "Claire", f"encore {attempt}")).status_code == 400
        assert (await log_in(owner, "Claire")).status_code == 303


async def test_login_limited_per_address(start_app: AppFactory) -> None:
    app = await start_app()
    async with client_of(app) as client:
        await sign_up(client, "Claire")
    async with client_of(app, address="203.0.113.9") as sprayer:
        for attempt in range(LOGIN_PER_ADDRESS.max_events):
            response = await log_in(sprayer, f"inconnu{attempt}", "mot de passe courant")
            assert response.status_code == 400, attempt
        response = await log_in(sprayer, "Claire")
        assert response.status_code == 429
        assert TOO_MANY_ATTEMPTS in response.text
    async with client_of(app, address="203.0.113.10") as neighbour:
        assert (await log_in(neighbour, "Claire")).status_code == 303


async def test_login_limit_shared_by_processes(start_app: AppFactory) -> None:
    """Counting in each process's memory would let a guesser multiply the limit by
    spreading attempts over the processes."""
    first = await start_app()
    second = await start_app()
    async with client_of(first) as client:
        await sign_up(client, "Claire")
    for attempt in range(LOGIN_PER_ACCOUNT.max_events):
        app = first if attempt % 2 == 0 else second
        async with client_of(app) as guesser:
            assert (await log_in(guesser, "Claire", f"essai {attempt}")).status_code == 400
    for app in (first, second):
        async with client_of(app) as guesser:
            assert (await log_in(guesser, "Claire")).status_code == 429


# body size


async def test_body_above_limit_413_french(start_app: AppFactory) -> None:
    app = await start_app()
    body = b"email=" + b"a" * REQUEST_BODY_MAX_BYTES
    async with client_of(app) as client:
        await client.get("/login")
        declared = await client.post(
            "/login",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 4096):
                yield body[start : start + 4096]

        streamed = await client.post(
            "/login",
            content=chunks(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        await sign_up(client, "Claire")
        token = csrf_from((await client.get("/")).text)
        json_api = await client.post(
            "/api/mentoring/conversations/AAAAAAAAAAAAAAAA/read",
            content=b"[" + b" " * REQUEST_BODY_MAX_BYTES + b"]",
            headers={"X-CSRF-Token": token},
        )
    for response in (declared, streamed):
        assert response.status_code == 413
        assert "un formulaire ne peut pas dépasser 64 Ko" in response.text
    assert "content-length" not in {name.lower() for name in streamed.request.headers}
    assert json_api.status_code == 413
    assert json_api.json()["error"]["code"] == "http_413"


async def test_body_at_limit_accepted(start_app: AppFactory) -> None:
    app = await start_app()
    async with client_of(app) as client:
        page = await client.get("/login")
        prefix = f"csrf_token={csrf_from(page.text)}&email=".encode()
        body = prefix + b"a" * (REQUEST_BODY_MAX_BYTES - len(prefix))
        response = await client.post(
            "/login", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
    assert len(body) == REQUEST_BODY_MAX_BYTES
    # read in full, then rejected as a wrong log-in
    assert response.status_code == 400
