"""The tracks between the host's peer, the relay and each consumer (viewer peer, recorder).

`PublishedTrack` is the relay's source: it reads the current host peer's track and keeps
one timeline across host reconnections. `RelaySubscription` is what each consumer reads:
a MediaRelay proxy that hands out a private copy of every frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame
from av.packet import Packet

logger = logging.getLogger(__name__)


class PublishedTrack(MediaStreamTrack):
    """The live's audio or video track, fed by whichever host peer publishes now.

    The host's track ends when its peer goes away, but this one does not. So the relay,
    the viewers' senders and the recorder keep running while the host reconnects, and
    receive no frame meanwhile. `recv` raises MediaStreamError only after `stop`.

    Timestamps continue across sources. The first frame of the first source gets pts 0,
    and the first frame of a later source gets the wall-clock time elapsed since then,
    so that a gap in the host's media is a gap in the timeline, not a jump backwards
    (the encoders of the viewer peers and the recorder derive their timestamps from pts).
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._source: MediaStreamTrack | None = None
        self._source_changed = asyncio.Event()
        # pts correction of the current source, set by its first frame
        self._pts_offset: int | None = None
        self._last_pts: int | None = None
        # monotonic clock reading when frame pts 0 was received
        self._origin_monotonic: float | None = None
        self.frames_received = 0

    @property
    def has_source(self) -> bool:
        return self._source is not None

    def attach(self, source: MediaStreamTrack) -> None:
        """Read from `source` from now on, in place of any previous source."""
        if source.kind != self.kind:
            raise ValueError(f"cannot attach a {source.kind} track to the {self.kind} track")
        self._source = source
        self._pts_offset = None
        self._source_changed.set()

    def detach(self, source: MediaStreamTrack) -> None:
        """Stop reading from `source` if it is still the current source."""
        if self._source is source:
            self._source = None

    async def recv(self) -> Frame | Packet[Any]:
        while True:
            if self.readyState != "live":
                raise MediaStreamError

            source = self._source
            if source is None:
                self._source_changed.clear()
                await self._source_changed.wait()
                continue

            try:
                frame = await source.recv()
            except MediaStreamError:
                # the host's peer closed: wait for the next one
                self.detach(source)
                continue
            if source is not self._source:
                # replaced while this frame was on its way: it belongs to the old timeline
                continue

            self._restamp(frame)
            self.frames_received += 1
            return frame

    def stop(self) -> None:
        super().stop()
        self._source = None
        # wakes a `recv` waiting for a source, which then raises MediaStreamError
        self._source_changed.set()

    def _restamp(self, frame: Frame | Packet[Any]) -> None:
        if frame.pts is None or frame.time_base is None:
            return
        now = time.monotonic()
        if self._pts_offset is None:
            target = 0
            if self._origin_monotonic is None:
                self._origin_monotonic = now
            else:
                target = int((now - self._origin_monotonic) / frame.time_base)
                if self._last_pts is not None:
                    target = max(target, self._last_pts + 1)
            self._pts_offset = target - frame.pts
        frame.pts += self._pts_offset
        self._last_pts = frame.pts


class RelaySubscription(MediaStreamTrack):
    """One consumer's view of a relayed track, handing out its own copy of each frame.

    aiortc's MediaRelay gives the same frame object to every consumer, and PyAV's
    `CodecContext.encode` rewrites the frame's `pts` and `time_base` in place (checked
    with aiortc 1.16 and PyAV 18), while aiortc also sets `pict_type` on it to force a
    keyframe. A copy per consumer keeps one encoder from changing what another encodes.
    Copying a 640x360 picture is a memory copy of 345 KB, small next to encoding it.
    """

    def __init__(self, proxy: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = proxy.kind
        self._proxy = proxy

    async def recv(self) -> Frame | Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._proxy.recv()
        if isinstance(frame, VideoFrame):
            return copy_video_frame(frame)
        if isinstance(frame, AudioFrame):
            return copy_audio_frame(frame)
        return frame

    def stop(self) -> None:
        super().stop()
        self._proxy.stop()


def copy_video_frame(frame: VideoFrame) -> VideoFrame:
    """Return a new frame with the same picture, timestamps and colour description."""
    copy = VideoFrame(frame.width, frame.height, frame.format.name)
    for source_plane, target_plane in zip(frame.planes, copy.planes, strict=True):
        _copy_plane(
            memoryview(source_plane),
            memoryview(target_plane),
            source_plane.line_size,
            target_plane.line_size,
            source_plane.height,
        )
    copy.pts = frame.pts
    if frame.time_base is not None:
        copy.time_base = frame.time_base
    copy.colorspace = frame.colorspace
    copy.color_range = frame.color_range
    return copy


def _copy_plane(
    source: memoryview, target: memoryview, source_stride: int, target_stride: int, rows: int
) -> None:
    if source_stride == target_stride:
        length = min(source.nbytes, target.nbytes)
        target[:length] = source[:length]
        return
    # decoders may pad rows differently from a frame PyAV allocates
    row_bytes = min(source_stride, target_stride)
    for row in range(rows):
        target[row * target_stride : row * target_stride + row_bytes] = source[
            row * source_stride : row * source_stride + row_bytes
        ]


def copy_audio_frame(frame: AudioFrame) -> AudioFrame:
    """Return a new frame with the same samples and timestamps."""
    copy = AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=frame.samples)
    for source_plane, target_plane in zip(frame.planes, copy.planes, strict=True):
        source = memoryview(source_plane)
        target = memoryview(target_plane)
        length = min(source.nbytes, target.nbytes)
        target[:length] = source[:length]
    copy.sample_rate = frame.sample_rate
    copy.pts = frame.pts
    copy.time_base = frame.time_base
    return copy
