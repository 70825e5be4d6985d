"""The SQLite file of a running server process is locked by another process, or made
read-only, for a few seconds: sends and forms wait or fail cleanly, /health reports
which, and the service recovers by itself."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chat.errors import FRENCH_MESSAGES, ErrorCode
from core.database import Database
from tests.support.chat_clients import ChatClient, database_in
from tests.support.clients import (
    Account,
    cookie_header,
    csrf_from,
    live_form,
    register_for_live,
    schedule_live,
    sign_up,
)
from tests.support.faults import (
    UNAVAILABLE_TEXT,
    count_lives,
    received_messages,
    stored_last_seq,
    stored_messages,
    wait_for_health,
)
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.faults, pytest.mark.slow]

# How long a check waits to see that a write stays blocked while the lock is held.
# Far below the server's busy timeout, so the write cannot have failed yet.
BLOCKED_CHECK_SECS = 1.0


@dataclass
class ChatSetup:
    server: ServerProcess
    database: Database
    claire_http: httpx.Client
    karim_http: httpx.Client
    claire: ChatClient
    karim: ChatClient
    channel: str

    @property
    def database_file(self) -> Path:
        return self.server.data_dir / "veillee.sqlite3"


@pytest.fixture
async def chat_setup(tmp_path: Path) -> AsyncIterator[ChatSetup]:
    """A server on its default SQLite file, a live, and its host and an attendee on
    its chat, who have exchanged messages 1 and 2."""
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir)
    database = database_in(data_dir)
    claire_http = sign_up(server.url, Account("claire@example.org", "correct horse", "Claire"))
    karim_http = sign_up(server.url, Account("karim@example.org", "correct horse", "Karim"))
    clients: list[ChatClient] = []
    try:
        live_id = schedule_live(claire_http, "Gérer son stress avant un direct")
        assert register_for_live(karim_http, live_id).status_code == 303
        channel = f"live:{live_id}"
        claire = await ChatClient.connect(server.ws_url, channel, cookie_header(claire_http))
        clients.append(claire)
        karim = await ChatClient.connect(server.ws_url, channel, cookie_header(karim_http))
        clients.append(karim)
        for client in clients:
            await client.open()
        assert await claire.say("c-1", "Bonsoir à toutes et à tous") == 1
        assert await karim.say("k-1", "Bonsoir !") == 2
        for client in clients:
            await client.events_up_to(2)
        yield ChatSetup(server, database, claire_http, karim_http, claire, karim, channel)
    finally:
        for client in clients:
            await client.close()
        await database.dispose()
        claire_http.close()
        karim_http.close()
        server.stop()


async def assert_history_consistent(setup: ChatSetup, last_seq: int) -> None:
    """Check that the channel stored seqs 1 to `last_seq` once each, with a matching
    counter, and that both clients received exactly them."""
    stored = await stored_messages(setup.database, setup.channel)
    assert [seq for seq, _, _ in stored] == list(range(1, last_seq + 1))
    assert len({client_id for _, client_id, _ in stored}) == last_seq
    assert await stored_last_seq(setup.database, setup.channel) == last_seq
    for client in (setup.claire, setup.karim):
        events = await client.events_up_to(last_seq)
        assert received_messages(events) == stored[2:]


async def test_sqlite_locked_by_another_process(chat_setup: ChatSetup) -> None:
    """Guards against a SQLite file locked by another process (a backup, a sqlite3
    shell) that fails sends shorter than the busy timeout, stores them twice, leaves
    /health ready, or needs a restart once the lock is released."""
    setup = chat_setup
    form_token = csrf_from(setup.claire_http.get("/lives/new").text)
    locker = sqlite3.connect(setup.database_file, timeout=10.0)
    try:
        # another process takes the write lock: reads go on, writes wait
        locker.execute("BEGIN EXCLUSIVE")
        body = await wait_for_health(setup.server.url, "degraded")
        assert body["database"] == "locked"
        agenda = await asyncio.to_thread(setup.karim_http.get, "/")
        assert agenda.status_code == 200
        history = await asyncio.to_thread(setup.karim_http.get, f"/api/chat/{setup.channel}/events")
        assert history.status_code == 200

        await setup.karim.send({"type": "send", "client_id": "k-2", "text": "Vous m'entendez ?"})
        form_data = live_form(form_token, "Pendant le verrou")
        form = asyncio.create_task(
            asyncio.to_thread(setup.claire_http.post, "/lives/new", data=form_data)
        )
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(setup.karim.recv(), BLOCKED_CHECK_SECS)
        assert not form.done()

        # the lock is released within the busy timeout: the waiting writes go through
        locker.rollback()
        ack = await setup.karim.recv_type("ack")
        assert ack["client_id"] == "k-2"
        assert ack["seq"] == 3
        assert (await form).status_code == 303
    finally:
        locker.close()

    assert (await wait_for_health(setup.server.url, "ready"))["database"] == "ok"
    assert await setup.claire.say("c-2", "Oui, très bien") == 4
    await assert_history_consistent(setup, 4)
    assert await count_lives(setup.database) == 2

    log = setup.server.log_text()
    assert "health: database write lock still taken after 2.0 s" in log
    assert "Exception in ASGI application" not in log


def set_immutable(paths: list[Path], immutable: bool) -> None:
    """Set or clear the immutable attribute, which makes a file read-only even for
    root and for descriptors opened before."""
    flag = "+i" if immutable else "-i"
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


def can_set_immutable(folder: Path) -> bool:
    """Return whether chattr +i works here: it needs root (CAP_LINUX_IMMUTABLE) and a
    file system that supports the attribute, such as ext4."""
    if shutil.which("chattr") is None:
        return False
    probe = folder / "immutable-probe"
    probe.touch()
    try:
        set_immutable([probe], True)
    except subprocess.CalledProcessError:
        return False
    set_immutable([probe], False)
    probe.unlink()
    return True


async def test_sqlite_read_only_file(chat_setup: ChatSetup, tmp_path: Path) -> None:
    """Guards against a SQLite file that turned read-only (a full or remounted disk,
    an operator's mistake) and makes forms respond with an English 500, leaves /health
    ready, half-writes a message, or needs a restart once it is writable again."""
    if not can_set_immutable(tmp_path):
        pytest.skip("chattr +i is not available: needs root and a file system such as ext4")
    setup = chat_setup
    form_token = csrf_from(setup.claire_http.get("/lives/new").text)
    # NOTE: the -shm file stays writable. SQLite maps it into memory, and a write
    # to a mapping of an immutable file kills the process with SIGBUS (Linux 6.18, SQLite
    # 3.40), which no server can catch.
    database_files = [
        setup.database_file,
        setup.database_file.with_name("veillee.sqlite3-wal"),
    ]
    set_immutable(database_files, True)
    try:
        # writes fail at once: the send gets try_again, forms the French 503
        await setup.karim.send({"type": "send", "client_id": "k-2", "text": "Vous m'entendez ?"})
        error = await setup.karim.recv_type("error")
        assert error["code"] == "try_again"
        assert error["message"] == FRENCH_MESSAGES[ErrorCode.TRY_AGAIN]
        assert error["ref"] == "k-2"

        body = await wait_for_health(setup.server.url, "degraded")
        assert body["database"] == "read_only"
        unavailable = await asyncio.to_thread(
            setup.claire_http.post, "/lives/new", data=live_form(form_token, "Pendant la panne")
        )
        assert unavailable.status_code == 503
        assert unavailable.headers["content-type"].startswith("text/html")
        assert UNAVAILABLE_TEXT in unavailable.text
        assert unavailable.headers["retry-after"] == "5"
        agenda = await asyncio.to_thread(setup.karim_http.get, "/")
        assert agenda.status_code == 200
    finally:
        set_immutable(database_files, False)

    # writable again: the same process serves again
    assert (await wait_for_health(setup.server.url, "ready"))["database"] == "ok"
    assert await setup.karim.say("k-2", "Vous m'entendez ?") == 3
    assert await setup.claire.say("c-2", "Oui, très bien") == 4
    created = await asyncio.to_thread(
        setup.claire_http.post, "/lives/new", data=live_form(form_token, "Après la panne")
    )
    assert created.status_code == 303
    await assert_history_consistent(setup, 4)
    assert await count_lives(setup.database) == 2

    log = setup.server.log_text()
    assert "database failed, nothing stored" in log
    assert "health: database check failed: not writable: " in log
    assert "POST /lives/new: database unavailable, responded 503" in log
    assert "Exception in ASGI application" not in log
