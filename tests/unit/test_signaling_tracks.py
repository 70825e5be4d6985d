"""The tracks between the host's peer, the relay and the consumers, with real PyAV
frames and encoders and no network."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from av.frame import Frame

from signaling.tracks import (
    PublishedTrack,
    RelaySubscription,
    copy_audio_frame,
    copy_video_frame,
)

VIDEO_TIME_BASE = Fraction(1, 90_000)
# pts step of a 20 fps picture in 1/90000 s
FRAME_STEP = 4_500
WAIT_TIMEOUT_SECS = 5.0


def picture(number: int, width: int = 64, height: int = 48) -> VideoFrame:
    rng = np.random.default_rng(number)
    planes = rng.integers(0, 256, (height * 3 // 2, width), dtype=np.uint8)
    frame = VideoFrame.from_ndarray(planes, format="yuv420p")
    frame.pts = number * FRAME_STEP
    frame.time_base = VIDEO_TIME_BASE
    return frame


class QueueTrack(MediaStreamTrack):
    """A video track that hands out the frames put in its queue; None ends it."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[Frame | None] = asyncio.Queue()

    async def recv(self) -> Frame:
        frame = await self.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


async def test_relay_subscription_copies_each_frame() -> None:
    """Guards against one consumer's encoder rewriting the timestamps of the frame
    that another consumer encodes (PyAV rebases pts in place)."""
    source = QueueTrack()
    relay = MediaRelay()
    first = RelaySubscription(relay.subscribe(source, buffered=True))
    second = RelaySubscription(relay.subscribe(source, buffered=True))
    receiving = [asyncio.ensure_future(track.recv()) for track in (first, second)]
    await asyncio.sleep(0)
    await source.queue.put(picture(7))
    frame_one, frame_two = await asyncio.wait_for(asyncio.gather(*receiving), WAIT_TIMEOUT_SECS)

    assert isinstance(frame_one, VideoFrame)
    assert isinstance(frame_two, VideoFrame)
    assert frame_one is not frame_two
    assert np.array_equal(frame_one.to_ndarray(), frame_two.to_ndarray())

    # an encoder with a coarse time base, as a recorder may use, rewrites its own copy
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 64, 48, "yuv420p"
    encoder.time_base = Fraction(1, 20)
    encoder.encode(frame_one)
    assert frame_one.time_base == Fraction(1, 20)
    assert frame_two.pts == 7 * FRAME_STEP
    assert frame_two.time_base == VIDEO_TIME_BASE

    first.stop()
    second.stop()
    await source.queue.put(None)


def test_copy_video_frame_keeps_picture_and_timing() -> None:
    """Guards against a copy that loses rows when widths are not a multiple of the
    line alignment, or drops the timestamps."""
    original = picture(3, width=630, height=360)
    copy = copy_video_frame(original)
    assert copy.pts == original.pts
    assert copy.time_base == original.time_base
    assert (copy.width, copy.height, copy.format.name) == (630, 360, "yuv420p")
    assert np.array_equal(copy.to_ndarray(), original.to_ndarray())


def test_copy_audio_frame_keeps_samples_and_timing() -> None:
    samples = np.arange(960 * 2, dtype=np.int16).reshape(1, -1)
    original = AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
    original.sample_rate = 48_000
    original.pts = 960 * 5
    original.time_base = Fraction(1, 48_000)
    copy = copy_audio_frame(original)
    assert copy is not original
    assert (copy.pts, copy.time_base, copy.sample_rate) == (960 * 5, Fraction(1, 48_000), 48_000)
    assert np.array_equal(copy.to_ndarray(), original.to_ndarray())


async def test_published_track_timeline_continues_across_sources() -> None:
    """Guards against a host reconnection that makes pts restart at 0, which viewers'
    encoders and the recorder would take for a jump backwards."""
    published = PublishedTrack("video")
    first_source = QueueTrack()
    published.attach(first_source)
    for number in range(3):
        await first_source.queue.put(picture(100 + number))
    received = [await asyncio.wait_for(published.recv(), WAIT_TIMEOUT_SECS) for _ in range(3)]
    assert [frame.pts for frame in received] == [0, FRAME_STEP, 2 * FRAME_STEP]

    # the host's peer closes: the published track waits instead of ending
    await first_source.queue.put(None)
    waiting = asyncio.ensure_future(published.recv())
    await asyncio.sleep(0)
    assert not waiting.done()

    second_source = QueueTrack()
    published.attach(second_source)
    await second_source.queue.put(picture(0))
    await second_source.queue.put(picture(1))
    after = await asyncio.wait_for(waiting, WAIT_TIMEOUT_SECS)
    following = await asyncio.wait_for(published.recv(), WAIT_TIMEOUT_SECS)
    assert after.pts is not None
    assert after.pts > 2 * FRAME_STEP
    assert following.pts == after.pts + FRAME_STEP


async def test_published_track_stop_ends_waiting_recv() -> None:
    published = PublishedTrack("audio")
    waiting = asyncio.ensure_future(published.recv())
    await asyncio.sleep(0)
    published.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, WAIT_TIMEOUT_SECS)


def test_published_track_rejects_other_kind() -> None:
    with pytest.raises(ValueError, match="video track to the audio track"):
        PublishedTrack("audio").attach(QueueTrack())


def test_vp8_encoder_first_frame_is_keyframe() -> None:
    """Guards against a late viewer who waits for a keyframe: each viewer peer has its
    own aiortc Vp8Encoder, whose first encoded frame must be a keyframe."""
    encoder = Vp8Encoder()
    payloads, _ = encoder.encode(picture(0, width=640, height=360))
    first_partition = vp8_depayload(payloads[0])
    # RFC 6386 section 9.1: bit 0 of the frame tag is 0 for a key frame, which also
    # carries the start code 9d 01 2a
    assert first_partition[0] & 1 == 0
    assert first_partition[3:6] == b"\x9d\x01\x2a"

    payloads, _ = encoder.encode(picture(1, width=640, height=360))
    assert vp8_depayload(payloads[0])[0] & 1 == 1
