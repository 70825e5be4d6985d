"""The shared encoders and the tracks that hand their packets to each consumer, with
real PyAV encoders and no network."""

from __future__ import annotations

import asyncio
import gc
import itertools
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame
from av.packet import Packet

from signaling.aiortc_hooks import PacketizedFrame, packetize_video
from signaling.encoding import (
    OPUS_FRAME_SAMPLES,
    LayerEncoder,
    OpusEncoder,
    Quality,
    VideoLayer,
    plan_layers,
)
from signaling.feeds import VIDEO_QUEUE_MAX_PACKETS, EncodedVideoTrack, PacketFeed
from signaling.keyframes import KeyframePolicy

VIDEO_TIME_BASE = Fraction(1, 90_000)
FRAME_STEP = 3_000
WAIT_TIMEOUT_SECS = 5.0
# H.264 NAL unit types (ITU-T H.264 table 7-1)
NAL_SPS = 7
NAL_PPS = 8
NAL_IDR = 5


def picture(number: int, width: int = 640, height: int = 360) -> VideoFrame:
    planes = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    planes[:height] = 16
    left = (number * 8) % (width - 16)
    planes[:height, left : left + 16] = 235
    frame = VideoFrame.from_ndarray(planes, format="yuv420p")
    frame.pts = number * FRAME_STEP
    frame.time_base = VIDEO_TIME_BASE
    return frame


def nal_units(packet: Packet[Any]) -> list[bytes]:
    data = bytes(packet)
    units = []
    for chunk in data.split(b"\x00\x00\x01")[1:]:
        units.append(chunk.rstrip(b"\x00"))
    return units


@pytest.mark.parametrize(
    ("source", "high", "low"),
    [
        ((1280, 720), (1280, 720), (640, 360)),
        ((1920, 1080), (1280, 720), (640, 360)),
        ((640, 360), (640, 360), (320, 180)),
        ((640, 480), (640, 480), (320, 240)),
        ((320, 180), (320, 180), (160, 90)),
        ((160, 90), (160, 90), (160, 90)),
    ],
)
def test_plan_layers_sizes(
    source: tuple[int, int], high: tuple[int, int], low: tuple[int, int]
) -> None:
    layers = plan_layers(*source)
    assert (layers[Quality.HIGH].width, layers[Quality.HIGH].height) == high
    assert (layers[Quality.LOW].width, layers[Quality.LOW].height) == low
    assert layers[Quality.HIGH].bit_rate >= layers[Quality.LOW].bit_rate


def test_layer_encoder_keyframes_carry_parameter_sets() -> None:
    """Guards against a viewer who joins at a keyframe and cannot decode it: every
    keyframe must bring its own SPS and PPS, in the constrained baseline profile that
    viewers negotiate (profile-level-id 42e01f)."""
    encoder = LayerEncoder(VideoLayer(Quality.HIGH, 640, 360, 500_000))
    packets = []
    for number in range(10):
        packets.extend(encoder.encode(picture(number), keyframe=number in {0, 6}))
    assert [packet.is_keyframe for packet in packets] == [n in {0, 6} for n in range(10)]
    for packet in packets:
        types = [unit[0] & 0x1F for unit in nal_units(packet)]
        if packet.is_keyframe:
            assert types[:3] == [NAL_SPS, NAL_PPS, NAL_IDR] or (
                NAL_SPS in types and NAL_PPS in types and NAL_IDR in types
            )
            sps = next(unit for unit in nal_units(packet) if unit[0] & 0x1F == NAL_SPS)
            profile_idc, constraints, level_idc = sps[1], sps[2], sps[3]
            assert profile_idc == 0x42
            # constraint_set1_flag makes baseline "constrained baseline"
            assert constraints & 0x40
            assert level_idc <= 31
        else:
            assert NAL_IDR not in types
    assert [packet.pts for packet in packets] == [n * FRAME_STEP for n in range(10)]
    assert all(packet.time_base == VIDEO_TIME_BASE for packet in packets)


def test_layer_encoder_scales_and_leaves_source_untouched() -> None:
    encoder = LayerEncoder(VideoLayer(Quality.LOW, 320, 180, 150_000))
    same_size = LayerEncoder(VideoLayer(Quality.HIGH, 640, 360, 500_000))
    source = picture(3)
    packets = encoder.encode(source, keyframe=True)
    same_size.encode(source, keyframe=True)
    assert source.pict_type != av.video.frame.PictureType.I
    assert source.pts == 3 * FRAME_STEP
    decoder = av.CodecContext.create("h264", "r")
    decoded = [frame for packet in packets for frame in decoder.decode(packet)]
    assert [(frame.width, frame.height) for frame in decoded] == [(320, 180)]


def test_opus_encoder_timeline_follows_input_gaps() -> None:
    """Guards against audio timestamps that run on through a host's reconnection while
    the video's jump, which leaves sound and picture out of step."""
    encoder = OpusEncoder()
    pts_seen: list[int | None] = []
    for index in range(20):
        start = index * 960 + (48_000 if index >= 10 else 0)
        frame = AudioFrame.from_ndarray(
            np.zeros((1, 960 * 2), dtype=np.int16), format="s16", layout="stereo"
        )
        frame.sample_rate = 48_000
        frame.pts = start
        frame.time_base = Fraction(1, 48_000)
        pts_seen.extend(packet.pts for packet in encoder.encode(frame))
    assert None not in pts_seen
    steps = [int(later or 0) - int(earlier or 0) for earlier, later in itertools.pairwise(pts_seen)]
    assert steps.count(OPUS_FRAME_SAMPLES) == len(steps) - 1
    assert max(steps) >= 48_000


def keyed(number: int, keyframe: bool, pts: int | None = None) -> Packet[Any]:
    packet = Packet(bytes([number % 256]) * 16)
    packet.pts = number * FRAME_STEP if pts is None else pts
    packet.dts = packet.pts
    packet.time_base = VIDEO_TIME_BASE
    packet.is_keyframe = keyframe
    return packet


def two_feeds() -> dict[Quality, PacketFeed]:
    return {quality: PacketFeed(quality.value, quality, KeyframePolicy()) for quality in Quality}


async def drain(track: EncodedVideoTrack) -> list[Packet[Any]]:
    received = []
    while track._queue:
        packet = await asyncio.wait_for(track.recv(), WAIT_TIMEOUT_SECS)
        assert isinstance(packet, Packet)
        received.append(packet)
    return received


async def test_encoded_video_track_starts_at_keyframe() -> None:
    feeds = two_feeds()
    track = EncodedVideoTrack(feeds, Quality.HIGH, "test")
    # nothing is subscribed before the sender reads
    assert feeds[Quality.HIGH].consumer_count == 0
    first = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    assert feeds[Quality.HIGH].consumer_count == 1
    policy = feeds[Quality.HIGH].policy
    assert policy is not None
    assert policy.is_pending

    feeds[Quality.HIGH].publish(keyed(1, False))
    feeds[Quality.HIGH].publish(keyed(2, True))
    feeds[Quality.HIGH].publish(keyed(3, False))
    assert (await asyncio.wait_for(first, WAIT_TIMEOUT_SECS)).pts == 2 * FRAME_STEP
    assert [packet.pts for packet in await drain(track)] == [3 * FRAME_STEP]
    assert track.quality is Quality.HIGH
    track.stop()
    assert feeds[Quality.HIGH].consumer_count == 0


async def test_encoded_video_track_switches_at_new_layer_keyframe() -> None:
    """Guards against a viewer moved to another layer who receives its predicted frames
    before a keyframe, or both layers' frames at once."""
    feeds = two_feeds()
    high, low = feeds[Quality.HIGH], feeds[Quality.LOW]
    track = EncodedVideoTrack(feeds, Quality.HIGH, "test")
    track._started()
    high.publish(keyed(1, True))
    track.switch(Quality.LOW)
    assert low.consumer_count == 1

    # the high layer goes on until the low layer's keyframe
    high.publish(keyed(2, False))
    low.publish(keyed(2, False))
    high.publish(keyed(3, False))
    low.publish(keyed(3, True))
    high.publish(keyed(4, False))
    low.publish(keyed(4, False))
    sent = await drain(track)
    # frame 3 went out from the high layer before the low layer's keyframe of the same
    # frame, which goes out one 90 kHz tick later so that each has its own timestamp
    assert [(packet.pts, bytes(packet)[0]) for packet in sent] == [
        (1 * FRAME_STEP, 1),
        (2 * FRAME_STEP, 2),
        (3 * FRAME_STEP, 3),
        (3 * FRAME_STEP + 1, 3),
        (4 * FRAME_STEP, 4),
    ]
    assert [packet.is_keyframe for packet in sent] == [True, False, False, True, False]
    assert track.quality is Quality.LOW
    assert high.consumer_count == 0


async def test_encoded_video_track_skips_keyframe_behind_sent_frames() -> None:
    """Guards against RTP timestamps going backwards when the layer a viewer moves to
    lags behind the one it leaves."""
    feeds = two_feeds()
    high, low = feeds[Quality.HIGH], feeds[Quality.LOW]
    track = EncodedVideoTrack(feeds, Quality.LOW, "test")
    track._started()
    for number in (1, 2, 3):
        low.publish(keyed(number, number == 1))
    track.switch(Quality.HIGH)
    high.publish(keyed(2, True))
    assert track.quality is Quality.LOW
    low.publish(keyed(4, False))
    high.publish(keyed(5, True))
    sent = await drain(track)
    assert [packet.pts for packet in sent] == [n * FRAME_STEP for n in (1, 2, 3, 4, 5)]
    quality_after: Quality | None = track.quality
    assert quality_after is Quality.HIGH


async def test_encoded_video_track_resyncs_when_sender_stalls() -> None:
    feeds = two_feeds()
    high = feeds[Quality.HIGH]
    track = EncodedVideoTrack(feeds, Quality.HIGH, "test")
    track._started()
    high.publish(keyed(0, True))
    for number in range(1, VIDEO_QUEUE_MAX_PACKETS + 5):
        high.publish(keyed(number, False))
    assert track.resyncs == 1
    assert len(track._queue) == 0
    high.publish(keyed(100, True))
    high.publish(keyed(101, False))
    assert [packet.pts for packet in await drain(track)] == [100 * FRAME_STEP, 101 * FRAME_STEP]


async def test_encoded_video_track_stop_ends_waiting_recv() -> None:
    track = EncodedVideoTrack(two_feeds(), Quality.HIGH, "test")
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)
    track.stop()
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(waiting, WAIT_TIMEOUT_SECS)


async def test_restamped_keyframe_keeps_payloads_after_original_freed() -> None:
    """Guards against the copy of a switching keyframe losing its RTP payloads when the
    original packet is freed: PyAV keys a packet's opaque value by id()."""
    feeds = two_feeds()
    high, low = feeds[Quality.HIGH], feeds[Quality.LOW]
    track = EncodedVideoTrack(feeds, Quality.HIGH, "test")
    track._started()
    high.publish(keyed(1, True))
    track.switch(Quality.LOW)
    high.publish(keyed(2, False))
    original = keyed(2, True)
    packetize_video(original, arrived=1.0)
    low.publish(original)
    del original
    gc.collect()
    sent = await drain(track)
    assert sent[-1].pts == 2 * FRAME_STEP + 1
    assert isinstance(sent[-1].opaque, PacketizedFrame)
