"""PostgreSQL stops for a while under a running server process, then starts again on
the same port: sends and forms fail cleanly, and the service recovers by itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from chat.errors import FRENCH_MESSAGES, ErrorCode
from core.database import Database
from live.models import Live, LiveState
from tests.support.chat_clients import ChatClient
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
from tests.support.postgres import PostgresServer
from tests.support.processes import ServerProcess
from tests.support.signaling_peers import Publisher, SignalingClient

pytestmark = [pytest.mark.faults, pytest.mark.slow]


async def test_database_outage_during_chat(own_postgres: PostgresServer, tmp_path: Path) -> None:
    """Guards against a database outage that half-writes a message, responds to a form
    with an English 500, leaves /health ready, or needs a restart to recover."""
    database_url = own_postgres.create_database()
    server = ServerProcess(tmp_path / "data", extra_env={"DATABASE_URL": database_url})
    database = Database(database_url)
    claire_http = sign_up(server.url, Account("claire@example.org", "correct horse", "Claire"))
    karim_http = sign_up(server.url, Account("karim@example.org", "correct horse", "Karim"))
    clients: list[ChatClient] = []
    try:
        live_id = schedule_live(claire_http, "Gérer son stress avant un direct")
        assert register_for_live(karim_http, live_id).status_code == 303
        channel = f"live:{live_id}"
        claire = await ChatClient.connect(server.ws_url, channel, cookie_header(claire_http))
        karim = await ChatClient.connect(server.ws_url, channel, cookie_header(karim_http))
        clients = [claire, karim]
        for client in clients:
            await client.open()
        assert await claire.say("c-1", "Bonsoir à toutes et à tous") == 1
        assert await karim.say("k-1", "Bonsoir !") == 2
        received = [await client.events_up_to(2) for client in clients]
        form_token = csrf_from(claire_http.get("/lives/new").text)

        # database down: a send gets try_again and stores nothing
        await asyncio.to_thread(own_postgres.stop_server)
        await karim.send({"type": "send", "client_id": "k-2", "text": "Vous m'entendez ?"})
        error = await karim.recv_type("error")
        assert error["code"] == "try_again"
        assert error["message"] == FRENCH_MESSAGES[ErrorCode.TRY_AGAIN]
        assert error["ref"] == "k-2"

        body = await wait_for_health(server.url, "degraded")
        assert body["database"] == "error"
        unavailable = await asyncio.to_thread(
            claire_http.post, "/lives/new", data=live_form(form_token, "Pendant la panne")
        )
        assert unavailable.status_code == 503
        assert unavailable.headers["content-type"].startswith("text/html")
        assert UNAVAILABLE_TEXT in unavailable.text
        assert unavailable.headers["retry-after"] == "5"
        agenda = await asyncio.to_thread(karim_http.get, "/")
        assert agenda.status_code == 503
        assert UNAVAILABLE_TEXT in agenda.text
        api = await asyncio.to_thread(karim_http.get, f"/api/chat/{channel}/events")
        assert api.status_code == 503
        assert api.json()["error"]["code"] == "http_503"
        assert UNAVAILABLE_TEXT in api.json()["error"]["message"]

        # database back on the same port: the same process serves again
        await asyncio.to_thread(own_postgres.start)
        assert (await wait_for_health(server.url, "ready"))["database"] == "ok"
        assert await karim.say("k-2", "Vous m'entendez ?") == 3
        assert await claire.say("c-2", "Oui, très bien") == 4
        created = await asyncio.to_thread(
            claire_http.post, "/lives/new", data=live_form(form_token, "Après la panne")
        )
        assert created.status_code == 303

        stored = await stored_messages(database, channel)
        assert [seq for seq, _, _ in stored] == [1, 2, 3, 4]
        assert await stored_last_seq(database, channel) == 4
        assert await count_lives(database) == 2
        for client, before_outage in zip(clients, received, strict=True):
            events = before_outage + await client.events_up_to(4)
            assert received_messages(events) == stored
    finally:
        for client in clients:
            await client.close()
        await database.dispose()
        claire_http.close()
        karim_http.close()
        server.stop()

    log = server.log_text()
    assert f"chat send channel={channel} user=" in log
    assert "database failed, nothing stored" in log
    assert "POST /lives/new: database unavailable, responded 503" in log
    # one warning line per failed request, no traceback
    assert "Exception in ASGI application" not in log


async def test_database_outage_on_websocket_open(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    """Guards against a chat socket opened during an outage that hangs or takes the
    process down instead of closing with 1011, which the page retries."""
    database_url = own_postgres.create_database()
    server = ServerProcess(tmp_path / "data", extra_env={"DATABASE_URL": database_url})
    http = sign_up(server.url, Account("ines@example.org", "correct horse", "Inès"))
    try:
        live_id = schedule_live(http, "Les cartes mentales en classe")
        await asyncio.to_thread(own_postgres.stop_server)
        client = await ChatClient.connect(server.ws_url, f"live:{live_id}", cookie_header(http))
        assert await client.close_code() == 1011
        await asyncio.to_thread(own_postgres.start)

        await wait_for_health(server.url, "ready")
        client = await ChatClient.connect(server.ws_url, f"live:{live_id}", cookie_header(http))
        assert await client.open() == [{"type": "synced", "last_seq": 0}]
        await client.close()
        assert httpx.get(f"{server.url}/lives/{live_id}").status_code == 200
    finally:
        http.close()
        server.stop()


async def test_database_restart_while_pool_idle(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    """Guards against pooled connections that died with the old server and fail the
    first requests after it is back."""
    database_url = own_postgres.create_database()
    server = ServerProcess(tmp_path / "data", extra_env={"DATABASE_URL": database_url})
    http = sign_up(server.url, Account("hugo@example.org", "correct horse", "Hugo"))
    try:
        live_id = schedule_live(http, "Trois minutes pour une astuce")
        client = await ChatClient.connect(server.ws_url, f"live:{live_id}", cookie_header(http))
        await client.open()
        assert await client.say("h-1", "Avant le redémarrage") == 1

        await asyncio.to_thread(own_postgres.stop_server)
        await asyncio.to_thread(own_postgres.start)
        assert await client.say("h-2", "Après le redémarrage") == 2
        assert (await asyncio.to_thread(http.get, f"/lives/{live_id}")).status_code == 200
        await client.close()
    finally:
        http.close()
        server.stop()


async def test_database_outage_while_host_away(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    """Guards against a host who leaves during an outage and whose absence, which the
    server cannot store, is then not broadcast, ends the live, or keeps the host from
    publishing again once the database is back."""
    database_url = own_postgres.create_database()
    server = ServerProcess(tmp_path / "data", extra_env={"DATABASE_URL": database_url})
    database = Database(database_url)
    claire_http = sign_up(server.url, Account("claire@example.org", "correct horse", "Claire"))
    karim_http = sign_up(server.url, Account("karim@example.org", "correct horse", "Karim"))
    sockets: list[SignalingClient] = []
    publishers: list[Publisher] = []
    try:
        live_id = schedule_live(claire_http, "Les cartes mentales en classe")
        assert register_for_live(karim_http, live_id).status_code == 303
        host_cookie = cookie_header(claire_http)
        karim_cookie = cookie_header(karim_http)
        host = await SignalingClient.open(server.ws_url, live_id, host_cookie)
        sockets.append(host)
        publishers.append(Publisher())
        await publishers[-1].accept(
            await host.request_answer("publish", await publishers[-1].offer())
        )
        await host.until("state", state="live")
        viewer = await SignalingClient.open(server.ws_url, live_id, karim_cookie)
        sockets.append(viewer)

        # the host leaves while the database is down: viewers still hear of it
        await asyncio.to_thread(own_postgres.stop_server)
        await host.close()
        await publishers[-1].close()
        await viewer.until("host", status="away")

        # database back: the host publishes again, and the live never left `live`
        await asyncio.to_thread(own_postgres.start)
        assert (await wait_for_health(server.url, "ready"))["database"] == "ok"
        host = await SignalingClient.open(server.ws_url, live_id, host_cookie)
        sockets.append(host)
        assert host.welcome["state"] == "live"
        publishers.append(Publisher())
        await publishers[-1].accept(
            await host.request_answer("publish", await publishers[-1].offer())
        )
        await viewer.until("host", status="back")
        late = await SignalingClient.open(server.ws_url, live_id, karim_cookie)
        sockets.append(late)
        assert late.welcome["state"] == "live"
        assert late.welcome["host"] == "present"
        async with database.session() as session:
            live = await session.get(Live, live_id)
        assert live is not None
        assert live.state is LiveState.LIVE
        assert live.host_away_since is None
    finally:
        for socket in sockets:
            await socket.close()
        for publisher in publishers:
            await publisher.close()
        await database.dispose()
        claire_http.close()
        karim_http.close()
        server.stop()

    log = server.log_text()
    assert f"live {live_id}: host away not recorded" in log
    assert "Exception in ASGI application" not in log
