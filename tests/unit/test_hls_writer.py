"""LiveHls with real PyAV encoders and no network: packets published on a broadcast's
feeds become segments that decode to every frame, and a writer that fails stops the
stream without touching the feeds' other consumers. The packets carry made-up arrival
times, so the stream covers seconds of live without the test waiting for them."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from av import AudioFrame, VideoFrame

from signaling.aiortc_hooks import packetize_audio, packetize_video
from signaling.broadcast import LiveBroadcast
from signaling.encoding import LayerEncoder, OpusEncoder, Quality, plan_layers
from signaling.hls import HlsState, LiveHls
from signaling.hls_muxer import MASTER_PLAYLIST

VIDEO_TIME_BASE = Fraction(1, 90_000)
FRAME_RATE = 30
FRAME_TICKS = 90_000 // FRAME_RATE
# 20 ms of 48 kHz audio a frame, as WebRTC delivers it.
AUDIO_FRAME_SAMPLES = 960
# Keyframes come every 57 frames, 1.9 s at 30 frames per second, as the shared
# encoder's policy forces them.
KEYFRAME_INTERVAL_FRAMES = 57
STREAM_SECS = 5
WAIT_TIMEOUT_SECS = 10.0


def picture(number: int) -> VideoFrame:
    frame = VideoFrame.from_ndarray(
        np.full((360 * 3 // 2, 640), number % 200 + 16, dtype=np.uint8), format="yuv420p"
    )
    frame.pts = number * FRAME_TICKS
    frame.time_base = VIDEO_TIME_BASE
    return frame


def sound(number: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(
        np.zeros((1, AUDIO_FRAME_SAMPLES), dtype=np.int16), format="s16", layout="mono"
    )
    frame.sample_rate = 48_000
    frame.pts = number * AUDIO_FRAME_SAMPLES
    frame.time_base = Fraction(1, 48_000)
    return frame


class SyntheticLive:
    """Encodes pictures and sound as the shared encoders do and publishes them on a
    broadcast's feeds, with arrival times on a clock that starts at `origin`."""

    def __init__(self, broadcast: LiveBroadcast, origin: float) -> None:
        self.broadcast = broadcast
        self.origin = origin
        self.encoders = {
            quality: LayerEncoder(layer) for quality, layer in plan_layers(640, 360).items()
        }
        self.opus = OpusEncoder()
        broadcast.layers = plan_layers(640, 360)
        self.frames_published = 0

    def publish_second(self, second: int) -> None:
        for index in range(FRAME_RATE):
            number = second * FRAME_RATE + index
            arrived = self.origin + number / FRAME_RATE
            keyframe = number % KEYFRAME_INTERVAL_FRAMES == 0
            for quality, encoder in self.encoders.items():
                for packet in encoder.encode(picture(number), keyframe):
                    packetize_video(packet, arrived)
                    self.broadcast.video_feeds[quality].publish(packet)
            self.frames_published += 1
        for index in range(50):
            number = second * 50 + index
            for packet in self.opus.encode(sound(number)):
                packetize_audio(packet, self.origin + number * 0.02)
                self.broadcast.audio_feed.publish(packet)


@pytest.fixture
async def broadcast() -> AsyncIterator[LiveBroadcast]:
    live_broadcast = LiveBroadcast(1, VideoStreamTrack(), AudioStreamTrack())
    yield live_broadcast
    await live_broadcast.close()


def count_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


async def test_writer_segments_decode_every_frame(broadcast: LiveBroadcast, tmp_path: Path) -> None:
    hls = LiveHls(1, broadcast, tmp_path / "1")
    await hls.start()
    live = SyntheticLive(broadcast, time.monotonic())
    for second in range(STREAM_SECS):
        live.publish_second(second)
    await hls.close()

    assert hls.state is HlsState.CLOSED
    assert (hls.directory / MASTER_PLAYLIST).is_file()
    for quality in Quality:
        playlist = (hls.directory / f"{quality.value}.m3u8").read_text()
        assert playlist.rstrip().endswith("#EXT-X-ENDLIST")
        names = re.findall(rf"^{quality.value}-\d+\.m4s$", playlist, re.MULTILINE)
        # 5 s cut at keyframes every 1.9 s: three segments
        assert len(names) == 3
        joined = tmp_path / f"{quality.value}.mp4"
        with joined.open("wb") as output:
            for name in [f"{quality.value}-init.mp4", *names]:
                output.write((hls.directory / name).read_bytes())
        assert count_frames(joined) == live.frames_published
    for feed in hls.feeds:
        assert feed.consumer_count == 0


async def test_writer_failure_stops_stream(broadcast: LiveBroadcast, tmp_path: Path) -> None:
    hls = LiveHls(1, broadcast, tmp_path / "1")
    await hls.start()
    # a file in place of the live's folder: the muxer cannot create its playlist
    shutil.rmtree(hls.directory)
    hls.directory.write_text("")
    live = SyntheticLive(broadcast, time.monotonic())
    live.publish_second(0)

    deadline = time.monotonic() + WAIT_TIMEOUT_SECS
    while not hls.writer_failed:
        assert time.monotonic() < deadline, "the writer thread did not fail"
        await asyncio.sleep(0.01)
    live.publish_second(1)

    assert state_of(hls) is HlsState.FAILED
    for feed in hls.feeds:
        assert feed.consumer_count == 0
    await hls.close()
    assert state_of(hls) is HlsState.CLOSED


def state_of(hls: LiveHls) -> HlsState:
    return hls.state
