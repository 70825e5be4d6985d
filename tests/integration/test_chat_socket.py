"""The chat socket of a server run in this process by uvicorn, over real sockets:
access close codes, malformed frames, resume limits and slow consumers."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import event, select, update
from starlette.applications import Starlette

import server
from accounts.models import User
from chat.models import ChannelCounter, ChannelEvent, EventKind
from chat.service import ChatService
from core.database import Database, utc_now
from core.settings import Settings
from live.lifecycle import transition
from live.models import Live, LiveState
from tests.support.chat_clients import ChatClient, create_live, database_in
from tests.support.clients import Account, cookie_header, sign_up
from tests.support.processes import STARTUP_TIMEOUT_SECS, free_port

NAMES = ["Claire", "Karim", "Lucie", "Inès"]


@dataclass
class Site:
    """A running server with four accounts: Claire hosts, Karim and Lucie are
    registered for the live, Inès is not."""

    app: Starlette
    url: str
    ws_url: str
    database: Database
    cookies: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    live_id: int = 0

    @property
    def channel(self) -> str:
        return f"live:{self.live_id}"

    @property
    def chat(self) -> ChatService:
        service: ChatService = self.app.state.chat
        return service

    async def client(self, name: str | None, channel: str | None = None) -> ChatClient:
        cookie = self.cookies[name] if name else None
        return await ChatClient.connect(self.ws_url, channel or self.channel, cookie)


def sign_up_all(url: str) -> dict[str, str]:
    """Sign every account up through the form; return their Cookie headers by name."""
    cookies = {}
    for name in NAMES:
        account = Account(f"{name.lower()}@example.org", "correct horse battery", name)
        client = sign_up(url, account)
        cookies[name] = cookie_header(client)
        client.close()
    return cookies


@pytest.fixture
async def site(data_dir: Path) -> AsyncIterator[Site]:
    port = free_port()
    settings = Settings(port=port, data_dir=data_dir, secret_key="test-secret", node_name="test")
    app = server.create_app(settings)
    config = server.uvicorn_config(app, "127.0.0.1", port, "warning")
    uvicorn_server = uvicorn.Server(config)
    serving = asyncio.create_task(uvicorn_server.serve())
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECS
    while not uvicorn_server.started:
        assert not serving.done(), "uvicorn stopped during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.02)

    database = database_in(data_dir)
    result = Site(app, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", database)
    result.cookies = await asyncio.to_thread(sign_up_all, result.url)
    async with database.session() as session:
        for name in NAMES:
            user_id = await session.scalar(select(User.id).where(User.display_name == name))
            assert user_id is not None
            result.user_ids[name] = user_id
    result.live_id = await create_live(
        database, result.user_ids["Claire"], [result.user_ids["Karim"], result.user_ids["Lucie"]]
    )
    try:
        yield result
    finally:
        uvicorn_server.should_exit = True
        await serving
        await database.dispose()


async def test_socket_welcome_and_message(site: Site) -> None:
    claire = await site.client("Claire")
    karim = await site.client("Karim")
    assert [frame["type"] for frame in await claire.open()] == ["synced"]
    await karim.open()
    assert claire.welcome["role"] == "host"
    assert claire.welcome["can_write"] is True
    assert karim.welcome["role"] == "participant"
    assert karim.welcome["user"] == {"id": site.user_ids["Karim"], "name": "Karim"}
    assert karim.welcome["limits"] == {"text_max_chars": 1000, "frame_max_bytes": 16384}

    seq = await karim.say("k-1", "Bonsoir à toutes et à tous")
    event = (await claire.events_up_to(seq))[-1]
    assert event["author"] == {"id": site.user_ids["Karim"], "name": "Karim"}
    assert event["text"] == "Bonsoir à toutes et à tous"
    assert event["client_id"] == "k-1"
    assert event["deleted"] is False
    assert event["sent_at"].endswith("Z")
    await claire.close()
    await karim.close()


@pytest.mark.parametrize(
    ("name", "channel", "code"),
    [
        (None, None, 4401),
        ("Inès", None, 4403),
        ("Karim", "live:999999", 4404),
        ("Karim", "live:0012", 4404),
        ("Karim", "salon:1", 4404),
    ],
)
async def test_socket_access_close_codes(
    site: Site, name: str | None, channel: str | None, code: int
) -> None:
    client = await site.client(name, channel)
    assert await client.close_code() == code


async def test_socket_channel_name_cannot_forge_log_lines(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """A channel name with an encoded line break was logged as is, which let a client
    write a line of its choice into the server log."""
    client = await site.client("Karim", f"{site.channel}%0AFAUSSE%20LIGNE")
    assert await client.close_code() == 4404
    refusals = [record for record in caplog.records if record.name == "chat.session"]
    assert refusals
    for record in refusals:
        assert "\n" not in record.getMessage()


async def test_socket_foreign_origin_closes_4403(site: Site) -> None:
    client = await ChatClient.connect(
        site.ws_url, site.channel, site.cookies["Karim"], origin="https://ailleurs.example"
    )
    assert await client.close_code() == 4403
    same_site = await ChatClient.connect(
        site.ws_url, site.channel, site.cookies["Karim"], origin=site.url
    )
    await same_site.open()
    await same_site.close()


async def test_socket_bad_frames_leave_others_undisturbed(site: Site) -> None:
    karim = await site.client("Karim")
    lucie = await site.client("Lucie")
    await karim.open()
    await lucie.open()
    first = await karim.say("k-1", "Avant")
    assert (await lucie.events_up_to(first))[-1]["seq"] == first
    assert (await karim.events_up_to(first))[-1]["seq"] == first

    cases: list[tuple[str | bytes, str, str | None]] = [
        ("{pas du json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('"texte"', "invalid_json", None),
        ("[" * 5000 + "]" * 5000, "invalid_json", None),
        ('{"type": "chanter", "client_id": "l-1"}', "unknown_type", "l-1"),
        ('{"client_id": "l-2"}', "unknown_type", "l-2"),
        ('{"type": "send", "client_id": "l-3", "text": "' + "x" * 16400 + '"}', "too_large", None),
        ('{"type": "send", "client_id": "l-4", "text": "\\ud800"}', "invalid_text", "l-4"),
        ('{"type": "send", "client_id": "l-5", "text": "a\\u0000b"}', "invalid_text", "l-5"),
        ('{"type": "send", "client_id": "l-6", "text": "\\ufffe"}', "invalid_text", "l-6"),
        (
            '{"type": "send", "client_id": "l-7", "text": "' + "é" * 1001 + '"}',
            "text_too_long",
            "l-7",
        ),
        (
            '{"type": "send", "client_id": "espace interdite", "text": "x"}',
            "invalid_frame",
            "espace interdite",
        ),
        ('{"type": "send", "client_id": "' + "c" * 65 + '", "text": "x"}', "invalid_frame", None),
        ('{"type": "send", "client_id": "l-8", "text": 42}', "invalid_frame", "l-8"),
        ('{"type": "send", "client_id": "l-9"}', "invalid_frame", "l-9"),
        ('{"type": "delete", "seq": true}', "invalid_frame", None),
        ('{"type": "delete", "seq": 0}', "invalid_frame", None),
        ('{"type": "delete", "seq": "1"}', "invalid_frame", None),
        ('{"type": "delete", "seq": 424242}', "not_found", None),
        # Above every integer column: the database driver raised OverflowError (1011).
        ('{"type": "delete", "seq": 9223372036854775808}', "not_found", None),
        (json.dumps({"type": "delete", "seq": first}), "forbidden", None),
        ('{"type": "resume", "after": -1}', "invalid_frame", None),
        ('{"type": "resume", "after": 0}', "invalid_frame", None),
        (b"\x00\x01binaire", "invalid_frame", None),
    ]
    for raw, code, ref in cases:
        await lucie.connection.send(raw)
        frame = await lucie.recv_type("error")
        assert frame["code"] == code, raw[:80]
        assert frame.get("ref") == ref, raw[:80]
        assert frame["message"]

    # Lucie's connection still works, and Karim saw none of it.
    second = await lucie.say("l-10", "Après")
    frames = await karim.until("event")
    await karim.send({"type": "ping"})
    frames += await karim.until("pong")
    assert [(frame["type"], frame.get("seq")) for frame in frames] == [
        ("event", second),
        ("pong", None),
    ]
    # Nothing stored was lost and nothing else was stored.
    events = await site.chat.events(site.channel, after=0)
    assert [(event.seq, event.text) for event in events] == [(1, "Avant"), (2, "Après")]
    await karim.close()
    await lucie.close()


async def test_socket_surrogate_client_id_keeps_connection(site: Site) -> None:
    """A `client_id` with an unpaired surrogate comes back JSON-escaped in the error's
    `ref`. Sent raw, UTF-8 cannot encode it, and the server closed with 1011."""
    lucie = await site.client("Lucie")
    await lucie.open()
    cases = [
        ('{"type": "chanter", "client_id": "\\ud800"}', "unknown_type"),
        ('{"type": "send", "client_id": "\\udfff", "text": "x"}', "invalid_frame"),
    ]
    for raw, code in cases:
        await lucie.connection.send(raw)
        frame = await lucie.recv_type("error")
        assert frame["code"] == code
        # The escape the client sent comes back as the same string.
        assert frame["ref"] == json.loads(raw)["client_id"]

    await lucie.send({"type": "ping"})
    assert (await lucie.recv())["type"] == "pong"
    await lucie.close()


async def test_events_endpoint_huge_numbers(site: Site) -> None:
    """Numbers above the seq column, or longer than int() parses, ended in a 500."""
    karim = await site.client("Karim")
    await karim.open()
    seq = await karim.say("k-1", "Bonsoir")
    url = f"{site.url}/api/chat/{site.channel}/events"
    headers = {"Cookie": site.cookies["Lucie"]}
    async with httpx.AsyncClient(headers=headers) as http:
        for after in (str(2**63), "9" * 5000, "0" * 5000 + "1"):
            response = await http.get(url, params={"after": after})
            assert response.status_code == 200, after[:30]
            assert response.json()["events"] == []
            assert response.json()["has_more"] is False

        response = await http.get(url, params={"after": "0" * 30, "limit": "9" * 5000})
        assert response.status_code == 200
        assert [event["seq"] for event in response.json()["events"]] == [seq]

        for params in ({"after": "-1"}, {"after": "1e3"}, {"limit": "0" * 5000}):
            response = await http.get(url, params=params)
            assert response.status_code == 400, params
            assert response.json()["error"]["message"].startswith("Le paramètre")
    await karim.close()


async def test_socket_too_many_protocol_errors_closes_4400(site: Site) -> None:
    karim = await site.client("Karim")
    lucie = await site.client("Lucie")
    await karim.open()
    await lucie.open()
    for _ in range(19):
        await lucie.connection.send("pas du json")
        assert (await lucie.recv_type("error"))["code"] == "invalid_json"
    # Errors a person can cause do not count towards the limit.
    await lucie.send({"type": "send", "client_id": "l-1", "text": "   "})
    assert (await lucie.recv_type("error"))["code"] == "invalid_text"
    await lucie.connection.send("toujours pas du json")
    assert (await lucie.recv_type("error"))["code"] == "invalid_json"
    assert await lucie.close_code() == 4400

    seq = await karim.say("k-1", "Toujours là")
    assert seq == 1
    await karim.close()


async def test_socket_frame_above_websocket_limit_closes_1009(site: Site) -> None:
    karim = await site.client("Karim")
    lucie = await site.client("Lucie")
    await karim.open()
    await lucie.open()
    await lucie.connection.send('{"type": "ping", "padding": "' + "x" * 70_000 + '"}')
    assert await lucie.close_code() == 1009

    assert await karim.say("k-1", "Rien vu") == 1
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{site.url}/health")).status_code == 200
    await karim.close()


async def test_socket_text_not_utf8_closes_1007_without_traceback(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    karim = await site.client("Karim")
    lucie = await site.client("Lucie")
    await karim.open()
    await lucie.open()
    await lucie.connection.send(b'{"type": "ping", "x": "\xff"}', text=True)
    assert await lucie.close_code() == 1007

    assert await karim.say("k-1", "Rien vu") == 1
    assert "not UTF-8" in caplog.text
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    await karim.close()


async def test_socket_delete_reaches_everyone(site: Site) -> None:
    claire = await site.client("Claire")
    karim = await site.client("Karim")
    await claire.open()
    await karim.open()
    seq = await karim.say("k-1", "Hors sujet")
    await claire.events_up_to(seq)

    await claire.send({"type": "delete", "seq": seq})
    for client in (claire, karim):
        deletion = (await client.events_up_to(seq + 1))[-1]
        assert deletion["kind"] == "deletion"
        assert deletion["deleted_seq"] == seq
        assert deletion["by"] == {"id": site.user_ids["Claire"], "name": "Claire"}
    await claire.close()
    await karim.close()


async def test_socket_read_only_after_live_ended(site: Site) -> None:
    async with site.database.session() as session:
        live = await session.get(Live, site.live_id)
        assert live is not None
        await transition(session, live, LiveState.LIVE)
        await transition(session, live, LiveState.ENDED)

    karim = await site.client("Karim")
    await karim.open()
    assert karim.welcome["can_write"] is False
    await karim.send({"type": "send", "client_id": "k-1", "text": "Trop tard ?"})
    error = await karim.recv_type("error")
    assert error["code"] == "read_only"
    assert error["ref"] == "k-1"
    await karim.close()


async def store_many(database: Database, channel: str, author_id: int, count: int) -> None:
    """Insert `count` messages directly, as months of chat would have left them."""
    now = utc_now()
    async with database.session() as session, session.begin():
        session.add(ChannelCounter(channel=channel, last_seq=0))
        session.add_all(
            ChannelEvent(
                channel=channel,
                seq=seq,
                kind=EventKind.MESSAGE,
                author_id=author_id,
                client_id=f"bulk-{seq}",
                text=f"message {seq}",
                created_at=now,
            )
            for seq in range(1, count + 1)
        )
        await session.execute(
            update(ChannelCounter).where(ChannelCounter.channel == channel).values(last_seq=count)
        )


async def test_socket_resume_limits(site: Site) -> None:
    await store_many(site.database, site.channel, site.user_ids["Karim"], 5201)

    # Without `after`: the last 200.
    fresh = await site.client("Lucie")
    frames = await fresh.open()
    assert [frame["seq"] for frame in frames[:-1]] == list(range(5002, 5202))
    assert frames[-1] == {"type": "synced", "last_seq": 5201}

    # Exactly 5000 missed events are sent in full.
    behind = await site.client("Lucie")
    frames = await behind.open(after=201)
    assert frames[0]["seq"] == 202
    assert len(frames) == 5001

    # More than 5000: `reset`, then the last 200.
    far_behind = await site.client("Lucie")
    frames = await far_behind.open(after=200)
    assert frames[0] == {"type": "reset", "last_seq": 5201}
    assert [frame["seq"] for frame in frames[1:-1]] == list(range(5002, 5202))

    # Ahead of the channel (a restored database): `reset` as well.
    ahead = await site.client("Lucie")
    frames = await ahead.open(after=9000)
    assert frames[0] == {"type": "reset", "last_seq": 5201}
    for client in (fresh, behind, far_behind, ahead):
        await client.close()


async def connect_slow(site: Site, name: str) -> ChatClient:
    """A client whose socket takes in as little as possible once it stops reading."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", int(site.url.rsplit(":", 1)[1])))
    sock.setblocking(False)
    # Without compression, each 4 KB message takes 4 KB of the buffers to fill.
    return await ChatClient.connect(
        site.ws_url, site.channel, site.cookies[name], sock=sock, max_queue=1, compression=None
    )


async def test_socket_slow_consumer_dropped_4408(site: Site) -> None:
    """A participant who stops reading is closed with 4408 and the others receive
    every message, in order, while it happens."""
    site.chat.rate_limit_messages = 1_000_000
    site.chat.connections.write_frames_burst = 1_000_000
    site.chat.send_queue_max_events = 8
    claire = await site.client("Claire")
    karim = await site.client("Karim")
    lucie = await connect_slow(site, "Lucie")
    for client in (claire, karim, lucie):
        await client.open()
    hub = site.chat.hub
    assert hub.subscriber_count(site.channel) == 3

    # Lucie reads nothing from here on. Her server socket's kernel buffer takes a
    # few MB on loopback before the server's writes block and its queue fills.
    text = "😀" * 1000
    sent = 0
    while hub.subscriber_count(site.channel) == 3:
        assert sent < 5000, "the slow consumer was never dropped"
        sent += 1
        assert await claire.say(f"c-{sent}", text) == sent
        assert [event["seq"] for event in await karim.events_up_to(sent)] == [sent]
    for _ in range(20):
        sent += 1
        assert await claire.say(f"c-{sent}", text) == sent
        assert [event["seq"] for event in await karim.events_up_to(sent)] == [sent]

    # Lucie reads again: what was already on its way, in order, then the close.
    received = []
    with pytest.raises(Exception) as closed:
        while True:
            frame = await lucie.recv()
            received.append(frame["seq"])
    assert getattr(closed.value, "rcvd", None) is not None, closed.value
    assert closed.value.rcvd.code == 4408  # type: ignore[attr-defined]
    assert received == list(range(1, len(received) + 1))
    assert len(received) < sent
    await claire.close()
    await karim.close()


class TransactionCounter:
    """Counts the transactions that begin on a real engine, reads included."""

    def __init__(self, database: Database) -> None:
        self.engine = database.engine.sync_engine
        self.count = 0

    def __enter__(self) -> TransactionCounter:
        event.listen(self.engine, "begin", self._on_begin)
        return self

    def __exit__(self, *exc_info: object) -> None:
        event.remove(self.engine, "begin", self._on_begin)

    def _on_begin(self, connection: object) -> None:
        self.count += 1


# Write frames that the database rejects, one of each kind a participant can spam: a
# message from a muted person, the deletion of a message that does not exist, and
# moderation frames from someone who does not moderate.
SPAM_FRAMES: list[dict[str, Any]] = [
    {"type": "send", "client_id": "spam", "text": "Encore moi"},
    {"type": "delete", "seq": 999},
    {"type": "mute", "user_id": 1},
    {"type": "unmute", "user_id": 1},
    {"type": "slow_mode", "interval_secs": 5},
]


async def test_socket_write_spam_opens_no_transaction(site: Site) -> None:
    """Rejected write frames each opened a database transaction, and deletes took the
    channel's write lock, so a script could keep the channel's writers waiting."""
    site.chat.connections.write_frames_per_sec = 0.001
    claire = await site.client("Claire")
    await claire.open()
    await claire.send({"type": "mute", "user_id": site.user_ids["Karim"]})
    assert (await claire.recv_type("event"))["kind"] == "mute"
    karim = await site.client("Karim")
    await karim.open()
    assert karim.welcome["muted"] is True
    burst = site.chat.connections.write_frames_burst
    app_database: Database = site.app.state.database

    with TransactionCounter(app_database) as within_burst:
        for index in range(burst):
            await karim.send(SPAM_FRAMES[index % len(SPAM_FRAMES)])
            error = await karim.recv_type("error")
            assert error["code"] != "rate_limited", error
    assert within_burst.count >= burst

    spam_count = 200
    with TransactionCounter(app_database) as beyond_burst:
        for index in range(spam_count):
            await karim.send(SPAM_FRAMES[index % len(SPAM_FRAMES)])
        errors = [await karim.recv_type("error") for _ in range(spam_count)]
    assert beyond_burst.count == 0
    assert {error["code"] for error in errors} == {"rate_limited"}
    assert all(error["retry_after_secs"] >= 1 for error in errors)
    assert [error.get("ref") for error in errors[:1]] == ["spam"]

    # the connection stays open, and reads still work
    await karim.send({"type": "ping"})
    assert (await karim.recv())["type"] == "pong"
    await karim.close()
    await claire.close()


async def test_socket_write_bucket_per_connection(site: Site) -> None:
    """One connection out of tokens leaves the person's other connection its own."""
    site.chat.connections.write_frames_per_sec = 0.001
    site.chat.connections.write_frames_burst = 2
    first = await site.client("Karim")
    second = await site.client("Karim")
    await first.open()
    await second.open()

    assert await first.say("k-1", "Un") == 1
    assert await first.say("k-2", "Deux") == 2
    await first.send({"type": "send", "client_id": "k-3", "text": "Trois"})
    rejected = await first.recv()
    while rejected["type"] == "event":
        rejected = await first.recv()
    assert rejected["code"] == "rate_limited"
    assert rejected["ref"] == "k-3"

    assert await second.say("k-4", "Quatre") == 3
    await first.close()
    await second.close()


async def test_socket_invalid_text_keeps_tokens(site: Site) -> None:
    """A text rejected without the database does not use up the bucket."""
    site.chat.connections.write_frames_per_sec = 0.001
    site.chat.connections.write_frames_burst = 1
    karim = await site.client("Karim")
    await karim.open()
    for index in range(5):
        await karim.send({"type": "send", "client_id": f"vide-{index}", "text": "   "})
        assert (await karim.recv_type("error"))["code"] == "invalid_text"
    assert await karim.say("k-1", "Enfin un vrai message") == 1
    await karim.close()
