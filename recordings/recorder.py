"""LiveRecorder and PacketRecorder: record a live's audio and video tracks to a raw
MPEG-TS file.

One asyncio task per track pulls frames and stamps each with its wall-clock offset from
the first recorded frame. One thread encodes and writes them, so the event loop only
pays for a queue put per frame. The signaling package starts a recorder when the host's
media arrives and stops it when the live ends.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.packet import Packet
from av.video.frame import VideoFrame

from core.database import utc_now
from recordings.writer import (
    AUDIO_SAMPLE_RATE,
    TransportStreamWriter,
    WriterStats,
    write_started_at,
)

logger = logging.getLogger(__name__)

# Frames wait in the queue while the writer thread encodes. Above these sizes the
# writer has fallen behind (an overloaded machine) and new frames are dropped. Video
# goes first, at about 3 s of backlog (30 video and 50 audio frames per second), and
# audio only at four times that, so the sound survives longest.
VIDEO_DROP_QUEUE_SIZE = 250
AUDIO_DROP_QUEUE_SIZE = 1000
# Flushing x264 and closing the file takes well under a second; past this the disk hangs.
WRITER_CLOSE_TIMEOUT_SECS = 30.0

GENERIC_FAILURE_REASON = "L'enregistrement s'est interrompu à cause d'une erreur du serveur."


class RecorderState(enum.StrEnum):
    NEW = "new"
    RECORDING = "recording"
    STOPPED = "stopped"


class RecordingError(Exception):
    """A track task or the writer of a recorder failed.

    The message names the live and the cause, for logs; `reason` is the French sentence
    shown to people.
    """

    def __init__(self, message: str, reason: str = GENERIC_FAILURE_REASON) -> None:
        super().__init__(message)
        self.reason = reason


class TrackKind(enum.StrEnum):
    AUDIO = "audio"
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class _QueuedFrame:
    kind: TrackKind
    offset_secs: float
    frame: AudioFrame | VideoFrame | Packet[Any]


@dataclass(frozen=True, slots=True)
class _EndOfRecording:
    """The last item of a recorder stopped on purpose: the writer closes the file so
    that it lasts until `offset_secs`, when `stop()` was called."""

    offset_secs: float | None


class LiveRecorder:
    """Records one live's tracks to `path` from `start()` to `stop()`.

    `started_at` is the UTC wall clock of the first recorded frame, None until then.
    A failure of a track or of the writer stops the whole recording at once, because a
    file silently missing its video would pass for a good one. The failure is logged,
    stored in `failure`, signalled by the `failed` event, and raised by `stop()`.
    """

    # What the video track yields: decoded frames, which the writer encodes to H.264.
    video_packets = False

    def __init__(self, live_id: int, path: Path) -> None:
        self.live_id = live_id
        self.path = path
        self.state = RecorderState.NEW
        self.started_at: datetime | None = None
        self.failure: RecordingError | None = None
        self.failed = asyncio.Event()
        self._tracks: list[MediaStreamTrack] = []
        self._pumps: list[asyncio.Task[None]] = []
        # An _EndOfRecording item stops the writer thread, and so does None after a
        # failure, which leaves the file ending at its last frame.
        self._queue: queue.SimpleQueue[_QueuedFrame | _EndOfRecording | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writer_done: asyncio.Future[WriterStats] | None = None
        self._origin_monotonic: float | None = None
        self._dropped = {TrackKind.AUDIO: 0, TrackKind.VIDEO: 0}

    def __repr__(self) -> str:
        return f"LiveRecorder(live {self.live_id})"

    async def start(self, video: MediaStreamTrack | None, audio: MediaStreamTrack | None) -> None:
        """Start recording the given tracks; at least one is required."""
        if self.state is not RecorderState.NEW:
            raise RuntimeError(f"{self!r}: start() expects state new, not {self.state.value}")
        if video is None and audio is None:
            raise ValueError(f"{self!r}: start() needs a video or an audio track")
        for kind, track in ((TrackKind.VIDEO, video), (TrackKind.AUDIO, audio)):
            if track is not None and track.kind != kind.value:
                raise ValueError(f"{self!r}: the {kind.value} track has kind {track.kind!r}")

        loop = asyncio.get_running_loop()
        self._writer_done = loop.create_future()
        self._writer_done.add_done_callback(self._on_writer_done)
        self._thread = threading.Thread(
            target=self._run_writer,
            args=(loop, video is not None, audio is not None),
            name=f"recorder-live-{self.live_id}",
            daemon=True,
        )
        self._thread.start()

        for kind, track in ((TrackKind.VIDEO, video), (TrackKind.AUDIO, audio)):
            if track is None:
                continue
            self._tracks.append(track)
            pump = asyncio.create_task(
                self._pump(kind, track), name=f"recorder-live-{self.live_id}-{kind.value}"
            )
            pump.add_done_callback(self._on_pump_done)
            self._pumps.append(pump)

        self.state = RecorderState.RECORDING
        logger.info(
            "%r: recording video=%s audio=%s to %s",
            self,
            video is not None,
            audio is not None,
            self.path,
        )

    async def stop(self, until_now: bool = True) -> None:
        """Stop the track tasks and the input tracks, then flush and close the file.

        With `until_now`, the file lasts until this call even when the last frame came
        earlier; without it, the file ends at its last frame.
        Raises RecordingError, once the file is closed, if a track or the writer failed.
        A second call does nothing.
        """
        if self.state is RecorderState.STOPPED:
            return
        if self.state is RecorderState.NEW:
            self.state = RecorderState.STOPPED
            return
        assert self._writer_done is not None and self._thread is not None
        # The file must last until now, even when the host's media stopped earlier: a
        # host away since then is a still picture and silence in the recording.
        end_offset_secs = None
        if until_now and self._origin_monotonic is not None:
            end_offset_secs = time.monotonic() - self._origin_monotonic

        # stop pulling frames
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

        # end the input tracks: a buffered relay subscription would keep queueing frames
        for track in self._tracks:
            track.stop()

        # let the writer drain its queue, flush the encoders and close the file
        self._queue.put(_EndOfRecording(end_offset_secs))
        done, _ = await asyncio.wait({self._writer_done}, timeout=WRITER_CLOSE_TIMEOUT_SECS)
        stats: WriterStats | None = None
        if not done:
            self._fail(
                RecordingError(
                    f"{self!r}: the writer did not close {self.path} "
                    f"within {WRITER_CLOSE_TIMEOUT_SECS:.0f} s"
                ),
                None,
            )
        else:
            self._thread.join()
            # A writer error was logged and stored by _on_writer_done.
            if self._writer_done.exception() is None:
                stats = self._writer_done.result()
        self.state = RecorderState.STOPPED

        if stats is not None:
            logger.info(
                "%r: stopped; %d video frames, %.1f s of audio, %.1f s of silence inserted, "
                "%.1f s of audio dropped, %d video and %d audio frames dropped in the queue",
                self,
                stats.video_frames,
                stats.audio_samples / AUDIO_SAMPLE_RATE,
                stats.silence_samples / AUDIO_SAMPLE_RATE,
                stats.dropped_audio_samples / AUDIO_SAMPLE_RATE,
                self._dropped[TrackKind.VIDEO],
                self._dropped[TrackKind.AUDIO],
            )
        if self.failure is not None:
            raise self.failure

    async def _pump(self, kind: TrackKind, track: MediaStreamTrack) -> None:
        expected: type[VideoFrame | AudioFrame | Packet[Any]] = AudioFrame
        if kind is TrackKind.VIDEO:
            expected = Packet if self.video_packets else VideoFrame
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                logger.info("%r: %s track ended", self, kind.value)
                return
            if not isinstance(frame, expected):
                raise TypeError(
                    f"{kind.value} track returned {type(frame).__name__}, "
                    f"expected {expected.__name__}"
                )
            self._enqueue(kind, frame)

    def _enqueue(self, kind: TrackKind, frame: AudioFrame | VideoFrame | Packet[Any]) -> None:
        now = time.monotonic()
        if self._origin_monotonic is None:
            self._origin_monotonic = now
            self.started_at = utc_now()
            logger.info("%r: first frame (%s) at %s", self, kind.value, self.started_at)

        limit = VIDEO_DROP_QUEUE_SIZE if kind is TrackKind.VIDEO else AUDIO_DROP_QUEUE_SIZE
        if self._queue.qsize() >= limit:
            self._dropped[kind] += 1
            if self._dropped[kind] % 100 == 1:
                logger.warning(
                    "%r: the writer is behind; %d %s frames dropped so far",
                    self,
                    self._dropped[kind],
                    kind.value,
                )
            return
        captured = self._capture_time(frame, now)
        self._queue.put(_QueuedFrame(kind, max(0.0, captured - self._origin_monotonic), frame))

    def _capture_time(self, frame: AudioFrame | VideoFrame | Packet[Any], now: float) -> float:
        """Return when `frame` reached the server, on the monotonic clock: when it reached
        the recorder, unless a subclass overrides it."""
        return now

    def _run_writer(
        self, loop: asyncio.AbstractEventLoop, has_video: bool, has_audio: bool
    ) -> None:
        """Body of the writer thread: hand the outcome of `_write_all` to the event loop."""
        assert self._writer_done is not None
        done = self._writer_done
        try:
            stats = self._write_all(has_video, has_audio)
        except BaseException as error:  # noqa: BLE001 - handed over, logged and raised by stop()
            outcome: BaseException | None = error
            stats = None
        else:
            outcome = None

        def settle() -> None:
            if done.done():
                return
            if outcome is not None:
                done.set_exception(outcome)
            else:
                assert stats is not None
                done.set_result(stats)

        try:
            loop.call_soon_threadsafe(settle)
        except RuntimeError:
            logger.error("%r: the event loop closed before the writer finished", self)

    def _write_all(self, has_video: bool, has_audio: bool) -> WriterStats:
        writer = TransportStreamWriter(
            self.path, has_video=has_video, has_audio=has_audio, video_packets=self.video_packets
        )
        started_at_written = False
        end_offset_secs: float | None = None
        try:
            while (item := self._queue.get()) is not None:
                if isinstance(item, _EndOfRecording):
                    end_offset_secs = item.offset_secs
                    break
                if not started_at_written and self.started_at is not None:
                    write_started_at(self.path, self.started_at)
                    started_at_written = True
                if isinstance(item.frame, Packet):
                    writer.write_video_packet(item.offset_secs, item.frame)
                elif item.kind is TrackKind.VIDEO:
                    assert isinstance(item.frame, VideoFrame)
                    writer.write_video(item.offset_secs, item.frame)
                else:
                    assert isinstance(item.frame, AudioFrame)
                    writer.write_audio(item.offset_secs, item.frame)
        except BaseException:
            writer.abort()
            raise
        writer.close(end_offset_secs)
        return writer.stats

    def _on_pump_done(self, pump: asyncio.Task[None]) -> None:
        if pump.cancelled():
            return
        error = pump.exception()
        if error is None:
            return
        self._fail(
            RecordingError(f"{self!r}: task {pump.get_name()} failed: {error!r}"),
            error,
        )

    def _on_writer_done(self, done: asyncio.Future[WriterStats]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            return
        self._fail(RecordingError(f"{self!r}: the writer of {self.path} failed: {error!r}"), error)

    def _fail(self, failure: RecordingError, cause: BaseException | None) -> None:
        """Log `failure`, keep the first one for stop(), and stop recording everything."""
        logger.error("%s", failure, exc_info=cause)
        if self.failure is None:
            failure.__cause__ = cause
            self.failure = failure
            self.failed.set()
        for pump in self._pumps:
            pump.cancel()
        for track in self._tracks:
            track.stop()
        self._queue.put(None)


class PacketRecorder(LiveRecorder):
    """Records a live whose video is already encoded: the video track yields the H.264
    packets of the live's high layer, from a keyframe on, and they go into the file as
    they are. Only the audio is encoded here.

    The audio stays AAC rather than a copy of the viewers' Opus: HLS carries AAC in
    MPEG-TS segments but not Opus, and AAC in MP4 plays in every browser. It costs one
    AAC encoder per live, next to nothing beside the video encoders.
    """

    video_packets = True

    def __repr__(self) -> str:
        return f"PacketRecorder(live {self.live_id})"

    def _capture_time(self, frame: AudioFrame | VideoFrame | Packet[Any], now: float) -> float:
        # The live's encoder stores in the packet's `opaque` an object whose `arrived`
        # is when the source frame reached the server (signaling.aiortc_hooks), so that
        # the time spent encoding does not shift the picture against the sound.
        if isinstance(frame, Packet):
            arrived = getattr(frame.opaque, "arrived", None)
            if isinstance(arrived, float):
                return arrived
        return now
