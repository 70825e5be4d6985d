"""Redis stops in the middle of a busy live chat carried by two server processes,
then starts again on the same port."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from accounts.models import User
from chat.redis_broker import ListenerState, RedisBroker
from tests.support.chat_clients import ChatClient, create_live, database_in
from tests.support.clients import Account, cookie_header, sign_up
from tests.support.faults import (
    received_messages,
    stored_last_seq,
    stored_messages,
    wait_for_health,
)
from tests.support.processes import RedisServer, ServerProcess

pytestmark = [pytest.mark.faults, pytest.mark.redis, pytest.mark.slow]

# Claire hosts; the others are registered. Each person chats on one socket, half of
# them through each process.
NAMES = ["Claire", "Karim", "Lucie", "Inès", "Hugo", "Maëlle"]
# A Redis restart takes about a second here, and the listener's backoff adds at most a
# few more. Every wait ends as soon as its event arrives.
WAIT_SECS = 30.0
# Messages each person sends before, during and after the outage. With the extra
# message of Karim during the outage and Hugo's final one, nobody sends more than 5,
# the rate limit in any 5 s, however fast the rounds go.
ROUNDS = {"before": 1, "during": 2, "after": 1}


async def send_round(clients: dict[str, ChatClient], label: str, count: int) -> None:
    """Have every person send `count` messages, all people at once."""

    async def chat(person: int, name: str, client: ChatClient) -> None:
        for index in range(count):
            # client ids take ASCII letters, digits, "-" and "_" only
            await client.say(f"p{person}-{label}-{index}", f"{name} ({label}) message {index}")

    await asyncio.gather(
        *(chat(person, name, client) for person, (name, client) in enumerate(clients.items()))
    )


async def test_redis_restart_during_busy_chat(own_redis: RedisServer, tmp_path: Path) -> None:
    """Guards against messages stored while Redis is down that never reach the other
    process, reach it twice, or leave /health reporting ready."""
    data_dir = tmp_path / "data"
    a = ServerProcess(data_dir, redis_url=own_redis.url)
    b = ServerProcess(data_dir, redis_url=own_redis.url)
    database = database_in(data_dir)
    clients: dict[str, ChatClient] = {}
    try:
        cookies = {}
        for name in NAMES:
            account = Account(f"{name.lower()}@example.org", "correct horse", name)
            with sign_up(a.url, account) as http:
                cookies[name] = cookie_header(http)
        async with database.session() as session:
            user_ids = dict((await session.execute(select(User.display_name, User.id))).all())
        attendees = [user_ids[name] for name in NAMES[1:]]
        channel = f"live:{await create_live(database, user_ids['Claire'], attendees)}"
        # a second live whose chat both processes first open during the outage
        quiet_channel = f"live:{await create_live(database, user_ids['Claire'], attendees)}"

        for index, name in enumerate(NAMES):
            server = a if index % 2 == 0 else b
            clients[name] = await ChatClient.connect(server.ws_url, channel, cookies[name])
            assert await clients[name].open() == [{"type": "synced", "last_seq": 0}]
        await send_round(clients, "before", ROUNDS["before"])

        # redis down: sends are stored and acknowledged, /health reports degraded
        await asyncio.to_thread(own_redis.stop)
        for server in (a, b):
            body = await wait_for_health(server.url, "degraded")
            assert body["broker"] == "error"
            assert body["database"] == "ok"
        await send_round(clients, "during", ROUNDS["during"])
        # the outage's last message comes from process B: nothing stored later on A
        # shows A the gap, so only the read-back after A's reconnection delivers it
        await clients["Karim"].say("karim-alone", "Quelqu'un m'entend ?")
        quiet_on_a = await ChatClient.connect(a.ws_url, quiet_channel, cookies["Claire"])
        quiet_on_b = await ChatClient.connect(b.ws_url, quiet_channel, cookies["Karim"])
        clients["quiet on A"], clients["quiet on B"] = quiet_on_a, quiet_on_b
        for quiet in (quiet_on_a, quiet_on_b):
            assert await quiet.open() == [{"type": "synced", "last_seq": 0}]
        assert await quiet_on_a.say("quiet-1", "Salle calme, pendant la panne") == 1
        for server in (a, b):
            assert (await wait_for_health(server.url, "degraded"))["broker"] == "error"

        # redis back on the same port: both processes resubscribe and report ready
        await asyncio.to_thread(own_redis.start)
        for server in (a, b):
            body = await wait_for_health(server.url, "ready")
            assert body["broker"] == "ok"
        # the channel first opened during the outage is subscribed on reconnection
        assert [event["seq"] for event in await quiet_on_b.events_up_to(1)] == [1]
        assert await quiet_on_b.say("quiet-2", "Salle calme, après la panne") == 2
        for quiet in (quiet_on_a, quiet_on_b):
            events = await quiet.events_up_to(2)
            assert received_messages(events)[-1] == (2, "quiet-2", "Salle calme, après la panne")
        assert len(await stored_messages(database, quiet_channel)) == 2
        del clients["quiet on A"], clients["quiet on B"]
        await quiet_on_a.close()
        await quiet_on_b.close()

        outage_total = len(NAMES) * (ROUNDS["before"] + ROUNDS["during"]) + 1
        received = {
            name: await client.events_up_to(outage_total) for name, client in clients.items()
        }

        await send_round(clients, "after", ROUNDS["after"])
        total = outage_total + len(NAMES) * ROUNDS["after"]
        for name, client in clients.items():
            received[name] += await client.events_up_to(total)
        stored = await stored_messages(database, channel)
        assert [seq for seq, _, _ in stored] == list(range(1, total + 1))
        assert await stored_last_seq(database, channel) == total
        for name, events in received.items():
            assert received_messages(events) == stored, name

        # one last message shows that no late copy of an earlier event follows
        final = await clients["Hugo"].say("hugo-final", "Merci pour ce direct")
        assert final == total + 1
        for name, client in clients.items():
            events = await client.events_up_to(final)
            assert [event["seq"] for event in events] == [final], name
    finally:
        for client in clients.values():
            await client.close()
        await database.dispose()
        a.stop()
        b.stop()

    for server in (a, b):
        log = server.log_text()
        lost = r"WARNING chat\.redis_broker: chat redis broker: listener connection lost"
        back = r"INFO chat\.redis_broker: chat redis broker: reconnected, resubscribed channels=2"
        assert re.search(lost, log), server.log_path
        assert re.search(back, log), server.log_path


async def test_broker_listener_restarts_when_cancelled(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against a listener task ended by a stray cancellation, which left the
    process without chat fan-out and nothing in the log."""
    broker = RedisBroker(redis_url)
    events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    connections: asyncio.Queue[None] = asyncio.Queue()
    broker.attach(
        lambda channel, payload: events.put_nowait((channel, payload)),
        lambda: connections.put_nowait(None),
    )
    await broker.start()
    try:
        await asyncio.wait_for(connections.get(), WAIT_SECS)
        await broker.subscribe("live:1")
        listener = broker._listener
        assert listener is not None

        listener.cancel()
        await asyncio.wait_for(connections.get(), WAIT_SECS)
        assert broker._listener is not listener
        assert broker.connections == 2
        assert await broker.is_healthy()
        restarts = [
            record
            for record in caplog.records
            if record.levelname == "ERROR" and "listener cancelled; restarting it" in record.message
        ]
        assert len(restarts) == 1

        await broker.publish("live:1", "après le redémarrage")
        assert await asyncio.wait_for(events.get(), WAIT_SECS) == (
            "live:1",
            "après le redémarrage",
        )
    finally:
        await broker.stop()
    assert broker.state is ListenerState.STOPPED
