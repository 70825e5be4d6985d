"""Every route of the application against every kind of person, through a real server
process: HTTP requests with each person's session and CSRF token, and real WebSocket
connections whose close codes are read.

Each route declares an access level (core.routing.Access). CASES names one request
for each route and method, and the outcome expected for each role follows from the
declared level alone, so a route that declares one level and enforces another fails
here. A route added without a declaration, or without a row in CASES, fails the two
coverage tests. The chat socket's frames declare their levels too
(chat.session.FRAME_ACCESS), and each person who may open a channel sends each frame.

The people: Claire hosts the live, Karim is registered for it, Inès is a member who
takes part in nothing. Marc mentors Léa (request and conversation) and Paul (another
mentee, with his own conversation). Olivia has the operator role.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

import server
from accounts.models import PasswordReset
from accounts.password_reset import hash_token, issue_link
from chat.session import FRAME_ACCESS
from core.database import utc_now
from core.routing import Access, access_of, walk_routes
from core.settings import Settings
from recordings.links import RecordingFile, signed_url
from signaling.hls_links import hls_link_prefix
from tests.support import mentoring_flows as flows
from tests.support.chat_clients import database_in
from tests.support.clients import (
    Account,
    cookie_header,
    csrf_from,
    register_for_live,
    schedule_live,
    sign_up,
)
from tests.support.processes import PROJECT_DIR, ServerProcess

pytestmark = pytest.mark.slow

PASSWORD = "droits d'accès 2026"
# The key ServerProcess gives every server it starts; signed links are made with it.
SECRET_KEY = "test-secret-key-shared-by-processes"
# Long enough for a loaded CI machine; each wait ends as soon as the frame arrives.
SOCKET_TIMEOUT_SECS = 10.0
CLI_TIMEOUT_SECS = 60.0
# No recording has this id: a valid signed link to it gets 404 once access is granted.
MISSING_RECORDING_ID = 424242
# The token of a password reset link that the fixture stores for Zoé, who has no role.
RESET_TOKEN = "jeton-de-reinitialisation-du-test"

# Maps each role to the person who plays it; None for the visitor who is not logged in.
PEOPLE: dict[str, str | None] = {
    "anonymous": None,
    "teacher": "Inès",
    "attendee": "Karim",
    "host": "Claire",
    "mentor": "Marc",
    "mentee": "Léa",
    "other_mentee": "Paul",
    "operator": "Olivia",
}
ROLES = tuple(PEOPLE)


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"
    LOG_IN = "log in"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not found"


# Maps the levels granted by a relation to an object to the roles that have the
# relation in this test, and the outcome for every other logged-in person.
RELATIONS: dict[Access, tuple[frozenset[str], Outcome]] = {
    Access.LIVE_PARTICIPANT: (frozenset({"host", "attendee"}), Outcome.FORBIDDEN),
    Access.LIVE_HOST: (frozenset({"host"}), Outcome.FORBIDDEN),
    Access.CONVERSATION_MEMBER: (frozenset({"mentor", "mentee"}), Outcome.NOT_FOUND),
    Access.REQUEST_MENTEE: (frozenset({"mentee"}), Outcome.NOT_FOUND),
    Access.REQUEST_MENTOR: (frozenset({"mentor"}), Outcome.NOT_FOUND),
    Access.OPERATOR: (frozenset({"operator"}), Outcome.FORBIDDEN),
}
# Channel levels depend on the channel's owner: a live's channel refuses outsiders
# with 403, a conversation hides itself with 404.
CHANNEL_RELATIONS: dict[tuple[Access, str], tuple[frozenset[str], Outcome]] = {
    (Access.CHANNEL_MEMBER, "live"): (frozenset({"host", "attendee"}), Outcome.FORBIDDEN),
    (Access.CHANNEL_MEMBER, "conversation"): (
        frozenset({"mentor", "mentee"}),
        Outcome.NOT_FOUND,
    ),
    (Access.CHANNEL_MODERATOR, "live"): (frozenset({"host"}), Outcome.FORBIDDEN),
}


@dataclass
class World:
    """The running server, a logged-in client for each role, and the objects they share."""

    server: ServerProcess
    clients: dict[str, httpx.Client]
    live_id: int
    # Lives on which the matrix registers people and cancels, away from `live_id`.
    registration_live_id: int
    cancelled_live_id: int
    request_id: int
    conversation_id: str
    # Each role's Cookie header before the matrix ran, which its last row logs out.
    cookies_at_start: dict[str, str]

    def csrf(self, role: str) -> str:
        return csrf_from(self.clients[role].get("/login" if role == "anonymous" else "/").text)

    def feed_path(self) -> str:
        """The host's current calendar feed path; revoking it in the matrix changes it."""
        page = self.clients["host"].get("/my-agenda").text
        match = re.search(r'value="https?://[^/"]+(/calendar/[^"]+\.ics)"', page)
        assert match is not None, "the personal agenda shows no feed URL"
        return match.group(1)


@dataclass(frozen=True)
class Case:
    """One request to one route: `route` is its declared path, `url` builds the
    concrete URL, and a response with a status in `allowed` means access was granted."""

    method: str
    route: str
    url: Callable[[World], str]
    allowed: frozenset[int] = frozenset({200})
    # Form fields posted with the role's CSRF token.
    form: dict[str, str] | None = None
    # A JSON body posted with the role's CSRF token in X-CSRF-Token.
    json_body: Any = None
    # `live` or `conversation`, for the routes whose level depends on the channel.
    channel: str | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.route}" + (f" ({self.channel})" if self.channel else "")


def fixed(path: str) -> Callable[[World], str]:
    return lambda world: path


REDIRECT = frozenset({303})
INVALID_FORM = frozenset({400})
# The first request does it (303); a repeated one is refused as already done (409).
DONE_OR_CONFLICT = frozenset({303, 409})

CASES: list[Case] = [
    Case("GET", "/health", fixed("/health")),
    Case("GET", "/static", fixed("/static/style.css")),
    Case("GET", "/", fixed("/")),
    Case("GET", "/signup", fixed("/signup")),
    Case("POST", "/signup", fixed("/signup"), INVALID_FORM, form={}),
    Case("GET", "/login", fixed("/login")),
    Case("POST", "/login", fixed("/login"), INVALID_FORM, form={}),
    Case("GET", "/password/forgot", fixed("/password/forgot")),
    Case("POST", "/password/forgot", fixed("/password/forgot"), INVALID_FORM, form={}),
    Case("GET", "/password/reset/{token}", lambda w: f"/password/reset/{RESET_TOKEN}"),
    Case(
        "POST",
        "/password/reset/{token}",
        lambda w: f"/password/reset/{RESET_TOKEN}",
        INVALID_FORM,
        # two different passwords: rejected without using the link
        form={"password": "premier essai", "confirmation": "second essai"},
    ),
    Case(
        "POST",
        "/profile/password",
        fixed("/profile/password"),
        INVALID_FORM,
        form={"new_password": "premier essai", "confirmation": "second essai"},
    ),
    Case("GET", "/profile", fixed("/profile")),
    Case("POST", "/profile", fixed("/profile"), INVALID_FORM, form={"time_zone": "Mars/Olympus"}),
    Case("GET", "/lives/new", fixed("/lives/new")),
    Case("POST", "/lives/new", fixed("/lives/new"), INVALID_FORM, form={}),
    Case("GET", "/lives/{live_id:id}", lambda w: f"/lives/{w.live_id}"),
    Case("GET", "/lives/{live_id:id}/edit", lambda w: f"/lives/{w.live_id}/edit"),
    Case(
        "POST",
        "/lives/{live_id:id}/edit",
        lambda w: f"/lives/{w.live_id}/edit",
        INVALID_FORM,
        form={},
    ),
    Case(
        "POST",
        "/lives/{live_id:id}/register",
        lambda w: f"/lives/{w.registration_live_id}/register",
        # 409 for the host of that live, who cannot register for it
        DONE_OR_CONFLICT,
        form={},
    ),
    Case(
        "POST",
        "/lives/{live_id:id}/unregister",
        lambda w: f"/lives/{w.registration_live_id}/unregister",
        REDIRECT,
        form={},
    ),
    Case(
        "POST",
        "/lives/{live_id:id}/cancel",
        lambda w: f"/lives/{w.cancelled_live_id}/cancel",
        DONE_OR_CONFLICT,
        form={},
    ),
    Case("GET", "/my-agenda", fixed("/my-agenda")),
    Case("POST", "/calendar/revoke", fixed("/calendar/revoke"), REDIRECT, form={}),
    Case("GET", "/calendar/{token}.ics", lambda w: w.feed_path()),
    Case("GET", "/lives/{live_id:id}/replay", lambda w: f"/lives/{w.live_id}/replay"),
    Case("GET", "/api/lives/{live_id:id}/recording", lambda w: f"/api/lives/{w.live_id}/recording"),
    Case(
        "GET",
        "/api/lives/{live_id:id}/hls",
        lambda w: f"/api/lives/{w.live_id}/hls",
        # the live has not started
        frozenset({409}),
    ),
    Case(
        "GET",
        "/hls/{live_id:id}/{expires}/{signature}/{name}",
        lambda w: hls_link_prefix(SECRET_KEY, w.live_id)[0] + "master.m3u8",
        # the stream starts with the live's media
        frozenset({404}),
    ),
    Case(
        "GET",
        "/api/lives/{live_id:id}/replay",
        lambda w: f"/api/lives/{w.live_id}/replay",
        # the live has no recording yet
        frozenset({404}),
    ),
    Case(
        "GET",
        "/recordings/{recording_id:id}/video.mp4",
        lambda w: signed_url(SECRET_KEY, MISSING_RECORDING_ID, RecordingFile.VIDEO),
        frozenset({404}),
    ),
    Case(
        "GET",
        "/recordings/{recording_id:id}/poster.jpg",
        lambda w: signed_url(SECRET_KEY, MISSING_RECORDING_ID, RecordingFile.POSTER),
        frozenset({404}),
    ),
    Case("WS", "/ws/live/{live_id}/signaling", lambda w: f"/ws/live/{w.live_id}/signaling"),
    Case("WS", "/ws/chat/{channel}", lambda w: f"/ws/chat/live:{w.live_id}", channel="live"),
    Case(
        "WS",
        "/ws/chat/{channel}",
        lambda w: f"/ws/chat/conversation:{w.conversation_id}",
        channel="conversation",
    ),
    Case(
        "GET",
        "/api/chat/{channel}/events",
        lambda w: f"/api/chat/live:{w.live_id}/events",
        channel="live",
    ),
    Case(
        "GET",
        "/api/chat/{channel}/events",
        lambda w: f"/api/chat/conversation:{w.conversation_id}/events",
        channel="conversation",
    ),
    Case(
        "GET",
        "/api/chat/{channel}/moderation",
        lambda w: f"/api/chat/live:{w.live_id}/moderation",
        channel="live",
    ),
    Case(
        "POST",
        "/api/lives/{live_id:id}/removals",
        lambda w: f"/api/lives/{w.live_id}/removals",
        # nobody has this id, so the host's request removes no one
        frozenset({404}),
        json_body={"user_id": 999_999},
    ),
    Case("GET", "/mentoring", fixed("/mentoring")),
    Case("GET", "/mentoring/offer", fixed("/mentoring/offer")),
    Case("POST", "/mentoring/offer", fixed("/mentoring/offer"), INVALID_FORM, form={}),
    Case(
        "POST",
        "/mentoring/offer/status",
        fixed("/mentoring/offer/status"),
        INVALID_FORM,
        form={"action": "nothing"},
    ),
    Case("GET", "/mentoring/request", fixed("/mentoring/request")),
    Case("POST", "/mentoring/request", fixed("/mentoring/request"), INVALID_FORM, form={}),
    Case(
        "GET",
        "/mentoring/requests/{request_id:id}",
        lambda w: f"/mentoring/requests/{w.request_id}",
    ),
    Case(
        "POST",
        "/mentoring/requests/{request_id:id}/cancel",
        lambda w: f"/mentoring/requests/{w.request_id}/cancel",
        # the request was accepted, so it can no longer be cancelled
        frozenset({409}),
        form={},
    ),
    Case(
        "POST",
        "/mentoring/requests/{request_id:id}/accept",
        lambda w: f"/mentoring/requests/{w.request_id}/accept",
        frozenset({409}),
        form={},
    ),
    Case(
        "POST",
        "/mentoring/requests/{request_id:id}/decline",
        lambda w: f"/mentoring/requests/{w.request_id}/decline",
        frozenset({409}),
        form={},
    ),
    Case("GET", "/mentoring/inbox", fixed("/mentoring/inbox")),
    Case("GET", "/mentoring/notifications", fixed("/mentoring/notifications")),
    Case("GET", "/mentoring/operator/batch", fixed("/mentoring/operator/batch")),
    Case(
        "POST",
        "/mentoring/operator/batch",
        fixed("/mentoring/operator/batch"),
        form={"dry_run": "1"},
    ),
    Case(
        "GET",
        "/mentoring/conversations/{conversation_id}",
        lambda w: f"/mentoring/conversations/{w.conversation_id}",
    ),
    Case("GET", "/api/mentoring/conversations", fixed("/api/mentoring/conversations")),
    Case("GET", "/api/mentoring/summary", fixed("/api/mentoring/summary")),
    Case(
        "POST",
        "/api/mentoring/conversations/{conversation_id}/read",
        lambda w: f"/api/mentoring/conversations/{w.conversation_id}/read",
        frozenset({204}),
        json_body={"seq": 0},
    ),
    # Last, because they end the conversation and the sessions.
    Case(
        "POST",
        "/mentoring/conversations/{conversation_id}/end",
        lambda w: f"/mentoring/conversations/{w.conversation_id}/end",
        DONE_OR_CONFLICT,
        form={},
    ),
    Case("POST", "/logout", fixed("/logout"), REDIRECT, form={}),
]


def expected_outcome(access: Access, role: str, case: Case) -> Outcome:
    """Return what `role` must get from a route that declares `access`."""
    if access in (Access.PUBLIC, Access.TOKEN):
        return Outcome.ALLOWED
    if role == "anonymous":
        return Outcome.LOG_IN
    if access in (Access.MEMBER, Access.SIGNED_LINK):
        return Outcome.ALLOWED
    if case.channel is not None:
        members, denial = CHANNEL_RELATIONS[(access, case.channel)]
    else:
        members, denial = RELATIONS[access]
    return Outcome.ALLOWED if role in members else denial


def build_app(tmp_path: Path) -> Any:
    return server.create_app(Settings(data_dir=tmp_path, secret_key=SECRET_KEY))


def route_methods(route: BaseRoute) -> set[str]:
    if isinstance(route, WebSocketRoute):
        return {"WS"}
    if isinstance(route, Mount):
        return {"GET"}
    if isinstance(route, Route):
        return set(route.methods or ()) - {"HEAD"}
    raise AssertionError(f"unexpected route type {type(route).__name__}")


def test_every_route_declares_access(tmp_path: Path) -> None:
    """Guards against a route added without saying who may use it."""
    app = build_app(tmp_path)
    undeclared = [path for path, route in walk_routes(app.routes) if access_of(route) is None]
    assert undeclared == []


def test_cases_cover_every_route(tmp_path: Path) -> None:
    """Guards against a route that the matrix below never requests."""
    app = build_app(tmp_path)
    served = {
        (method, path) for path, route in walk_routes(app.routes) for method in route_methods(route)
    }
    requested = {(case.method, case.route) for case in CASES}
    assert served - requested == set()
    assert requested - served == set()


def access_by_case(tmp_path: Path) -> dict[tuple[str, str], Access]:
    app = build_app(tmp_path)
    levels = {}
    for path, route in walk_routes(app.routes):
        access = access_of(route)
        assert access is not None
        for method in route_methods(route):
            levels[(method, path)] = access
    return levels


def grant_operator(data_dir: Path, email: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accounts.roles",
            "grant",
            email,
            "operator",
            "--data-dir",
            str(data_dir),
        ],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECS,
        check=False,
    )
    assert result.returncode == 0, result.stderr


async def store_reset_link(data_dir: Path, email: str, token: str) -> None:
    """Store a reset link for `email` as the forgotten password form would, without
    the e-mail that would carry it."""
    database = database_in(data_dir)
    try:
        async with database.session() as session:
            issued = await issue_link(session, email, utc_now())
            assert issued is not None
            user, _ = issued
            await session.execute(
                update(PasswordReset)
                .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
                .values(token_hash=hash_token(token))
            )
            await session.commit()
    finally:
        await database.dispose()


def account(name: str) -> Account:
    email = name.lower().replace("è", "e").replace("é", "e").replace("î", "i").replace("ï", "i")
    return Account(f"{email}@example.org", PASSWORD, name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp("access-matrix")
    process = ServerProcess(data_dir)
    clients: dict[str, httpx.Client] = {}
    try:
        for role, name in PEOPLE.items():
            if name is None:
                clients[role] = httpx.Client(base_url=process.url, timeout=SOCKET_TIMEOUT_SECS)
            else:
                clients[role] = sign_up(process.url, account(name))
        grant_operator(data_dir, account("Olivia").email)
        sign_up(process.url, account("Zoé")).close()
        asyncio.run(store_reset_link(data_dir, account("Zoé").email, RESET_TOKEN))

        host, attendee = clients["host"], clients["attendee"]
        live_id = schedule_live(host, "Les cartes mentales en classe")
        registration_live_id = schedule_live(host, "Corriger à plusieurs")
        cancelled_live_id = schedule_live(host, "Un live à annuler")
        assert register_for_live(attendee, live_id).status_code == 303

        mentor, mentee, other = clients["mentor"], clients["mentee"], clients["other_mentee"]
        assert flows.save_offer(mentor).status_code == 303
        mentor_id = flows.proposed_mentor_ids(mentee, flows.need_form())[0]
        request_id = flows.request_id_of(flows.send_request(mentee, flows.need_form(), mentor_id))
        accepted = flows.answer(mentor, request_id, accept=True)
        conversation_id = flows.conversation_id_of(accepted)
        other_request = flows.request_id_of(flows.send_request(other, flows.need_form(), mentor_id))
        flows.conversation_id_of(flows.answer(mentor, other_request, accept=True))

        yield World(
            server=process,
            clients=clients,
            live_id=live_id,
            registration_live_id=registration_live_id,
            cancelled_live_id=cancelled_live_id,
            request_id=request_id,
            conversation_id=conversation_id,
            cookies_at_start={role: cookie_header(client) for role, client in clients.items()},
        )
    finally:
        for client in clients.values():
            client.close()
        process.stop()


def http_outcome(world: World, role: str, case: Case) -> str:
    client = world.clients[role]
    url = case.url(world)
    if case.method == "GET":
        response = client.get(url)
    elif case.json_body is not None:
        response = client.post(
            url, content=json.dumps(case.json_body), headers={"X-CSRF-Token": world.csrf(role)}
        )
    else:
        response = client.post(url, data={"csrf_token": world.csrf(role), **(case.form or {})})

    status = response.status_code
    location = response.headers.get("location", "")
    if status == 401 or (status == 303 and location.startswith("/login")):
        return Outcome.LOG_IN
    if status in case.allowed:
        return Outcome.ALLOWED
    if status == 403:
        return Outcome.FORBIDDEN
    if status == 404:
        return Outcome.NOT_FOUND
    return f"unexpected {status} {location}".strip()


# Maps the close codes sent before `welcome` to what they mean.
CLOSE_OUTCOMES = {4401: Outcome.LOG_IN, 4403: Outcome.FORBIDDEN, 4404: Outcome.NOT_FOUND}


def socket_outcome(world: World, role: str, case: Case) -> str:
    client = world.clients[role]
    headers = {"Cookie": cookie_header(client)} if client.cookies else {}
    url = world.server.ws_url + case.url(world)
    with connect(url, additional_headers=headers, open_timeout=SOCKET_TIMEOUT_SECS) as socket:
        try:
            frame = json.loads(socket.recv(timeout=SOCKET_TIMEOUT_SECS))
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd is not None else None
            return CLOSE_OUTCOMES.get(code, f"close {code}") if code else "no close frame"
    return Outcome.ALLOWED if frame.get("type") == "welcome" else f"frame {frame.get('type')}"


# These run before the matrix, whose last row logs everyone out.


@pytest.mark.parametrize("role", [role for role in ROLES if role != "anonymous"])
def test_signed_link_tampered_rejected(world: World, role: str) -> None:
    """A logged-in member still needs the signature: a link to another recording,
    or with a later expiry, is refused."""
    link = signed_url(SECRET_KEY, MISSING_RECORDING_ID, RecordingFile.VIDEO)
    other_recording = link.replace(f"/{MISSING_RECORDING_ID}/", f"/{MISSING_RECORDING_ID + 1}/")
    later = re.sub(r"expires=(\d+)", lambda m: f"expires={int(m.group(1)) + 1}", link)
    for url in (other_recording, later, f"/recordings/{MISSING_RECORDING_ID}/video.mp4"):
        assert world.clients[role].get(url).status_code == 403, url


@pytest.mark.parametrize("role", ROLES)
def test_calendar_unknown_token_not_found(world: World, role: str) -> None:
    assert world.clients[role].get("/calendar/jeton-inconnu.ics").status_code == 404


# Every socket, as a member who may open it: a page of another site is refused, a page
# of this site is welcome.
SOCKET_MEMBERS = {None: "attendee", "live": "attendee", "conversation": "mentee"}


@pytest.mark.parametrize(
    "case",
    [case for case in CASES if case.method == "WS"],
    ids=[case.label for case in CASES if case.method == "WS"],
)
def test_every_socket_checks_origin(world: World, case: Case) -> None:
    """Guards against a socket that another site's page could open with a teacher's
    cookie (cross-site WebSocket hijacking)."""
    client = world.clients[SOCKET_MEMBERS[case.channel]]
    url = world.server.ws_url + case.url(world)
    headers = {"Cookie": cookie_header(client)}
    outcomes = {}
    for origin in ("https://ailleurs.example", world.server.url):
        with connect(url, additional_headers=headers, origin=Origin(origin)) as socket:
            try:
                frame = json.loads(socket.recv(timeout=SOCKET_TIMEOUT_SECS))
                outcomes[origin] = frame["type"]
            except ConnectionClosed as closed:
                outcomes[origin] = closed.rcvd.code if closed.rcvd else None
    assert outcomes["https://ailleurs.example"] == 4403
    assert outcomes[world.server.url] == "welcome"


# Chat frames on an open socket. Only the people who may open a channel's socket send
# frames on it: the route matrix checks that everyone else is closed before `welcome`.
# Maps each channel kind to the roles that open it, each with the role whose user a
# mute or unmute names.
FRAME_SENDERS: dict[str, dict[str, str]] = {
    "live": {"host": "attendee", "attendee": "host"},
    "conversation": {"mentor": "mentee", "mentee": "mentor"},
}
# Maps each frame level and channel kind to the roles allowed; the others get an
# `error` frame with `forbidden`. Nobody moderates a conversation.
FRAME_MEMBERS: dict[tuple[Access, str], frozenset[str]] = {
    (Access.CHANNEL_MEMBER, "live"): frozenset({"host", "attendee"}),
    (Access.CHANNEL_MEMBER, "conversation"): frozenset({"mentor", "mentee"}),
    (Access.CHANNEL_MODERATOR, "live"): frozenset({"host"}),
    (Access.CHANNEL_MODERATOR, "conversation"): frozenset(),
}
FRAME_CASES = [
    (kind, frame_type, role)
    for kind, senders in FRAME_SENDERS.items()
    for frame_type in FRAME_ACCESS
    for role in senders
]


def channel_path(world: World, kind: str) -> str:
    channel_id = world.live_id if kind == "live" else world.conversation_id
    return f"/ws/chat/{kind}:{channel_id}"


def frames_until(socket: ClientConnection, frame_type: str) -> list[dict[str, Any]]:
    """Return the frames received up to the first of `frame_type`, that one included."""
    frames = []
    while True:
        frame = json.loads(socket.recv(timeout=SOCKET_TIMEOUT_SECS))
        frames.append(frame)
        if frame["type"] == frame_type:
            return frames


@contextmanager
def open_chat(
    world: World, role: str, kind: str
) -> Iterator[tuple[ClientConnection, dict[str, Any]]]:
    """Open the channel's socket as `role`; yield it, resumed, and its `welcome`."""
    headers = {"Cookie": cookie_header(world.clients[role])}
    url = world.server.ws_url + channel_path(world, kind)
    with connect(url, additional_headers=headers) as socket:
        welcome = json.loads(socket.recv(timeout=SOCKET_TIMEOUT_SECS))
        assert welcome["type"] == "welcome", welcome
        socket.send(json.dumps({"type": "resume"}))
        frames_until(socket, "synced")
        yield socket, welcome


def frames_to_try(frame_type: str, socket: ClientConnection, target_id: int) -> list[Any]:
    """Return the frames that use `frame_type` once and undo what it changed, so that
    the cases leave the channel as they found it."""
    if frame_type == "send":
        return [{"type": "send", "client_id": f"matrice-{frame_type}", "text": "Bonsoir"}]
    if frame_type == "delete":
        # the person's own message, which every member may delete
        socket.send(json.dumps({"type": "send", "client_id": "matrice-delete", "text": "Oups"}))
        ack = frames_until(socket, "ack")[-1]
        return [{"type": "delete", "seq": ack["seq"]}]
    if frame_type in ("mute", "unmute"):
        frames = [{"type": frame_type, "user_id": target_id}]
        if frame_type == "mute":
            frames.append({"type": "unmute", "user_id": target_id})
        return frames
    if frame_type == "slow_mode":
        return [
            {"type": "slow_mode", "interval_secs": 30},
            {"type": "slow_mode", "interval_secs": 0},
        ]
    return [{"type": frame_type}]


def frame_outcome(world: World, kind: str, frame_type: str, role: str) -> str:
    with open_chat(world, FRAME_SENDERS[kind][role], kind) as (_, target_welcome):
        target_id = target_welcome["user"]["id"]
    with open_chat(world, role, kind) as (socket, _):
        if frame_type == "resume":
            # the first resume is part of opening; a second is a protocol error
            return Outcome.ALLOWED
        for frame in frames_to_try(frame_type, socket, target_id):
            socket.send(json.dumps(frame))
        socket.send(json.dumps({"type": "ping"}))
        errors = [frame for frame in frames_until(socket, "pong") if frame["type"] == "error"]
    codes = {frame["code"] for frame in errors}
    if codes == {"forbidden"}:
        return Outcome.FORBIDDEN
    if codes:
        return f"errors {sorted(codes)}"
    return Outcome.ALLOWED


def test_every_frame_declares_access() -> None:
    """Guards against a chat frame handler added without saying who may send it."""
    source = (PROJECT_DIR / "chat" / "session.py").read_text()
    handled = set(re.findall(r'"(\w+)": self\._on_\w+', source))
    assert handled == set(FRAME_ACCESS)


@pytest.mark.parametrize(
    ("kind", "frame_type", "role"),
    FRAME_CASES,
    ids=[f"{frame_type}-{kind}-{role}" for kind, frame_type, role in FRAME_CASES],
)
def test_chat_frame_matrix(world: World, kind: str, frame_type: str, role: str) -> None:
    access = FRAME_ACCESS[frame_type]
    allowed = role in FRAME_MEMBERS[(access, kind)]
    expected = Outcome.ALLOWED if allowed else Outcome.FORBIDDEN
    actual = frame_outcome(world, kind, frame_type, role)
    assert actual == expected, f"{frame_type} on {kind} declared {access.value}, as {role}"


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Access]:
    return access_by_case(tmp_path_factory.mktemp("access-levels"))


@pytest.mark.parametrize(
    ("case", "role"),
    [(case, role) for case in CASES for role in ROLES],
    ids=[f"{case.label}-{role}" for case in CASES for role in ROLES],
)
def test_access_matrix(
    world: World, levels: dict[tuple[str, str], Access], case: Case, role: str
) -> None:
    access = levels[(case.method, case.route)]
    expected = expected_outcome(access, role, case)
    if case.method == "WS":
        actual = socket_outcome(world, role, case)
    else:
        actual = http_outcome(world, role, case)
    assert actual == expected, f"{case.label} declared {access.value}, as {role}"


def test_logged_out_cookie_rejected(world: World) -> None:
    """After the matrix logged everyone out, a copy of a session cookie taken before
    opens neither a page nor a socket."""
    cookie = world.cookies_at_start["attendee"]
    with httpx.Client(base_url=world.server.url, headers={"Cookie": cookie}) as copy:
        assert copy.get("/profile").headers["location"] == "/login?next=/profile"
    for path in (f"/ws/chat/live:{world.live_id}", f"/ws/live/{world.live_id}/signaling"):
        url = world.server.ws_url + path
        with (
            connect(url, additional_headers={"Cookie": cookie}) as socket,
            pytest.raises(ConnectionClosed) as closed,
        ):
            socket.recv(timeout=SOCKET_TIMEOUT_SECS)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401, path
