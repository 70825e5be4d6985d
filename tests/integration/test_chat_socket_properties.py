"""Generated hostile frames against the chat socket of a real server process: every
frame gets documented responses, the connection stays up, and the stored log stays
whole (seqs 1..N without gaps, one message per author and client_id)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from accounts.models import User
from chat.errors import ErrorCode
from chat.text import clean_text
from tests.support.chat_clients import FRAME_TIMEOUT_SECS, create_live, database_in
from tests.support.clients import Account, cookie_header, sign_up
from tests.support.fuzz import fuzz_examples, receive_object
from tests.support.processes import ServerProcess

pytestmark = pytest.mark.fuzz

# Examples of the socket test, below Hypothesis's default of 100: each one is a round
# trip to the server and a read of the database.
EXAMPLES = fuzz_examples(80)

# Error codes the chat socket documents, and those that count towards the 20 protocol
# errors after which it closes with 4400.
DOCUMENTED_CODES = {code.value for code in ErrorCode}
PROTOCOL_CODES = {"invalid_json", "invalid_frame", "unknown_type", "too_large"}
PROTOCOL_ERRORS_MAX = 20


@dataclass
class ChatSite:
    """The server, Karim's session cookie, the channel he may write to and his user id."""

    server: ServerProcess
    cookie: str
    channel: str
    author_id: int


@pytest.fixture(scope="module")
def chat_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatSite]:
    """A server process with a live hosted by Claire, for which Karim registered."""
    server = ServerProcess(tmp_path_factory.mktemp("chat-properties"))
    try:
        cookies = {}
        for name in ("Claire", "Karim"):
            client = sign_up(
                server.url, Account(f"{name.lower()}@example.org", "correct horse", name)
            )
            cookies[name] = cookie_header(client)
            client.close()

        async def set_up_live() -> tuple[int, int]:
            database = database_in(server.data_dir)
            try:
                async with database.session() as session:
                    rows = await session.execute(select(User.display_name, User.id))
                    ids = {name: user_id for name, user_id in rows}
                live_id = await create_live(database, ids["Claire"], [ids["Karim"]])
            finally:
                await database.dispose()
            return live_id, ids["Karim"]

        live_id, karim_id = asyncio.run(set_up_live())
        yield ChatSite(server, cookies["Karim"], f"live:{live_id}", karim_id)
    finally:
        server.stop()


@dataclass
class Socket:
    """Karim's chat socket, opened again whenever the server closed it."""

    site: ChatSite
    connection: ClientConnection | None = None
    protocol_errors: int = 0
    # Maps each client_id the server acknowledged to its seq, and to its cleaned text.
    acks: dict[str, int] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def open(self) -> ClientConnection:
        if self.connection is None:
            self.connection = self._stack.enter_context(
                connect(
                    f"{self.site.server.ws_url}/ws/chat/{self.site.channel}",
                    additional_headers={"Cookie": self.site.cookie},
                    proxy=None,
                )
            )
            assert self.receive()["type"] == "welcome"
            self.connection.send(json.dumps({"type": "resume", "after": 0}))
            while self.receive()["type"] != "synced":
                pass
            self.protocol_errors = 0
        return self.connection

    def close(self) -> None:
        self.connection = None
        self._stack.close()

    def receive(self) -> dict[str, Any]:
        assert self.connection is not None
        return receive_object(self.connection, FRAME_TIMEOUT_SECS)

    def exchange(self, raw: str | bytes) -> list[dict[str, Any]]:
        """Send `raw`, then a ping, and return what came back before the pong."""
        connection = self.open()
        responses = []
        try:
            connection.send(raw)
            connection.send(json.dumps({"type": "ping"}))
            while (frame := self.receive())["type"] != "pong":
                responses.append(frame)
        except ConnectionClosed as closed:
            self.close()
            code = closed.rcvd.code if closed.rcvd is not None else None
            # The only close a frame may cause: the 20th protocol error.
            assert code == 4400, code
            assert self.protocol_errors + 1 >= PROTOCOL_ERRORS_MAX
        except BaseException:
            # A failed example leaves frames unread: the next one starts afresh.
            self.close()
            raise
        return responses


@pytest.fixture(scope="module")
def socket(chat_site: ChatSite) -> Iterator[Socket]:
    karim = Socket(chat_site)
    yield karim
    karim.close()


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(),
        st.text(st.characters(codec=None), max_size=30),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
client_ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True),
    st.text(st.characters(codec=None), max_size=70),
    # Unpaired surrogates, which a JSON escape carries and UTF-8 cannot.
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    json_values,
)
texts = st.one_of(
    st.text(st.characters(codec=None), max_size=60),
    st.sampled_from(["Bonsoir", "e\u0301" * 1000, "😀" * 1000, "😀" * 1001, "\u202eabc", " \n "]),
    json_values,
)
# Small numbers that name stored events, numbers beyond every integer column, and
# values of the wrong type.
sequence_numbers = st.one_of(
    st.integers(0, 30), st.integers(-(2**70), 2**70), st.integers(2**31, 2**70), json_values
)
frames = st.one_of(
    st.fixed_dictionaries({"type": st.just("send"), "client_id": client_ids, "text": texts}),
    st.fixed_dictionaries({"type": st.just("delete"), "seq": sequence_numbers}),
    st.fixed_dictionaries({"type": st.just("resume"), "after": sequence_numbers}),
    st.dictionaries(st.sampled_from(["type", "client_id", "text", "seq"]), json_values),
)
# What a client puts on the wire: JSON with escapes for unpaired surrogates, raw
# text, or a binary frame.
raw_frames = st.one_of(
    frames.map(lambda frame: json.dumps(frame, ensure_ascii=True)),
    frames.map(lambda frame: json.dumps(frame, ensure_ascii=True)),
    st.text(st.characters(codec="utf-8"), max_size=100),
    st.binary(max_size=20),
)


def stored_log(site: ChatSite) -> list[tuple[int, int, str | None, str]]:
    """Read (seq, author_id, client_id, text) of every event of the channel, in seq order."""
    path = site.server.data_dir / "veillee.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as database:
        rows = database.execute(
            "SELECT seq, author_id, client_id, text FROM chat_events "
            "WHERE channel = ? ORDER BY seq",
            (site.channel,),
        ).fetchall()
    return [(seq, author_id, client_id, text) for seq, author_id, client_id, text in rows]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(raw=raw_frames)
@example(raw='{"type": "send", "client_id": "\\ud800", "text": "x"}')
@example(raw='{"type": "delete", "seq": 9223372036854775808}')
@example(raw='{"type": "send", "client_id": "emoji", "text": "' + "😀" * 1000 + '"}')
def test_socket_hostile_frames_answered(
    chat_site: ChatSite, socket: Socket, raw: str | bytes
) -> None:
    """Each frame gets documented responses without closing the socket, except the 4400
    of too many protocol errors, and the stored log stays whole."""
    before = stored_log(chat_site)
    responses = socket.exchange(raw)

    sent: dict[str, Any] = {}
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):
            parsed = None
        sent = parsed if isinstance(parsed, dict) else {}
    client_id = sent.get("client_id")
    expected_ref = client_id if isinstance(client_id, str) and len(client_id) <= 64 else None

    # Acks first: the server sends a message's event before or after its ack, and
    # even after the pong, so the event may arrive with a later example's responses.
    for response in sorted(responses, key=lambda frame: frame["type"] != "ack"):
        assert response["type"] in {"error", "ack", "event"}, response
        if response["type"] == "error":
            assert response["code"] in DOCUMENTED_CODES
            assert response["message"]
            assert response.get("ref") == expected_ref
            if response["code"] in PROTOCOL_CODES:
                socket.protocol_errors += 1
        elif response["type"] == "ack":
            assert response["client_id"] == client_id
            # A retried client_id is acknowledged with the seq and text of its first send.
            assert socket.acks.setdefault(client_id, response["seq"]) == response["seq"]
            socket.texts.setdefault(client_id, clean_text(sent["text"]))
        elif response["kind"] == "message":
            assert socket.acks.get(response["client_id"]) == response["seq"]
            assert response["text"] == socket.texts[response["client_id"]]

    # Nothing stored was lost or changed but by a deletion, and seqs stay 1..N.
    after = stored_log(chat_site)
    assert [row[0] for row in after] == list(range(1, len(after) + 1))
    for old, new in zip(before, after, strict=False):
        assert old[:3] == new[:3]
        assert new[3] in {old[3], ""}
    client_ids_stored = [row[2] for row in after if row[2] is not None]
    assert len(client_ids_stored) == len(set(client_ids_stored))
    # An acknowledged message is stored under its seq, as Karim's.
    for response in responses:
        if response["type"] == "ack":
            _, author_id, stored_client_id, _ = after[response["seq"] - 1]
            assert (author_id, stored_client_id) == (chat_site.author_id, client_id)
