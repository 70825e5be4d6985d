"""Mentoring through its HTTP forms, as a teacher's browser does: offers, requests,
answers, and reading ids back from the pages."""

from __future__ import annotations

import re
from collections.abc import Sequence

import httpx

from tests.support.clients import csrf_from

_MENTOR_ID_PATTERN = re.compile(r'data-mentor-card data-mentor-id="(\d+)"')
_CONVERSATION_PATH_PATTERN = re.compile(r"^/mentoring/conversations/([A-Za-z0-9_-]+)$")
_REQUEST_PATH_PATTERN = re.compile(r"^/mentoring/requests/(\d+)")

PRESENTATION = "Professeure depuis douze ans, j'aime aider les collègues qui débutent."
NEED = "Gestion de classe en 4e"


def csrf(client: httpx.Client) -> str:
    return csrf_from(client.get("/mentoring").text)


def save_offer(
    client: httpx.Client,
    *,
    disciplines: Sequence[str] = ("mathematiques",),
    levels: Sequence[str] = ("college",),
    academy: str = "lyon",
    capacity: str = "2",
    presentation: str = PRESENTATION,
) -> httpx.Response:
    return client.post(
        "/mentoring/offer",
        data={
            "csrf_token": csrf(client),
            "disciplines": list(disciplines),
            "levels": list(levels),
            "academy": academy,
            "capacity": capacity,
            "presentation": presentation,
        },
    )


def need_form(
    *,
    discipline: str = "mathematiques",
    level: str = "college",
    academy: str = "lyon",
    need: str = NEED,
) -> dict[str, str]:
    return {"discipline": discipline, "level": level, "academy": academy, "need": need}


def proposed_mentor_ids(client: httpx.Client, need: dict[str, str]) -> list[int]:
    """Return the ranked mentor ids that the proposals page shows, best first."""
    response = client.post(
        "/mentoring/request", data={"csrf_token": csrf(client), "action": "preview", **need}
    )
    if response.status_code != 200:
        raise AssertionError(f"preview failed with {response.status_code}: {response.text[:500]}")
    return [int(mentor_id) for mentor_id in _MENTOR_ID_PATTERN.findall(response.text)]


def send_request(
    client: httpx.Client, need: dict[str, str], mentor_id: int | None
) -> httpx.Response:
    data = {"csrf_token": csrf(client), "action": "send", **need}
    if mentor_id is not None:
        data["mentor_id"] = str(mentor_id)
    return client.post("/mentoring/request", data=data)


def request_id_of(response: httpx.Response) -> int:
    """Return the request id from the redirect that follows a sent request."""
    if response.status_code != 303:
        raise AssertionError(f"request failed with {response.status_code}: {response.text[:500]}")
    match = _REQUEST_PATH_PATTERN.match(response.headers["location"])
    if match is None:
        raise AssertionError(f"unexpected redirect {response.headers['location']}")
    return int(match.group(1))


def answer(client: httpx.Client, request_id: int, *, accept: bool) -> httpx.Response:
    action = "accept" if accept else "decline"
    return client.post(
        f"/mentoring/requests/{request_id}/{action}", data={"csrf_token": csrf(client)}
    )


def conversation_id_of(response: httpx.Response) -> str:
    """Return the conversation id from the redirect that follows an acceptance."""
    if response.status_code != 303:
        raise AssertionError(f"accept failed with {response.status_code}: {response.text[:500]}")
    match = _CONVERSATION_PATH_PATTERN.match(response.headers["location"])
    if match is None:
        raise AssertionError(f"unexpected redirect {response.headers['location']}")
    return match.group(1)


def user_id_of(client: httpx.Client) -> int:
    """Return the logged-in user's id, which the chat socket's welcome frame carries."""
    page = client.get("/mentoring").text
    match = re.search(r'data-user-id="(\d+)"', page)
    if match is None:
        raise AssertionError("the mentoring page shows no user id: no conversation yet")
    return int(match.group(1))


def end_mentorship(client: httpx.Client, conversation_id: str) -> httpx.Response:
    return client.post(
        f"/mentoring/conversations/{conversation_id}/end", data={"csrf_token": csrf(client)}
    )
