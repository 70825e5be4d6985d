"""Local fan-out: the subscribers of each channel in this process, each with a
bounded send queue, fed in increasing seq without gaps.

A feed passes events on in batches: every event that arrived while it was busy goes
out together, and each event's WebSocket frame is encoded once for the whole process.
When a subscriber's connection is idle and has a `FrameWriter`, the feed writes the
batch to its socket at once, in one write. Other subscribers queue the batch for
their session's writer.

A feed passes the broker's events on at most once per BATCH_WINDOW_SECS. An event that
follows a flush by less waits for the window's end with the events behind it, so a
busy channel costs each subscriber one write per window rather than one per event. An
event that follows a quiet window goes out at once. Events read back from the database
(a gap, or a catch-up after a broker reconnection) go out as soon as they are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Final

from chat.broker import Broker
from core.websocket import FrameWriter, encode_text_frame

logger = logging.getLogger(__name__)

# Events one connection may have waiting to be sent. A person reads a chat at a few
# events a second, so a connection this far behind has stopped reading. It is
# closed with 4408 and recovers with `resume`.
SEND_QUEUE_MAX_EVENTS = 256
# Wait before retrying a database read that failed while filling a gap.
FILL_RETRY_INITIAL_SECS = 0.5
FILL_RETRY_MAX_SECS = 10.0
# Events read from the database per query when filling a gap.
FILL_PAGE_EVENTS = 500
# How long events that arrived past a missing seq wait for it through the broker before
# the feed reads the gap from the database. Two processes that store consecutive events
# publish them at about the same moment, so the broker often carries them out of
# order, and reading each such gap back would cost a query per event.
REORDER_WAIT_SECS = 0.1
# The shortest time between two flushes of a feed. At 20 events a second no event
# waits. At 200, each write to a subscriber carries about eight events: the server
# makes eight times fewer writes and its clients eight times fewer reads, for at most
# this much delay. In benchmarks/chat_fanout.py, the rate held under a p99 of 100 ms
# went from 61,000 to 119,000 deliveries a second (median of 3 runs).
BATCH_WINDOW_SECS = 0.04

# Returns the events with after < seq <= up_to (every later one for None) as
# (seq, serialized event frame) pairs, in increasing seq, at most `limit`.
EventLoader = Callable[[str, int, int | None, int], Awaitable[list[tuple[int, str]]]]
# Returns a channel's highest seq.
SeqReader = Callable[[str], Awaitable[int]]


class EventBatch:
    """Events with consecutive seqs, passed on to every subscriber of a channel at once.

    Their frames are encoded on first use and shared by all subscribers, so that an
    event is encoded once per process rather than once per connection.
    """

    def __init__(self, events: list[tuple[int, str]]) -> None:
        self.events = events
        self.first_seq = events[0][0]
        self.last_seq = events[-1][0]
        self._frames: list[bytes] | None = None
        self._joined: bytes | None = None

    def frames_after(self, seq: int) -> bytes | None:
        """Return the encoded frames of the events after `seq`, joined for one write;
        None when `seq` is below the batch's first seq minus one (a gap)."""
        if seq >= self.last_seq:
            return b""
        if seq + 1 < self.first_seq:
            return None
        if self._frames is None:
            self._frames = [encode_text_frame(payload.encode()) for _, payload in self.events]
        start = seq + 1 - self.first_seq
        if start > 0:
            return b"".join(self._frames[start:])
        if self._joined is None:
            self._joined = b"".join(self._frames)
        return self._joined


class Subscriber:
    """One connection's subscription: the events it has still to send.

    While the connection's writer waits on an empty queue (`direct`) and the
    connection has a writable `FrameWriter`, `offer` writes the events to the socket
    itself. Otherwise they wait in `queue` for the writer, which keeps them in order.
    A connection that is closing also queues them, until its session ends.
    """

    def __init__(
        self,
        channel: str,
        max_events: int = SEND_QUEUE_MAX_EVENTS,
        writer: FrameWriter | None = None,
    ) -> None:
        self.channel = channel
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(max_events)
        # Set when the queue overflowed and the hub stopped feeding this subscriber.
        self.dropped = asyncio.Event()
        self.writer = writer
        # The highest seq sent on the connection; later events must follow it without gap.
        self.last_sent = 0
        # True while the connection's writer waits on an empty queue after `resume`.
        self.direct = False
        # Events written by `offer` itself.
        self.frames_written = 0

    def offer(self, batch: EventBatch) -> bool:
        """Write or queue the batch's events after `last_sent` without waiting; return
        False, and mark the subscriber dropped, when its queue is full."""
        writer = self.writer
        if self.direct and writer is not None and self.queue.empty():
            frames = batch.frames_after(self.last_sent)
            if frames == b"":
                return True
            if frames is not None and writer.write_if_writable(frames):
                self.frames_written += batch.last_seq - self.last_sent
                self.last_sent = batch.last_seq
                return True
        for seq, payload in batch.events:
            try:
                self.queue.put_nowait((seq, payload))
            except asyncio.QueueFull:
                self.dropped.set()
                return False
        return True


_CATCH_UP: Final = "catch-up"


class ChannelFeed:
    """A channel's events in this process, passed on in order to its subscribers.

    Events reach the broker out of order when two processes store consecutive events
    and publish them at once, and are lost while a broker connection is down. The
    feed skips what it already passed on, waits REORDER_WAIT_SECS for a missing event,
    then reads the gap back from the database, where every seq below one that was
    published is already committed.
    """

    def __init__(
        self, channel: str, load: EventLoader, batch_window: float = BATCH_WINDOW_SECS
    ) -> None:
        self.channel = channel
        self.subscribers: set[Subscriber] = set()
        self.last_seq = 0
        self._load = load
        self._inbox: asyncio.Queue[tuple[int, str] | str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Events passed on since the last flush, with consecutive seqs.
        self._outgoing: list[tuple[int, str]] = []
        # Maps the seq of each event that arrived past a missing seq to its payload.
        self._ahead: dict[int, str] = {}
        # The event loop time when the oldest gap in `_ahead` was seen.
        self._gap_seen_at = 0.0
        self._batch_window = batch_window
        # The event loop time of the last flush that passed events on. The clock's origin
        # is undefined, so before any flush it is -inf and the first event goes out at once.
        self._flushed_at = -math.inf

    def start(self, last_seq: int) -> None:
        self.last_seq = last_seq
        self._task = asyncio.create_task(self._run(), name=f"chat-feed-{self.channel}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def inbox_empty(self) -> bool:
        return self._inbox.empty()

    def push(self, seq: int, payload: str) -> None:
        self._inbox.put_nowait((seq, payload))

    def catch_up(self) -> None:
        self._inbox.put_nowait(_CATCH_UP)

    async def _run(self) -> None:
        while True:
            item = await self._next_item()
            try:
                await self._take(item)
                await self._fill_batch_window()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug here must not end delivery for the whole channel.
                logger.exception("chat feed channel=%s: failed to pass an event on", self.channel)
            finally:
                self._flush()

    async def _take(self, item: tuple[int, str] | str | None) -> None:
        """Handle `item` (None: a gap that waited its time), then what arrived meanwhile,
        which goes out in the same batch."""
        if item is None:
            await self._fill_gap()
        else:
            await self._handle(item)
        while not self._inbox.empty():
            await self._handle(self._inbox.get_nowait())

    async def _fill_batch_window(self) -> None:
        """Hold the outgoing events until BATCH_WINDOW_SECS after the last flush, taking
        in the events that arrive meanwhile."""
        loop = asyncio.get_running_loop()
        while self._outgoing:
            remaining = self._flushed_at + self._batch_window - loop.time()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    item = await self._inbox.get()
            except TimeoutError:
                return
            await self._take(item)

    async def _next_item(self) -> tuple[int, str] | str | None:
        """Return the next item of the inbox, or None once a gap waited its time."""
        if not self._ahead:
            return await self._inbox.get()
        loop = asyncio.get_running_loop()
        remaining = self._gap_seen_at + REORDER_WAIT_SECS - loop.time()
        if remaining <= 0 or len(self._ahead) >= FILL_PAGE_EVENTS:
            return None
        # Not asyncio.wait_for: on Python 3.11 it returns an item taken in the loop turn
        # where the feed is cancelled and drops the cancellation, so `stop` never returns.
        try:
            async with asyncio.timeout(remaining):
                return await self._inbox.get()
        except TimeoutError:
            return None

    async def _handle(self, item: tuple[int, str] | str) -> None:
        if isinstance(item, str):
            await self._fill(up_to=None)
            self._pass_ahead_on()
            return
        seq, payload = item
        if seq <= self.last_seq:
            return
        if seq > self.last_seq + 1:
            if not self._ahead:
                self._gap_seen_at = asyncio.get_running_loop().time()
            self._ahead[seq] = payload
            return
        self._fan_out(seq, payload)
        self._pass_ahead_on()

    async def _fill_gap(self) -> None:
        """Read the events up to the last one that arrived past a gap from the database,
        where every seq below a published one is committed."""
        up_to = max(self._ahead)
        logger.info(
            "chat feed channel=%s: gap after seq=%d before seq=%d, reading it back",
            self.channel,
            self.last_seq,
            min(self._ahead),
        )
        await self._fill(up_to=up_to)
        self._pass_ahead_on()

    def _pass_ahead_on(self) -> None:
        """Pass on the waiting events that now follow `last_seq` without a gap."""
        while self._ahead:
            payload = self._ahead.pop(self.last_seq + 1, None)
            if payload is None:
                break
            self._fan_out(self.last_seq + 1, payload)
        for seq in [seq for seq in self._ahead if seq <= self.last_seq]:
            del self._ahead[seq]
        if self._ahead:
            # A later gap: it gets the full wait of its own.
            self._gap_seen_at = asyncio.get_running_loop().time()

    async def _fill(self, up_to: int | None) -> None:
        """Pass on the stored events after `last_seq` up to `up_to`, retrying reads."""
        self._flush()
        delay = FILL_RETRY_INITIAL_SECS
        while up_to is None or self.last_seq < up_to:
            try:
                events = await self._load(self.channel, self.last_seq, up_to, FILL_PAGE_EVENTS)
            except Exception as error:  # noqa: BLE001 - any database failure is retried
                logger.warning(
                    "chat feed channel=%s: reading after seq=%d failed (%s), retry in %.1f s",
                    self.channel,
                    self.last_seq,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, FILL_RETRY_MAX_SECS)
                continue
            for seq, payload in events:
                self._fan_out(seq, payload)
            self._flush()
            if len(events) < FILL_PAGE_EVENTS:
                return

    def _fan_out(self, seq: int, payload: str) -> None:
        """Add the event to the outgoing batch unless it was passed on already."""
        if seq <= self.last_seq:
            return
        if seq != self.last_seq + 1:
            # Callers fill gaps first, because a batch contains consecutive seqs only.
            self._flush()
        self.last_seq = seq
        self._outgoing.append((seq, payload))

    def _flush(self) -> None:
        """Offer the outgoing batch to every subscriber."""
        if not self._outgoing:
            return
        batch = EventBatch(self._outgoing)
        self._outgoing = []
        self._flushed_at = asyncio.get_running_loop().time()
        for subscriber in list(self.subscribers):
            if not subscriber.offer(batch):
                self.subscribers.discard(subscriber)
                logger.warning(
                    "chat feed channel=%s: dropped a slow subscriber at seq=%d (queue of %d full)",
                    self.channel,
                    batch.last_seq,
                    subscriber.queue.maxsize,
                )


class Hub:
    """This process's channel feeds; subscribes the broker to a channel while the
    channel has at least one local subscriber."""

    def __init__(
        self,
        broker: Broker,
        load: EventLoader,
        read_last_seq: SeqReader,
        batch_window: float = BATCH_WINDOW_SECS,
    ) -> None:
        self._broker = broker
        self._batch_window = batch_window
        self._load = load
        self._read_last_seq = read_last_seq
        # Maps a channel name to its feed while the channel has local subscribers.
        self._feeds: dict[str, ChannelFeed] = {}
        self._lock = asyncio.Lock()
        broker.attach(self.deliver, self.catch_up)

    @property
    def channel_count(self) -> int:
        return len(self._feeds)

    def inbox_empty(self, channel: str) -> bool:
        """Return whether the channel's feed took every event delivered to it (True
        when the channel has no feed)."""
        feed = self._feeds.get(channel)
        return feed is None or feed.inbox_empty

    def subscriber_count(self, channel: str) -> int:
        feed = self._feeds.get(channel)
        return len(feed.subscribers) if feed is not None else 0

    async def subscribe(self, subscriber: Subscriber) -> None:
        """Add `subscriber`; it receives every event passed on after this returns."""
        async with self._lock:
            feed = self._feeds.get(subscriber.channel)
            if feed is None:
                feed = await self._open_feed(subscriber.channel)
            feed.subscribers.add(subscriber)

    async def _open_feed(self, channel: str) -> ChannelFeed:
        feed = ChannelFeed(channel, self._load, self._batch_window)
        # Registered before the broker subscription, so that no event delivered in
        # between is lost; the feed drops those below the seq read afterwards.
        self._feeds[channel] = feed
        try:
            await self._broker.subscribe(channel)
            last_seq = await self._read_last_seq(channel)
        except BaseException:
            del self._feeds[channel]
            await self._broker.unsubscribe(channel)
            raise
        feed.start(last_seq)
        logger.debug("chat hub: opened channel=%s at seq=%d", channel, last_seq)
        return feed

    async def unsubscribe(self, subscriber: Subscriber) -> None:
        async with self._lock:
            feed = self._feeds.get(subscriber.channel)
            if feed is None:
                return
            feed.subscribers.discard(subscriber)
            if feed.subscribers:
                return
            del self._feeds[subscriber.channel]
            await feed.stop()
            await self._broker.unsubscribe(subscriber.channel)
            logger.debug("chat hub: closed channel=%s", subscriber.channel)

    def deliver(self, channel: str, payload: str) -> None:
        """Queue one serialized event from the broker for its channel's feed, without waiting."""
        feed = self._feeds.get(channel)
        if feed is None:
            return
        seq = _seq_of(payload)
        if seq is None:
            logger.warning("chat hub: dropped a broker payload without seq on channel=%s", channel)
            return
        feed.push(seq, payload)

    def catch_up(self) -> None:
        """Read every open channel's missed events from the database (after a reconnection)."""
        for feed in self._feeds.values():
            feed.catch_up()

    async def stop(self) -> None:
        async with self._lock:
            feeds = list(self._feeds.values())
            self._feeds.clear()
            for feed in feeds:
                await feed.stop()


def _seq_of(payload: str) -> int | None:
    try:
        frame = json.loads(payload)
    except ValueError:
        return None
    seq = frame.get("seq") if isinstance(frame, dict) else None
    if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
        return seq
    return None
