"""The chat brokers against real components: the in-process broker, and the Redis
broker against the test session's redis-server, restarts included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat.broker import MemoryBroker
from chat.hub import Hub, Subscriber
from chat.redis_broker import RedisBroker
from chat.service import ChatService
from core.database import Database
from live.channel_policy import LiveChannelPolicy
from tests.support.chat_clients import create_live, create_people
from tests.support.processes import RedisServer

# A Redis restart takes about a second here; the listener's backoff adds at most a
# few more. Every wait ends as soon as its event arrives.
WAIT_SECS = 30.0


class Inbox:
    """The handlers a hub would attach, recording what the broker delivers."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.connections: asyncio.Queue[None] = asyncio.Queue()

    def on_event(self, channel: str, payload: str) -> None:
        self.events.put_nowait((channel, payload))

    def on_connected(self) -> None:
        self.connections.put_nowait(None)

    async def next_event(self) -> tuple[str, str]:
        return await asyncio.wait_for(self.events.get(), WAIT_SECS)

    async def next_connection(self) -> None:
        await asyncio.wait_for(self.connections.get(), WAIT_SECS)


@pytest.fixture
async def brokers(redis_url: str) -> AsyncIterator[tuple[RedisBroker, RedisBroker, Inbox]]:
    """A publishing broker and a receiving one, as two processes would have."""
    sender = RedisBroker(redis_url)
    receiver = RedisBroker(redis_url)
    inbox = Inbox()
    sender.attach(lambda channel, payload: None, lambda: None)
    receiver.attach(inbox.on_event, inbox.on_connected)
    await sender.start()
    await receiver.start()
    await inbox.next_connection()
    yield sender, receiver, inbox
    await sender.stop()
    await receiver.stop()


async def test_memory_broker_delivers_subscribed_channels() -> None:
    broker = MemoryBroker()
    inbox = Inbox()
    broker.attach(inbox.on_event, inbox.on_connected)
    await broker.start()
    await broker.subscribe("live:1")
    await broker.publish("live:2", "ignored")
    await broker.publish("live:1", '{"seq": 1}')
    assert await inbox.next_event() == ("live:1", '{"seq": 1}')
    assert inbox.events.empty()
    assert await broker.is_healthy()

    await broker.unsubscribe("live:1")
    await broker.publish("live:1", '{"seq": 2}')
    assert inbox.events.empty()
    await broker.stop()


async def test_redis_broker_carries_events_between_processes(
    brokers: tuple[RedisBroker, RedisBroker, Inbox],
) -> None:
    sender, receiver, inbox = brokers
    await receiver.subscribe("live:1")
    await sender.publish("live:2", "not subscribed")
    await sender.publish("live:1", "Bonsoir à toutes et à tous 👋")
    assert await inbox.next_event() == ("live:1", "Bonsoir à toutes et à tous 👋")
    assert inbox.events.empty()
    assert await receiver.is_healthy()

    await receiver.unsubscribe("live:1")
    # Confirmed on the same connection, so Redis has handled the unsubscribe too.
    await receiver.subscribe("live:3")
    await sender.publish("live:1", "after unsubscribe")
    await sender.publish("live:3", "marker")
    # Redis keeps the order of one connection's publishes: the marker comes first
    # only because the earlier event was not delivered.
    assert await inbox.next_event() == ("live:3", "marker")


async def test_redis_broker_resubscribes_after_restart(
    redis_server: RedisServer, brokers: tuple[RedisBroker, RedisBroker, Inbox]
) -> None:
    sender, receiver, inbox = brokers
    await receiver.subscribe("live:1")
    await receiver.subscribe("live:2")
    await sender.publish("live:1", "before")
    assert await inbox.next_event() == ("live:1", "before")

    await asyncio.to_thread(redis_server.restart)
    await inbox.next_connection()
    assert receiver.connections == 2
    assert await receiver.is_healthy()

    await sender.publish("live:1", "after one")
    await sender.publish("live:2", "after two")
    assert await inbox.next_event() == ("live:1", "after one")
    assert await inbox.next_event() == ("live:2", "after two")


async def test_redis_broker_reports_outage_in_health(
    redis_server: RedisServer, brokers: tuple[RedisBroker, RedisBroker, Inbox]
) -> None:
    _, receiver, inbox = brokers
    await asyncio.to_thread(redis_server.stop)
    try:
        assert not await receiver.is_healthy()
    finally:
        await asyncio.to_thread(redis_server.start)
    await inbox.next_connection()
    assert await receiver.is_healthy()


async def test_hub_recovers_events_published_during_outage(
    redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """An event stored while Redis was down reaches the other process once its
    listener reconnects, read back from the database."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'chat.sqlite3'}")
    await database.create_schema()
    host, attendee = await create_people(database, ["Claire", "Karim"])
    channel = f"live:{await create_live(database, host.id, [attendee.id])}"
    services = []
    for _ in range(2):
        service = ChatService(database, RedisBroker(redis_url))
        service.policies.register("live", LiveChannelPolicy())
        await service.start()
        services.append(service)
    writer, reader = services
    subscriber = Subscriber(channel)
    try:
        await reader.hub.subscribe(subscriber)
        await writer.send(channel, attendee, "a1", "avant la panne")
        assert (await asyncio.wait_for(subscriber.queue.get(), WAIT_SECS))[0] == 1

        await asyncio.to_thread(redis_server.stop)
        try:
            # Stored; the publish fails and only the writer's own process hears of it.
            result = await writer.send(channel, host, "h1", "pendant la panne")
            assert result.seq == 2
        finally:
            await asyncio.to_thread(redis_server.start)

        seq, payload = await asyncio.wait_for(subscriber.queue.get(), WAIT_SECS)
        assert seq == 2
        assert "pendant la panne" in payload
        await writer.send(channel, attendee, "a2", "après la panne")
        assert (await asyncio.wait_for(subscriber.queue.get(), WAIT_SECS))[0] == 3
        assert subscriber.queue.empty()
    finally:
        await reader.hub.unsubscribe(subscriber)
        for service in services:
            await service.stop()
        await database.dispose()


class DeliveryCountingHub(Hub):
    """A hub that records the seq of each event its broker delivers."""

    def __init__(self, broker: RedisBroker, service: ChatService, batch_window: float) -> None:
        async def load(
            channel: str, after: int, up_to: int | None, limit: int
        ) -> list[tuple[int, str]]:
            events = await service.events(channel, after, up_to, limit)
            return [(event.seq, event.to_json()) for event in events]

        super().__init__(broker, load, service.last_seq, batch_window)
        self.delivered: list[str] = []

    def deliver(self, channel: str, payload: str) -> None:
        self.delivered.append(payload)
        super().deliver(channel, payload)


async def test_hub_reconnection_sends_window_events(own_redis: RedisServer, tmp_path: Path) -> None:
    """A Redis outage while the hub's batch window keeps an event back: the catch-up after
    the reconnection sends the held event and the one stored during the outage, each
    once and in order, without waiting for the window's end."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'chat.sqlite3'}")
    await database.create_schema()
    host, attendee = await create_people(database, ["Claire", "Karim"])
    channel = f"live:{await create_live(database, host.id, [attendee.id])}"
    writer = ChatService(database, RedisBroker(own_redis.url))
    writer.policies.register("live", LiveChannelPolicy())
    await writer.start()
    reader_broker = RedisBroker(own_redis.url)
    # Far beyond WAIT_SECS, so that only the catch-up can send the held event in time.
    hub = DeliveryCountingHub(reader_broker, writer, batch_window=600.0)
    await reader_broker.start()
    subscriber = Subscriber(channel)
    try:
        await asyncio.wait_for(reader_broker.connected.wait(), WAIT_SECS)
        await hub.subscribe(subscriber)
        await writer.send(channel, attendee, "a1", "ouvre la fenêtre")
        assert (await asyncio.wait_for(subscriber.queue.get(), WAIT_SECS))[0] == 1
        await writer.send(channel, attendee, "a2", "retenu")
        async with asyncio.timeout(WAIT_SECS):
            while len(hub.delivered) < 2 or not hub.inbox_empty(channel):
                await asyncio.sleep(0)
        assert subscriber.queue.empty()

        await asyncio.to_thread(own_redis.stop)
        try:
            # It is stored, but its publish fails, so the reader reads it from the database.
            assert (await writer.send(channel, host, "h1", "pendant la panne")).seq == 3
        finally:
            await asyncio.to_thread(own_redis.start)

        seqs = [(await asyncio.wait_for(subscriber.queue.get(), WAIT_SECS))[0] for _ in range(2)]
        assert seqs == [2, 3]
        assert subscriber.queue.empty()
        assert len(hub.delivered) == 2
    finally:
        await hub.unsubscribe(subscriber)
        await hub.stop()
        await reader_broker.stop()
        await writer.stop()
        await database.dispose()
