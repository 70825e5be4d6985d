"""The hub's local fan-out: in-order delivery, gap filling from the database,
dropping a subscriber whose queue overflows and batching within a window."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import event as sqlalchemy_event

from chat.broker import MemoryBroker
from chat.hub import EventBatch, Hub, Subscriber
from chat.log import Person
from chat.service import ChatService
from core.database import Database
from live.channel_policy import LiveChannelPolicy
from tests.support.chat_clients import create_live, create_people

WAIT_SECS = 10.0


@dataclass
class Setup:
    database: Database
    service: ChatService
    channel: str
    people: list[Person]


def new_service(database: Database) -> ChatService:
    service = ChatService(database, MemoryBroker(), rate_limit_messages=10_000)
    service.policies.register("live", LiveChannelPolicy())
    return service


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'chat.sqlite3'}")
    await database.create_schema()
    people = await create_people(database, ["Claire", "Karim", "Inès", "Lucie"])
    live_id = await create_live(database, people[0].id, [person.id for person in people[1:]])
    service = new_service(database)
    await service.start()
    yield Setup(database, service, f"live:{live_id}", people)
    await service.stop()
    await database.dispose()


async def next_seq(subscriber: Subscriber) -> int:
    seq, _ = await asyncio.wait_for(subscriber.queue.get(), WAIT_SECS)
    return seq


async def test_hub_delivers_in_seq_order(setup: Setup) -> None:
    subscriber = Subscriber(setup.channel)
    await setup.service.hub.subscribe(subscriber)
    for index in range(6):
        await setup.service.send(setup.channel, setup.people[index % 4], f"c{index}", "salut")
    assert [await next_seq(subscriber) for _ in range(6)] == [1, 2, 3, 4, 5, 6]
    assert subscriber.queue.empty()


async def test_hub_fills_gap_from_database(setup: Setup) -> None:
    """Events stored by another process whose broadcast never arrived are read back."""
    subscriber = Subscriber(setup.channel)
    await setup.service.hub.subscribe(subscriber)
    # A second service on the same database, with a broker of its own: this hub
    # never hears of its events.
    other = new_service(setup.database)
    for index in range(3):
        await other.send(setup.channel, setup.people[1], f"other-{index}", "ailleurs")
    await setup.service.send(setup.channel, setup.people[0], "here", "ici")
    assert [await next_seq(subscriber) for _ in range(4)] == [1, 2, 3, 4]


async def test_hub_reorders_without_database_read(setup: Setup) -> None:
    """Events that the broker carries out of order, as it does when two processes
    publish consecutive events at once, pass on in order without a gap read."""
    subscriber = Subscriber(setup.channel)
    await setup.service.hub.subscribe(subscriber)
    other = new_service(setup.database)
    for index in range(2):
        await other.send(setup.channel, setup.people[1], f"other-{index}", "ailleurs")
    first, second = await setup.service.events(setup.channel, after=0)
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = setup.database.engine.sync_engine
    sqlalchemy_event.listen(engine, "before_cursor_execute", record)
    try:
        setup.service.hub.deliver(setup.channel, second.to_json())
        setup.service.hub.deliver(setup.channel, first.to_json())
        seqs = [await next_seq(subscriber) for _ in range(2)]
    finally:
        sqlalchemy_event.remove(engine, "before_cursor_execute", record)

    assert seqs == [1, 2]
    assert statements == []


async def test_hub_skips_repeated_and_late_events(setup: Setup) -> None:
    subscriber = Subscriber(setup.channel)
    await setup.service.hub.subscribe(subscriber)
    await setup.service.send(setup.channel, setup.people[1], "a", "un")
    await setup.service.send(setup.channel, setup.people[1], "b", "deux")
    assert [await next_seq(subscriber) for _ in range(2)] == [1, 2]

    # The same events again, as a broker echo after a local delivery would bring them.
    events = await setup.service.events(setup.channel, after=0)
    for event in reversed(events):
        setup.service.hub.deliver(setup.channel, event.to_json())
    await setup.service.send(setup.channel, setup.people[1], "c", "trois")
    assert await next_seq(subscriber) == 3
    assert subscriber.queue.empty()


async def test_hub_drops_overflowing_subscriber_only(setup: Setup) -> None:
    slow = Subscriber(setup.channel, max_events=3)
    fast = Subscriber(setup.channel)
    await setup.service.hub.subscribe(slow)
    await setup.service.hub.subscribe(fast)

    for index in range(10):
        await setup.service.send(setup.channel, setup.people[index % 4], f"c{index}", "vite")
    assert [await next_seq(fast) for _ in range(10)] == list(range(1, 11))
    assert slow.dropped.is_set()
    assert slow.queue.qsize() == 3


async def test_hub_unsubscribes_broker_after_last_subscriber(setup: Setup) -> None:
    first = Subscriber(setup.channel)
    second = Subscriber(setup.channel)
    await setup.service.hub.subscribe(first)
    await setup.service.hub.subscribe(second)
    assert setup.service.hub.channel_count == 1
    await setup.service.hub.unsubscribe(first)
    assert setup.service.hub.channel_count == 1
    await setup.service.hub.unsubscribe(second)
    assert setup.service.hub.channel_count == 0


class BatchRecorder(Subscriber):
    """A subscriber that also records the seqs of each batch offered to it."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel)
        self.batches: list[list[int]] = []
        self.offered = asyncio.Event()

    def offer(self, batch: EventBatch) -> bool:
        self.batches.append([seq for seq, _ in batch.events])
        self.offered.set()
        return super().offer(batch)


async def wait_until_taken(hub: Hub, channel: str) -> None:
    """Yield to the event loop until the channel's feed took every pushed event."""
    async with asyncio.timeout(WAIT_SECS):
        while not hub.inbox_empty(channel):
            await asyncio.sleep(0)


async def test_hub_batches_events_within_window_after_flush() -> None:
    """An event after a quiet window goes out alone and at once. The events that
    follow a flush within the window go out together at the window's end."""

    async def load(
        channel: str, after: int, up_to: int | None, limit: int
    ) -> list[tuple[int, str]]:
        return []

    async def read_last_seq(channel: str) -> int:
        return 0

    channel = "live:1"
    hub = Hub(MemoryBroker(), load, read_last_seq, batch_window=2.0)
    subscriber = BatchRecorder(channel)
    await hub.subscribe(subscriber)
    try:
        hub.deliver(channel, json.dumps({"type": "event", "seq": 1}))
        async with asyncio.timeout(WAIT_SECS):
            await subscriber.offered.wait()
        assert subscriber.batches == [[1]]

        subscriber.offered.clear()
        hub.deliver(channel, json.dumps({"type": "event", "seq": 2}))
        await wait_until_taken(hub, channel)
        hub.deliver(channel, json.dumps({"type": "event", "seq": 3}))
        await wait_until_taken(hub, channel)
        assert subscriber.batches == [[1]]
        async with asyncio.timeout(WAIT_SECS):
            await subscriber.offered.wait()
        assert subscriber.batches == [[1], [2, 3]]
        assert [await next_seq(subscriber) for _ in range(3)] == [1, 2, 3]
    finally:
        await hub.stop()
