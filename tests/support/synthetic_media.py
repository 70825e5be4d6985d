"""Real aiortc tracks that produce known media: a moving picture, a tone, a failing track.

They pace themselves in real time like a camera and a microphone, count what they hand
out, and set an event once a target count is reached, so tests wait on frame counts
rather than on the clock.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time

import numpy as np
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame

TONE_SAMPLE_RATE = 48_000
# WebRTC's usual audio packet: 20 ms.
TONE_FRAME_SAMPLES = 960
TONE_FREQUENCY_HZ = 440.0
PICTURE_FRAME_RATE = 30


class MovingPictureTrack(VideoStreamTrack):
    """A 30 fps yuv420p picture with a white bar that moves 8 pixels per frame.

    `frames_sent` counts frames handed out; `target_reached` is set when it reaches
    `frame_target`. With `keep_frames`, every frame is kept with the pts and time base
    it was handed out with, so a test can check that no consumer modified it.
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        frame_target: int | None = None,
        keep_frames: bool = False,
    ) -> None:
        super().__init__()
        self.width = width
        self.height = height
        self.frame_target = frame_target
        self.frames_sent = 0
        self.target_reached = asyncio.Event()
        self.keep_frames = keep_frames
        self.kept: list[tuple[VideoFrame, int, fractions.Fraction]] = []

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        picture = np.full((self.height * 3 // 2, self.width), 128, dtype=np.uint8)
        picture[: self.height, :] = 16
        left = (self.frames_sent * 8) % (self.width - 16)
        picture[: self.height, left : left + 16] = 235
        frame = VideoFrame.from_ndarray(picture, format="yuv420p")
        frame.pts = pts
        frame.time_base = time_base

        self.frames_sent += 1
        if self.keep_frames:
            self.kept.append((frame, pts, time_base))
        if self.frame_target is not None and self.frames_sent >= self.frame_target:
            self.target_reached.set()
        return frame


class ToneTrack(AudioStreamTrack):
    """A 440 Hz sine in 20 ms frames of 48 kHz stereo s16, the format aiortc decodes
    a browser's Opus into. `target_reached` is set after `frame_target` frames."""

    def __init__(self, frame_target: int | None = None) -> None:
        super().__init__()
        self.frames_sent = 0
        self.frame_target = frame_target
        self.target_reached = asyncio.Event()
        self._first_sent_at: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._first_sent_at is None:
            self._first_sent_at = time.monotonic()
        else:
            due = self._first_sent_at + self.frames_sent * TONE_FRAME_SAMPLES / TONE_SAMPLE_RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))

        first_sample = self.frames_sent * TONE_FRAME_SAMPLES
        phases = (2 * math.pi * TONE_FREQUENCY_HZ / TONE_SAMPLE_RATE) * np.arange(
            first_sample, first_sample + TONE_FRAME_SAMPLES
        )
        mono = (np.sin(phases) * 8000).astype(np.int16)
        interleaved = np.repeat(mono, 2).reshape(1, -1)
        frame = AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
        frame.sample_rate = TONE_SAMPLE_RATE
        frame.pts = first_sample
        frame.time_base = fractions.Fraction(1, TONE_SAMPLE_RATE)
        self.frames_sent += 1
        if self.frame_target is not None and self.frames_sent >= self.frame_target:
            self.target_reached.set()
        return frame


class FailingVideoTrack(MovingPictureTrack):
    """A moving picture that raises RuntimeError instead of its frame number `fail_at`."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at = fail_at

    async def recv(self) -> VideoFrame:
        if self.frames_sent >= self.fail_at:
            raise RuntimeError(f"synthetic camera failure at frame {self.frames_sent}")
        return await super().recv()
