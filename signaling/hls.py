"""The HLS stream of a live, made from the packets of its shared encoders.

`LiveHls` reads both video layers and the audio of a `LiveBroadcast` as one more
consumer of their feeds, next to the viewers and the recorder, so the stream costs no
encoding of its own. It stamps each packet on the stream's timeline on the event loop,
and one thread per live muxes them into the files of signaling/hls_muxer.py under
`<data dir>/hls/<live id>/`, which any server process of the deployment can serve
(signaling/hls_routes.py).

    PacketFeed(high) --+
    PacketFeed(low) ---+-> LiveHls.deliver -> queue -> writer thread -> VariantMuxer per
    PacketFeed(audio) -+                                                 quality + master
"""

from __future__ import annotations

import asyncio
import enum
import fractions
import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from av.packet import Packet

from signaling.aiortc_hooks import PacketizedFrame
from signaling.broadcast import LiveBroadcast
from signaling.encoding import OPUS_TIME_BASE, VIDEO_TIME_BASE, Quality, VideoLayer
from signaling.feeds import PacketFeed
from signaling.hls_folders import HlsWriter, write_writer_file
from signaling.hls_muxer import VariantMuxer, write_master_playlist
from signaling.keyframes import RequestSource

logger = logging.getLogger(__name__)

# Packets waiting for the writer thread: about 4 s of both layers at 30 frames per
# second with the audio. More means the disk or the machine is too slow, and new
# packets are dropped until the layer's next keyframe.
WRITER_QUEUE_MAX_PACKETS = 300
# A source's timestamps are kept as they are while they stay this close to the
# arrival clock. A larger gap anchors the source on the arrival clock again, as when a
# host publishes again and their timestamps start elsewhere.
RESYNC_SECS = 1.0
# Flushing the muxers and writing the last segments takes well under a second; past
# this the disk hangs and the thread is left behind.
WRITER_CLOSE_TIMEOUT_SECS = 10.0
# After the live ends, its files stay this long for the HLS viewers still playing the
# last segments, a few seconds behind, and then go.
REMOVE_AFTER_END_SECS = 30.0


class HlsState(enum.StrEnum):
    """new -> writing -> closed; writing -> failed -> closed."""

    NEW = "new"
    WRITING = "writing"
    FAILED = "failed"
    CLOSED = "closed"


class SourceTimeline:
    """Maps the pts of one source (the video, or the audio) to the stream's timeline,
    which counts from the stream's start in the same time base.

    Packets keep the spacing of their source timestamps, so that frames and audio stay
    regular, and the mapping is anchored on the arrival clock: at the first packet,
    and again whenever the two drift more than RESYNC_SECS apart.
    """

    def __init__(self, time_base: fractions.Fraction, origin: float) -> None:
        self.time_base = time_base
        self.origin = origin
        self.resyncs = 0
        self._resync_ticks = int(RESYNC_SECS / time_base)
        self._source_base: int | None = None
        self._stream_base = 0

    def place(self, source_pts: int, arrived: float) -> int:
        """Return the stream pts of a packet with `source_pts` that arrived at
        `arrived` (time.monotonic())."""
        arrival_ticks = round((arrived - self.origin) / self.time_base)
        if self._source_base is not None:
            placed = self._stream_base + source_pts - self._source_base
            if abs(placed - arrival_ticks) <= self._resync_ticks:
                return placed
            self.resyncs += 1
        self._source_base = source_pts
        self._stream_base = arrival_ticks
        return arrival_ticks


@dataclass(frozen=True, slots=True)
class _VariantStart:
    layer: VideoLayer


@dataclass(frozen=True, slots=True)
class _QueuedPacket:
    # None for audio, which goes to every variant
    quality: Quality | None
    packet: Packet[Any]


class LiveHls:
    """The HLS stream of one live, logged as `LiveHls(<live id>)`.

    `start` subscribes to the broadcast's feeds and starts the writer thread; `close`
    stops both and ends the playlists; `remove_files` deletes the live's folder.
    """

    def __init__(
        self,
        live_id: int,
        broadcast: LiveBroadcast,
        directory: Path,
        writer: HlsWriter | None = None,
    ) -> None:
        self.live_id = live_id
        self.broadcast = broadcast
        self.directory = directory
        # the process named in the folder, so that a survivor can remove the folder
        # once this process dies; None writes no name, as in unit tests
        self.writer = writer
        self.state = HlsState.NEW
        self.packets_dropped = 0
        self._origin: float | None = None
        self._video_timeline: SourceTimeline | None = None
        self._audio_timeline: SourceTimeline | None = None
        # maps each variant to the stream pts of its last video packet; a variant
        # is absent until its first keyframe
        self._last_video_pts: dict[Quality, int] = {}
        self._last_audio_pts: int | None = None
        # variants that dropped a packet and skip to their layer's next keyframe
        self._resyncing: set[Quality] = set()
        self._queue: queue.SimpleQueue[_VariantStart | _QueuedPacket | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._failed = threading.Event()
        self._started_monotonic = time.monotonic()

    def __repr__(self) -> str:
        return f"LiveHls({self.live_id})"

    @property
    def writer_failed(self) -> bool:
        """Whether the writer thread stopped on an error; the stream then stays as it was."""
        return self._failed.is_set()

    @property
    def feeds(self) -> list[PacketFeed]:
        return [*self.broadcast.video_feeds.values(), self.broadcast.audio_feed]

    async def start(self) -> None:
        """Empty the live's folder (a previous stretch of the live may have left files),
        start the writer thread and subscribe to the feeds."""
        if self.state is not HlsState.NEW:
            raise RuntimeError(f"{self!r}: start() expects state new, not {self.state.value}")
        await asyncio.to_thread(self._make_empty_directory)
        self._thread = threading.Thread(
            target=self._write_all, name=f"hls-live-{self.live_id}", daemon=True
        )
        self._thread.start()
        self.state = HlsState.WRITING
        for feed in self.feeds:
            feed.add_consumer(self)
        for feed in self.broadcast.video_feeds.values():
            feed.request_keyframe(RequestSource.CONSUMER)
        logger.info("%r: writing to %s", self, self.directory)

    async def close(self) -> None:
        """Unsubscribe, let the thread mux what is queued and end the playlists."""
        if self.state in {HlsState.NEW, HlsState.CLOSED}:
            self.state = HlsState.CLOSED
            return
        for feed in self.feeds:
            feed.remove_consumer(self)
        self.state = HlsState.CLOSED
        self._queue.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, WRITER_CLOSE_TIMEOUT_SECS)
            if self._thread.is_alive():
                logger.error(
                    "%r: the writer thread did not stop within %.0f s",
                    self,
                    WRITER_CLOSE_TIMEOUT_SECS,
                )
        logger.info(
            "%r: closed after %.1f s, %d packets dropped",
            self,
            time.monotonic() - self._started_monotonic,
            self.packets_dropped,
        )

    async def remove_files(self, delay_secs: float | None = None) -> None:
        """Delete the live's folder after `delay_secs` (REMOVE_AFTER_END_SECS unless
        given), or at once when cancelled."""
        try:
            await asyncio.sleep(REMOVE_AFTER_END_SECS if delay_secs is None else delay_secs)
        finally:
            await asyncio.to_thread(shutil.rmtree, self.directory, True)
            logger.info("%r: removed %s", self, self.directory)

    # the feeds' side, on the event loop

    def deliver(self, feed: PacketFeed, packet: Packet[Any]) -> None:
        if self.state is not HlsState.WRITING:
            return
        if self._failed.is_set():
            self._fail()
            return
        arrived = _arrival_time(packet)
        if self._origin is None:
            self._origin = arrived
        if packet.pts is None:
            return

        if feed.quality is None:
            self._deliver_audio(packet, arrived)
        else:
            self._deliver_video(feed, feed.quality, packet, arrived)

    def _deliver_video(
        self, feed: PacketFeed, quality: Quality, packet: Packet[Any], arrived: float
    ) -> None:
        assert packet.pts is not None and self._origin is not None
        starting = quality not in self._last_video_pts
        if (starting or quality in self._resyncing) and not packet.is_keyframe:
            return
        if self._queue.qsize() >= WRITER_QUEUE_MAX_PACKETS:
            self._drop(quality)
            feed.request_keyframe(RequestSource.CONSUMER)
            return
        self._resyncing.discard(quality)
        if starting:
            layers = self.broadcast.layers
            if layers is None:
                return
            self._queue.put(_VariantStart(layers[quality]))
            logger.info("%r: %s variant starts at %s", self, quality.value, layers[quality])
        if self._video_timeline is None:
            self._video_timeline = SourceTimeline(VIDEO_TIME_BASE, self._origin)

        pts = self._video_timeline.place(packet.pts, arrived)
        last = self._last_video_pts.get(quality)
        if last is not None and pts <= last:
            pts = last + 1
        self._last_video_pts[quality] = pts
        self._queue.put(_QueuedPacket(quality, _stamped_copy(packet, pts, VIDEO_TIME_BASE)))

    def _deliver_audio(self, packet: Packet[Any], arrived: float) -> None:
        assert packet.pts is not None and self._origin is not None
        if not self._last_video_pts:
            # no variant has started: its segments will begin with the video
            return
        if self._queue.qsize() >= WRITER_QUEUE_MAX_PACKETS:
            self._drop(None)
            return
        if self._audio_timeline is None:
            self._audio_timeline = SourceTimeline(OPUS_TIME_BASE, self._origin)
        pts = self._audio_timeline.place(packet.pts, arrived)
        if self._last_audio_pts is not None and pts <= self._last_audio_pts:
            pts = self._last_audio_pts + 1
        self._last_audio_pts = pts
        self._queue.put(_QueuedPacket(None, _stamped_copy(packet, pts, OPUS_TIME_BASE)))

    def _drop(self, quality: Quality | None) -> None:
        self.packets_dropped += 1
        if quality is not None:
            self._resyncing.add(quality)
        if self.packets_dropped % 100 == 1:
            logger.warning(
                "%r: the writer thread is behind; %d packets dropped so far",
                self,
                self.packets_dropped,
            )

    def _fail(self) -> None:
        """Stop feeding a writer thread that failed; the live goes on without HLS."""
        self.state = HlsState.FAILED
        for feed in self.feeds:
            feed.remove_consumer(self)

    # the writer thread

    def _make_empty_directory(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        if self.writer is not None:
            write_writer_file(self.directory, self.writer)

    def _write_all(self) -> None:
        """Body of the writer thread: open a muxer per variant as it starts, mux the
        queued packets, and write the master playlist once every variant has a playlist."""
        muxers: dict[Quality, VariantMuxer] = {}
        master_written = False
        try:
            while (item := self._queue.get()) is not None:
                if isinstance(item, _VariantStart):
                    muxers[item.layer.quality] = VariantMuxer(self.directory, item.layer)
                    continue
                if item.quality is not None:
                    muxers[item.quality].write_video(item.packet)
                else:
                    for muxer in muxers.values():
                        # each muxer takes the packet's stream; give each its own copy
                        muxer.write_audio(_stamped_copy(item.packet, item.packet.pts))
                if not master_written and _every_playlist_written(muxers):
                    layers = {quality: muxer.layer for quality, muxer in muxers.items()}
                    write_master_playlist(self.directory, layers)
                    master_written = True
                    logger.info("%r: master playlist written", self)
            for muxer in muxers.values():
                muxer.close()
        except Exception:
            logger.exception("%r: the writer thread failed; the live goes on without HLS", self)
            for muxer in muxers.values():
                muxer.abort()
            self._failed.set()


def _every_playlist_written(muxers: dict[Quality, VariantMuxer]) -> bool:
    """Check that every quality has its muxer and its media playlist, which the master
    playlist names."""
    return len(muxers) == len(Quality) and all(muxer.playlist_written for muxer in muxers.values())


def _arrival_time(packet: Packet[Any]) -> float:
    """Return when the packet's source frame reached the server, which the shared
    encoder stores in the packet; now, for a packet without it."""
    info = packet.opaque
    if isinstance(info, PacketizedFrame):
        return info.arrived
    return time.monotonic()


def _stamped_copy(
    packet: Packet[Any], pts: int | None, time_base: fractions.Fraction | None = None
) -> Packet[Any]:
    """Return a copy of `packet` with `pts` as pts and dts, since the viewers' senders
    read the original. Opus and this H.264 have no frame reordering, so dts equals pts."""
    copy = Packet(bytes(packet))
    copy.pts = pts
    copy.dts = pts
    copy.time_base = time_base or packet.time_base
    copy.duration = packet.duration
    copy.is_keyframe = packet.is_keyframe
    return copy


def create_live_hls(
    live_id: int, broadcast: LiveBroadcast, hls_dir: Path, writer: HlsWriter
) -> LiveHls:
    return LiveHls(live_id, broadcast, hls_dir / str(live_id), writer)
