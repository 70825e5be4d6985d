"""Feeds of encoded packets, and the tracks that read them.

A `PacketFeed` is one video layer or the audio of a live, encoded once. Every consumer
(a viewer peer's sender, the recorder) reads it through its own track, which yields
`av.Packet`s: aiortc's RTCRtpSender then only packetizes and encrypts them, since it
encodes only what arrives as a decoded frame (aiortc 1.16, `RTCRtpSender`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from copy import copy as shallow_copy
from typing import Any, Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.frame import Frame
from av.packet import Packet

from signaling.encoding import Quality
from signaling.keyframes import KeyframePolicy, RequestSource

logger = logging.getLogger(__name__)

# Packets waiting in one consumer's video track. The track of a sender that drains it
# normally contains one or two. 30 frames (one second at 30 frames per second) mean that
# it stopped reading for a while, so the track starts again from the next keyframe
# rather than send a second of stale picture.
VIDEO_QUEUE_MAX_PACKETS = 30
# Audio packets waiting in one consumer's track: 60 ms each (the live's Opus packets), so
# about half a second. Above it the oldest go, because late sound is worse than a short gap.
AUDIO_QUEUE_MAX_PACKETS = 8
# Decoded audio frames waiting for the recorder's reader, about a second of them.
FRAME_QUEUE_MAX_FRAMES = 50
# A layer's bit rate is measured over this long: more than one keyframe interval, so
# that keyframes weigh in, yet short enough to follow the picture's changes.
BIT_RATE_WINDOW_SECS = 4.0


class PacketConsumer(Protocol):
    """A consumer of a feed's packets."""

    def deliver(self, feed: PacketFeed, packet: Packet[Any]) -> None:
        """Take `packet` without waiting; it is shared with the other consumers, so it
        must not be changed."""


class BitRateMeter:
    """The bit rate of a stream over its last few seconds."""

    def __init__(self, window_secs: float = BIT_RATE_WINDOW_SECS) -> None:
        self.window_secs = window_secs
        self._sizes: collections.deque[tuple[float, int]] = collections.deque()
        self._bytes = 0

    def add(self, now: float, size: int) -> None:
        self._sizes.append((now, size))
        self._bytes += size
        self._forget_before(now - self.window_secs)

    def bit_rate(self, now: float) -> float:
        """Bits per second over the window that ends at `now`; 0 without packets."""
        self._forget_before(now - self.window_secs)
        return self._bytes * 8 / self.window_secs

    def _forget_before(self, start: float) -> None:
        while self._sizes and self._sizes[0][0] < start:
            self._bytes -= self._sizes.popleft()[1]


class PacketFeed:
    """The encoded packets of one video layer (with its keyframe policy) or of the audio,
    handed to every consumer as they come out of the encoder."""

    def __init__(
        self, name: str, quality: Quality | None = None, policy: KeyframePolicy | None = None
    ) -> None:
        self.name = name
        self.quality = quality
        self.policy = policy
        # consumers in the order they came, as a dict used as an ordered set
        self._consumers: dict[PacketConsumer, None] = {}
        self.packets_published = 0
        self.meter = BitRateMeter()

    def __repr__(self) -> str:
        return f"PacketFeed({self.name})"

    @property
    def consumer_count(self) -> int:
        return len(self._consumers)

    def add_consumer(self, consumer: PacketConsumer) -> None:
        self._consumers[consumer] = None

    def remove_consumer(self, consumer: PacketConsumer) -> None:
        self._consumers.pop(consumer, None)

    def request_keyframe(self, source: RequestSource) -> None:
        """Ask the encoder for a keyframe, within its rate limit; audio has none."""
        if self.policy is not None:
            self.policy.request(time.monotonic(), source)

    def publish(self, packet: Packet[Any]) -> None:
        self.packets_published += 1
        self.meter.add(time.monotonic(), packet.size)
        for consumer in list(self._consumers):
            consumer.deliver(self, packet)


class _QueueTrack(MediaStreamTrack):
    """A track whose `recv` returns what `_push` queued, in order, unless a sink takes
    each item at once (`set_sink`)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._queue: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[Any], bool] | None = None
        self._sink_failed: Callable[[BaseException], None] | None = None

    def set_sink(
        self, sink: Callable[[Any], bool], on_failure: Callable[[BaseException], None]
    ) -> None:
        """Hand every item to `sink` as it comes, in place of the queue `recv` reads.
        `sink` returns False when it had to drop the item. An exception from `sink`
        goes to `on_failure`, and the queue takes over again. Starts the track, as a
        first `recv` would."""
        self._sink = sink
        self._sink_failed = on_failure
        self._started()

    async def recv(self) -> Frame | Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        self._started()
        while not self._queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            if self.readyState != "live":
                raise MediaStreamError
        item: Frame | Packet[Any] = self._queue.popleft()
        return item

    def stop(self) -> None:
        super().stop()
        self._queue.clear()
        self._wake()

    def _started(self) -> None:
        """Called by each `recv`; subclasses subscribe to their feed on the first one."""

    def _push(self, item: Frame | Packet[Any]) -> bool:
        """Queue `item`, or hand it to the sink; return False when the sink dropped it."""
        if self._sink is not None:
            try:
                return self._sink(item)
            except Exception as error:  # noqa: BLE001 - handed to the owner, which logs it
                sink_failed, self._sink, self._sink_failed = self._sink_failed, None, None
                if sink_failed is not None:
                    sink_failed(error)
                return False
        self._queue.append(item)
        self._wake()
        return True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class EncodedVideoTrack(_QueueTrack):
    """One consumer's video: the packets of one layer from a keyframe on.

    The track subscribes on its first `recv`, that is once the viewer's connection is
    up and its sender starts reading, and requests a keyframe from the layer then, so that
    nothing stale piles up while ICE and DTLS connect. `switch` moves it to another
    layer at that layer's next keyframe; until then the current layer goes on.
    """

    def __init__(self, feeds: dict[Quality, PacketFeed], quality: Quality, name: str) -> None:
        super().__init__("video")
        self.name = name
        self._feeds = feeds
        self._wanted = quality
        self._subscribed = False
        # the feed whose packets go out, and the one to switch to at its next keyframe
        self._current: PacketFeed | None = None
        self._pending: PacketFeed | None = None
        self._resyncing = False
        self._last_pts: int | None = None
        self.packets_queued = 0
        self.resyncs = 0

    def __repr__(self) -> str:
        return f"EncodedVideoTrack({self.name})"

    @property
    def quality(self) -> Quality | None:
        """The layer whose packets go out now, None before the first keyframe."""
        return None if self._current is None else self._current.quality

    @property
    def wanted_quality(self) -> Quality:
        return self._wanted

    @property
    def feed(self) -> PacketFeed | None:
        """The feed whose packets go out now."""
        return self._current

    def request_keyframe(self) -> None:
        """Pass on a viewer's picture loss report to the layer it receives."""
        feed = self._current or self._pending
        if feed is not None:
            feed.request_keyframe(RequestSource.LOSS_REPORT)

    def switch(self, quality: Quality) -> None:
        """Move to the layer of `quality` at its next keyframe."""
        self._wanted = quality
        if self._subscribed and self.readyState == "live":
            self._aim(self._feeds[quality])

    def stop(self) -> None:
        for feed in (self._current, self._pending):
            if feed is not None:
                feed.remove_consumer(self)
        self._current = self._pending = None
        super().stop()

    def _started(self) -> None:
        if not self._subscribed:
            self._subscribed = True
            self._aim(self._feeds[self._wanted])

    def _aim(self, target: PacketFeed) -> None:
        if target is self._pending:
            return
        if self._pending is not None and self._pending is not self._current:
            self._pending.remove_consumer(self)
        self._pending = None
        if target is self._current:
            return
        self._pending = target
        target.add_consumer(self)
        target.request_keyframe(RequestSource.CONSUMER)

    def deliver(self, feed: PacketFeed, packet: Packet[Any]) -> None:
        if feed is self._pending:
            if not packet.is_keyframe:
                return
            packet = self._switch_at(feed, packet)
            if feed is not self._current:
                return
        elif feed is not self._current:
            return
        elif self._resyncing:
            if not packet.is_keyframe:
                return
            self._resyncing = False

        if len(self._queue) >= VIDEO_QUEUE_MAX_PACKETS:
            # the sender stopped reading: start again from a keyframe
            self._queue.clear()
            self.resyncs += 1
            if not packet.is_keyframe:
                self._resyncing = True
                feed.request_keyframe(RequestSource.CONSUMER)
                return
        if packet.pts is not None:
            self._last_pts = packet.pts
        self.packets_queued += 1
        if not self._push(packet):
            # the sender's socket is full: start again from a keyframe once it drains
            self.resyncs += 1
            self._resyncing = True
            feed.request_keyframe(RequestSource.CONSUMER)

    def _switch_at(self, feed: PacketFeed, keyframe: Packet[Any]) -> Packet[Any]:
        """Make `feed` current from `keyframe` on, unless that keyframe is older than
        what already went out; return the packet to queue."""
        pts = keyframe.pts
        if pts is not None and self._last_pts is not None and pts < self._last_pts:
            # the other layer is ahead of this one: wait for its next keyframe
            feed.request_keyframe(RequestSource.CONSUMER)
            return keyframe
        if self._current is not None:
            self._current.remove_consumer(self)
            logger.debug("%r: %s -> %s", self, self._current.name, feed.name)
        self._current = feed
        self._pending = None
        self._resyncing = False
        if pts is not None and pts == self._last_pts:
            # the same source frame already went out from the other layer: two frames
            # with one RTP timestamp would be taken for one, so move it by one tick
            return _restamped(keyframe, pts + 1)
        return keyframe


def _restamped(packet: Packet[Any], pts: int) -> Packet[Any]:
    copy = Packet(bytes(packet))
    copy.pts = pts
    copy.dts = pts
    copy.time_base = packet.time_base
    copy.is_keyframe = packet.is_keyframe
    # The stored RTP payloads hold no timestamp, so they serve the copy as they are. But
    # the copy needs its own object: PyAV 18 keys opaque values by id() and drops the
    # value when a packet holding it is freed, which would empty the other packet's.
    copy.opaque = shallow_copy(packet.opaque)
    return copy


class EncodedAudioTrack(_QueueTrack):
    """One consumer's audio: the live's Opus packets, subscribed on the first `recv`."""

    def __init__(self, feed: PacketFeed, name: str) -> None:
        super().__init__("audio")
        self.name = name
        self._feed = feed
        self._subscribed = False
        self.packets_dropped = 0

    def __repr__(self) -> str:
        return f"EncodedAudioTrack({self.name})"

    def stop(self) -> None:
        self._feed.remove_consumer(self)
        super().stop()

    def _started(self) -> None:
        if not self._subscribed:
            self._subscribed = True
            self._feed.add_consumer(self)

    def deliver(self, feed: PacketFeed, packet: Packet[Any]) -> None:
        if len(self._queue) >= AUDIO_QUEUE_MAX_PACKETS:
            self._queue.popleft()
            self.packets_dropped += 1
        self._push(packet)


class FrameQueueTrack(_QueueTrack):
    """Decoded audio frames pushed by the live's reader, for the recorder to encode.

    The recorder copies each frame before it resamples it, so the frame object may be
    shared with the live's Opus encoder.
    """

    def __init__(self, name: str) -> None:
        super().__init__("audio")
        self.name = name
        self.frames_dropped = 0

    def __repr__(self) -> str:
        return f"FrameQueueTrack({self.name})"

    def push(self, frame: AudioFrame) -> None:
        if self.readyState != "live":
            return
        if len(self._queue) >= FRAME_QUEUE_MAX_FRAMES:
            self._queue.popleft()
            self.frames_dropped += 1
        self._push(frame)
