"""Logged-in HTTP and WebSocket clients against a running server process."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

_CSRF_PATTERN = re.compile(r'name="csrf_token" value="([^"]+)"')
CLIENT_TIMEOUT_SECS = 10.0


@dataclass
class Account:
    email: str
    password: str
    display_name: str


def csrf_from(html: str) -> str:
    match = _CSRF_PATTERN.search(html)
    if match is None:
        raise AssertionError("page has no csrf_token field")
    return match.group(1)


def _unopened_copy(client: httpx.Client) -> httpx.Client:
    """Return a new client with `client`'s base URL and cookies, and close `client`.

    httpx marks a client opened at its first request, and an opened client raises
    "Cannot open a client instance more than once" when it enters a `with` block.
    """
    copy = httpx.Client(
        base_url=client.base_url, timeout=CLIENT_TIMEOUT_SECS, cookies=client.cookies
    )
    client.close()
    return copy


def sign_up(base_url: str, account: Account, time_zone: str = "Europe/Paris") -> httpx.Client:
    """Create the account through the sign-up form and return a client holding its
    session cookie. The caller closes it, or uses it in a `with` block."""
    client = httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_SECS)
    page = client.get("/signup")
    response = client.post(
        "/signup",
        data={
            "csrf_token": csrf_from(page.text),
            "email": account.email,
            "display_name": account.display_name,
            "password": account.password,
            "time_zone": time_zone,
        },
    )
    if response.status_code != 303:
        client.close()
        raise AssertionError(f"sign-up failed with {response.status_code}: {response.text[:500]}")
    return _unopened_copy(client)


def log_in(base_url: str, account: Account) -> httpx.Client:
    """Log in through the form; return a client holding the session cookie, like sign_up."""
    client = httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_SECS)
    page = client.get("/login")
    response = client.post(
        "/login",
        data={
            "csrf_token": csrf_from(page.text),
            "email": account.email,
            "password": account.password,
        },
    )
    if response.status_code != 303:
        client.close()
        raise AssertionError(f"log-in failed with {response.status_code}")
    return _unopened_copy(client)


def cookie_header(client: httpx.Client) -> str:
    """The Cookie header a WebSocket client needs to share `client`'s session."""
    return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


def live_form(csrf_token: str, title: str) -> dict[str, str]:
    """Return the scheduling form's fields for a live tomorrow at 20:30, Paris time."""
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    return {
        "csrf_token": csrf_token,
        "title": title,
        "description": "",
        "start_day": tomorrow.isoformat(),
        "start_time": "20:30",
        "time_zone": "Europe/Paris",
        "duration_minutes": "60",
    }


def schedule_live(client: httpx.Client, title: str) -> int:
    """Schedule a live for tomorrow at 20:30, Paris time, through the form; return its id."""
    form_page = client.get("/lives/new")
    response = client.post("/lives/new", data=live_form(csrf_from(form_page.text), title))
    if response.status_code != 303:
        raise AssertionError(f"scheduling failed with {response.status_code}")
    return int(response.headers["location"].rsplit("/", 1)[1])


def register_for_live(client: httpx.Client, live_id: int) -> httpx.Response:
    """Press the live page's one-click registration button; return the POST's response."""
    page = client.get(f"/lives/{live_id}")
    return client.post(f"/lives/{live_id}/register", data={"csrf_token": csrf_from(page.text)})
