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
from chat.hub import FILL_PAGE_EVENTS, EventBatch, EventLoader, Hub, Subscriber
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

    channel = "live:1"
    hub = Hub(MemoryBroker(), load_nothing, read_zero, batch_window=2.0)
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


# Far beyond WAIT_SECS: an event that a test receives within WAIT_SECS was not held
# until the end of such a window.
LONG_WINDOW_SECS = 600.0
# Long enough that the test checks which events a window keeps back before it ends.
SHORT_WINDOW_SECS = 2.0


def window_hub(setup: Setup, batch_window: float, load: EventLoader | None = None) -> Hub:
    """Return a hub with its own window on the setup's database. Its broker carries
    nothing, so each test delivers the stored events to it itself."""

    async def load_stored(
        channel: str, after: int, up_to: int | None, limit: int
    ) -> list[tuple[int, str]]:
        events = await setup.service.events(channel, after, up_to, limit)
        return [(event.seq, event.to_json()) for event in events]

    return Hub(MemoryBroker(), load or load_stored, setup.service.last_seq, batch_window)


async def store_events(setup: Setup, count: int) -> dict[int, str]:
    """Store `count` messages that no hub hears of, and return their payloads by seq."""
    for index in range(count):
        await setup.service.send(setup.channel, setup.people[1], f"w{index}", "fenêtre")
    events = await setup.service.events(setup.channel, after=0)
    return {event.seq: event.to_json() for event in events}


async def deliver_first(hub: Hub, subscriber: BatchRecorder, payload: str) -> None:
    """Deliver the event that opens a window and wait until it is offered."""
    hub.deliver(subscriber.channel, payload)
    async with asyncio.timeout(WAIT_SECS):
        await subscriber.offered.wait()
    subscriber.offered.clear()


async def test_window_orders_gap_and_repeats(setup: Setup) -> None:
    """Events that arrive out of order, repeated or late within a window go out once,
    in order, in the window's batch."""
    hub = window_hub(setup, SHORT_WINDOW_SECS)
    subscriber = BatchRecorder(setup.channel)
    await hub.subscribe(subscriber)
    try:
        payloads = await store_events(setup, 4)
        await deliver_first(hub, subscriber, payloads[1])
        for seq in (2, 4, 2, 1, 3):
            hub.deliver(setup.channel, payloads[seq])
        await wait_until_taken(hub, setup.channel)
        assert subscriber.batches == [[1]]

        async with asyncio.timeout(WAIT_SECS):
            await subscriber.offered.wait()
        assert subscriber.batches == [[1], [2, 3, 4]]
        assert [await next_seq(subscriber) for _ in range(4)] == [1, 2, 3, 4]
        assert subscriber.queue.empty()
    finally:
        await hub.stop()


async def catch_up_during_window(
    setup: Setup, hub: Hub, subscriber: BatchRecorder
) -> dict[int, str]:
    """Store three events, deliver the first two so that the window keeps back the second,
    then ask the hub to catch up. Return the payloads by seq."""
    payloads = await store_events(setup, 3)
    await deliver_first(hub, subscriber, payloads[1])
    hub.deliver(setup.channel, payloads[2])
    await wait_until_taken(hub, setup.channel)
    hub.catch_up()
    return payloads


async def test_window_catch_up_sends_held_events(setup: Setup) -> None:
    """A catch-up during a window sends the held events and those read back, each
    once, without waiting for the window's end."""
    hub = window_hub(setup, LONG_WINDOW_SECS)
    subscriber = BatchRecorder(setup.channel)
    await hub.subscribe(subscriber)
    try:
        payloads = await catch_up_during_window(setup, hub, subscriber)
        # Delivered again after the catch-up, as a broker that reconnected would.
        hub.deliver(setup.channel, payloads[3])

        assert [await next_seq(subscriber) for _ in range(3)] == [1, 2, 3]
        assert subscriber.batches == [[1], [2], [3]]
        assert subscriber.queue.empty()
    finally:
        await hub.stop()


async def test_window_failing_read_sends_held_events(setup: Setup) -> None:
    """Events held by a window go out before a database read that fails and then
    hangs, and the read's events follow once reads succeed again."""
    reads: list[int] = []
    database_back = asyncio.Event()

    async def load(
        channel: str, after: int, up_to: int | None, limit: int
    ) -> list[tuple[int, str]]:
        reads.append(after)
        if len(reads) == 1:
            raise OSError("database unreachable")
        await database_back.wait()
        events = await setup.service.events(channel, after, up_to, limit)
        return [(event.seq, event.to_json()) for event in events]

    hub = window_hub(setup, LONG_WINDOW_SECS, load)
    subscriber = BatchRecorder(setup.channel)
    await hub.subscribe(subscriber)
    try:
        await catch_up_during_window(setup, hub, subscriber)

        assert [await next_seq(subscriber) for _ in range(2)] == [1, 2]
        assert not database_back.is_set()
        database_back.set()
        assert await next_seq(subscriber) == 3
        assert reads == [2, 2]
        assert subscriber.queue.empty()
    finally:
        await hub.stop()


async def test_window_unsubscribe_leaves_others_fed(setup: Setup) -> None:
    """A subscriber that leaves during a window gets nothing more, and the other
    still gets the held events at the window's end."""
    hub = window_hub(setup, SHORT_WINDOW_SECS)
    leaving = BatchRecorder(setup.channel)
    staying = BatchRecorder(setup.channel)
    await hub.subscribe(leaving)
    await hub.subscribe(staying)
    try:
        payloads = await store_events(setup, 2)
        await deliver_first(hub, staying, payloads[1])
        hub.deliver(setup.channel, payloads[2])
        await wait_until_taken(hub, setup.channel)
        await hub.unsubscribe(leaving)

        async with asyncio.timeout(WAIT_SECS):
            await staying.offered.wait()
        assert [await next_seq(staying) for _ in range(2)] == [1, 2]
        assert leaving.batches == [[1]]
        assert [await next_seq(leaving)] == [1]
        assert leaving.queue.empty()
    finally:
        await hub.stop()


async def test_window_stop_sends_held_events(setup: Setup) -> None:
    """Stopping the hub during a window returns at once and passes the held events on
    to the subscribers still there."""
    hub = window_hub(setup, LONG_WINDOW_SECS)
    subscriber = BatchRecorder(setup.channel)
    await hub.subscribe(subscriber)
    payloads = await store_events(setup, 2)
    await deliver_first(hub, subscriber, payloads[1])
    hub.deliver(setup.channel, payloads[2])
    await wait_until_taken(hub, setup.channel)

    async with asyncio.timeout(WAIT_SECS):
        await hub.stop()
    assert subscriber.batches == [[1], [2]]
    assert hub.channel_count == 0


@pytest.mark.parametrize("first_seq", [1, 2], ids=["window", "gap-wait"])
async def test_feed_stops_while_taking_event(setup: Setup, first_seq: int) -> None:
    """The last subscriber leaves in the loop turn where the feed takes an event off
    its inbox, while it keeps events back for a window or waits for a missing seq.
    The feed must still stop, since the hub's lock is held until it does."""
    hub = window_hub(setup, LONG_WINDOW_SECS)
    subscriber = BatchRecorder(setup.channel)
    await hub.subscribe(subscriber)
    payloads = await store_events(setup, 3)
    if first_seq == 1:
        await deliver_first(hub, subscriber, payloads[1])
    else:
        # Seq 1 never arrives: the feed waits REORDER_WAIT_SECS for it.
        hub.deliver(setup.channel, payloads[2])
    await wait_until_taken(hub, setup.channel)
    # Turns of the event loop, not time, so that the feed waits on its inbox again.
    for _ in range(5):
        await asyncio.sleep(0)

    hub.deliver(setup.channel, payloads[3])
    # One turn: the feed's inbox read completes, and the unsubscription cancels the
    # feed before the feed itself runs again.
    await asyncio.sleep(0)
    try:
        async with asyncio.timeout(WAIT_SECS) as timeout:
            await hub.unsubscribe(subscriber)
        assert not timeout.expired()
        assert hub.channel_count == 0
        assert feed_tasks(setup.channel) == []
    finally:
        await hub.stop()
        for task in feed_tasks(setup.channel):
            task.cancel()


def feed_tasks(channel: str) -> list[asyncio.Task[object]]:
    """Return the running tasks of the channel's feeds (named in ChannelFeed.start)."""
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name() == f"chat-feed-{channel}" and not task.done()
    ]


async def test_window_drops_slow_subscriber_only() -> None:
    """A window's batch that overflows one subscriber's queue drops that subscriber,
    and the feed goes on with the others, in order and without repeats."""
    channel = "live:1"
    hub = Hub(MemoryBroker(), load_nothing, read_zero, SHORT_WINDOW_SECS)
    slow = Subscriber(channel, max_events=3)
    fast = BatchRecorder(channel)
    await hub.subscribe(slow)
    await hub.subscribe(fast)
    try:
        await deliver_first(hub, fast, event_payload(1))
        for seq in range(2, 12):
            hub.deliver(channel, event_payload(seq))
        async with asyncio.timeout(WAIT_SECS):
            await fast.offered.wait()
        fast.offered.clear()
        assert slow.dropped.is_set()
        assert hub.subscriber_count(channel) == 1

        hub.deliver(channel, event_payload(12))
        assert [await next_seq(fast) for _ in range(12)] == list(range(1, 13))
        assert fast.queue.empty()
    finally:
        await hub.stop()


async def test_window_burst_past_page_size_in_order() -> None:
    """A reversed burst longer than a database page and the default queue, delivered
    within one window, goes out whole and in order without a database read."""
    channel = "live:1"
    loads: list[int] = []

    async def load(
        channel: str, after: int, up_to: int | None, limit: int
    ) -> list[tuple[int, str]]:
        loads.append(after)
        return []

    burst_events = FILL_PAGE_EVENTS + 100
    hub = Hub(MemoryBroker(), load, read_zero, SHORT_WINDOW_SECS)
    subscriber = Subscriber(channel, max_events=burst_events + 1)
    await hub.subscribe(subscriber)
    try:
        hub.deliver(channel, event_payload(1))
        assert await next_seq(subscriber) == 1
        for seq in range(burst_events + 1, 1, -1):
            hub.deliver(channel, event_payload(seq))
        seqs = [await next_seq(subscriber) for _ in range(burst_events)]
        assert seqs == list(range(2, burst_events + 2))
        assert subscriber.queue.empty()
        assert loads == []
    finally:
        await hub.stop()


class ShiftedClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock starts near -10,000 s. The origin of time.monotonic(),
    and so of loop.time(), is undefined: only differences count."""

    def __init__(self) -> None:
        super().__init__()
        self._offset = -10_000.0 - super().time()

    def time(self) -> float:
        return super().time() + self._offset


def test_window_first_event_on_any_clock() -> None:
    """The first event of a feed goes out at once whatever the clock's origin."""

    async def deliver_one() -> list[list[int]]:
        channel = "live:1"
        hub = Hub(MemoryBroker(), load_nothing, read_zero)
        subscriber = BatchRecorder(channel)
        await hub.subscribe(subscriber)
        try:
            hub.deliver(channel, event_payload(1))
            async with asyncio.timeout(WAIT_SECS):
                await subscriber.offered.wait()
            return subscriber.batches
        finally:
            await hub.stop()

    with asyncio.Runner(loop_factory=ShiftedClockLoop) as runner:
        assert runner.run(deliver_one()) == [[1]]


def event_payload(seq: int) -> str:
    return json.dumps({"type": "event", "seq": seq})


async def load_nothing(
    channel: str, after: int, up_to: int | None, limit: int
) -> list[tuple[int, str]]:
    return []


async def read_zero(channel: str) -> int:
    return 0
