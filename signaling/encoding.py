"""The encoders a live shares between all its viewers and its recording: H.264 for each
video layer and Opus for the audio.

H.264 constrained baseline is what every current browser decodes over WebRTC and what
MP4 and HLS carry, so one encode per layer serves the viewers, the recording and a
later HLS output alike. The x264 settings favour speed. Encoding a scrolling noise
picture at 640x360 on a 2-core machine (PyAV 18.1) took 10.7 ms of CPU a frame with
aiortc 1.16's H264Encoder, and 0.8 ms with these settings.
"""

from __future__ import annotations

import enum
import fractions
import logging
from dataclasses import dataclass
from typing import Any

import av
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.codec.context import CodecContext
from av.packet import Packet
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame

from signaling.tracks import copy_video_frame

logger = logging.getLogger(__name__)

# RTP's video clock: encoded frames keep the pts of the frames they come from.
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
# The high layer's height is at most this: above 720 lines a lecture gains little, and
# a 1080p frame has 2.25 times the pixels to encode.
HIGH_MAX_HEIGHT = 720
# The low layer has half the high layer's height, but at least this many lines.
LOW_MIN_HEIGHT = 90
# Target bit rate per pixel of the layer, in bit/s: 2.2 gives 506 kbit/s at 640x360
# and caps 720p at MAX_BIT_RATE. A choice, not a measurement of picture quality.
BIT_RATE_PER_PIXEL = 2.2
MIN_BIT_RATE = 150_000
MAX_BIT_RATE = 2_000_000
# x264 only uses the frame rate for its bit budget; timestamps come from the source.
NOMINAL_FRAME_RATE = 30
# x264's own keyframe limit, far above the interval the keyframe policy forces, so
# that every keyframe is one the policy chose.
X264_MAX_KEYFRAME_INTERVAL_FRAMES = 600
X264_OPTIONS = {
    "preset": "ultrafast",
    # no lookahead and no frame reordering: each frame comes out as soon as it goes in
    "tune": "zerolatency",
    # constrained baseline, level 3.1: the profile-level-id 42e01f that viewers negotiate
    "profile": "baseline",
    "level": "31",
    # a keyframe forced through pict_type becomes an IDR frame, where decoding can start
    "forced-idr": "1",
}
# The rate control may exceed the target bit rate for this long, in seconds of it, so
# that a keyframe does not come out blurred.
VBV_BUFFER_SECS = 1.0

# Opus as browsers send it over WebRTC: 48 kHz. One voice needs one channel. The RTP
# format is still opus/48000/2, whose decoders also take mono streams.
OPUS_SAMPLE_RATE = 48_000
OPUS_TIME_BASE = fractions.Fraction(1, OPUS_SAMPLE_RATE)
OPUS_LAYOUT = "mono"
OPUS_BIT_RATE = 64_000
# 60 ms per packet, three times WebRTC's usual 20 ms: every viewer's sender handles a
# third of the packets, and sending a packet is most of what a viewer costs the server.
# The 40 ms it adds to the delay are small next to a live's one-way delay. An RTP
# payload is one Opus packet of up to 120 ms, decoded without any negotiation (RFC 7587),
# and the tests check that aiortc and Chromium decode these.
OPUS_FRAME_MILLISECONDS = 60
OPUS_FRAME_SAMPLES = OPUS_SAMPLE_RATE * OPUS_FRAME_MILLISECONDS // 1000
# An input frame more than this far from where the previous one ended starts a new
# stretch of the timeline (100 ms).
OPUS_RESYNC_SAMPLES = 4_800


class Quality(enum.StrEnum):
    HIGH = "high"
    LOW = "low"


@dataclass(frozen=True)
class VideoLayer:
    """One quality a live is encoded in."""

    quality: Quality
    width: int
    height: int
    bit_rate: int

    def __str__(self) -> str:
        return f"{self.quality.value} {self.width}x{self.height} {self.bit_rate // 1000} kbit/s"


def plan_layers(source_width: int, source_height: int) -> dict[Quality, VideoLayer]:
    """Choose the two layers for a host who sends `source_width` x `source_height`.

    The high layer keeps the host's picture up to 720 lines, and the low layer has half
    its height: 1280x720 gives 720p and 360p, 640x360 gives 360p and 180p. Both keep
    the source's aspect ratio, with even sizes as yuv420p requires.
    """
    if source_width <= 0 or source_height <= 0:
        raise ValueError(f"invalid source size {source_width}x{source_height}")
    high_height = min(source_height, HIGH_MAX_HEIGHT)
    low_height = max(high_height // 2, min(LOW_MIN_HEIGHT, high_height))
    layers = {}
    for quality, height in ((Quality.HIGH, high_height), (Quality.LOW, low_height)):
        even_height = max(2, height - height % 2)
        width = round(source_width * even_height / source_height)
        even_width = max(2, width - width % 2)
        pixels = even_width * even_height
        bit_rate = int(min(MAX_BIT_RATE, max(MIN_BIT_RATE, pixels * BIT_RATE_PER_PIXEL)))
        layers[quality] = VideoLayer(quality, even_width, even_height, bit_rate)
    return layers


class LayerEncoder:
    """libx264 for one layer, which scales each frame to the layer's size and encodes it.

    Not thread-safe, so one thread calls `encode` at a time.
    """

    def __init__(self, layer: VideoLayer) -> None:
        self.layer = layer
        self.frames_encoded = 0
        self._last_pts: int | None = None
        codec = av.CodecContext.create("libx264", "w")
        assert isinstance(codec, VideoCodecContext)
        codec.width = layer.width
        codec.height = layer.height
        codec.pix_fmt = "yuv420p"
        codec.time_base = VIDEO_TIME_BASE
        codec.framerate = fractions.Fraction(NOMINAL_FRAME_RATE, 1)
        codec.bit_rate = layer.bit_rate
        codec.gop_size = X264_MAX_KEYFRAME_INTERVAL_FRAMES
        # one thread per encoder: at these sizes x264's threads cost more than they save
        codec.thread_count = 1
        bit_rate_kbit = layer.bit_rate // 1000
        codec.options = {
            **X264_OPTIONS,
            "maxrate": str(layer.bit_rate),
            "bufsize": str(int(layer.bit_rate * VBV_BUFFER_SECS)),
        }
        self._codec = codec
        logger.debug("LayerEncoder(%s): opened at %d kbit/s", layer, bit_rate_kbit)

    def encode(self, frame: VideoFrame, keyframe: bool) -> list[Packet[Any]]:
        """Encode `frame` scaled to the layer and return its packet, in a list that is
        empty if x264 keeps the frame back (`zerolatency` makes it return at once)."""
        image = frame.reformat(width=self.layer.width, height=self.layer.height, format="yuv420p")
        if image is frame:
            # the same size and format: reformat hands back the source, which the other
            # layers read too, so give the encoder its own copy to stamp
            image = copy_video_frame(frame)

        pts = frame.pts if frame.pts is not None else 0
        if frame.time_base is not None and frame.time_base != VIDEO_TIME_BASE:
            pts = round(pts * frame.time_base / VIDEO_TIME_BASE)
        if self._last_pts is not None and pts <= self._last_pts:
            # x264 rejects timestamps that do not increase
            pts = self._last_pts + 1
        self._last_pts = pts
        image.pts = pts
        image.time_base = VIDEO_TIME_BASE
        image.pict_type = PictureType.I if keyframe else PictureType.NONE

        packets = self._codec.encode(image)
        self.frames_encoded += 1
        return packets


class OpusEncoder:
    """libopus for the live's audio, in 60 ms packets of mono Opus at 64 kbit/s.

    Takes decoded frames of any format and size, which the resampler cuts into the
    2,880-sample frames libopus requires. Not thread-safe.
    """

    def __init__(self) -> None:
        codec = CodecContext.create("libopus", "w")
        codec.sample_rate = OPUS_SAMPLE_RATE
        codec.layout = OPUS_LAYOUT
        codec.format = "s16"
        codec.bit_rate = OPUS_BIT_RATE
        codec.time_base = OPUS_TIME_BASE
        # speech first, but a played music excerpt stays clean
        codec.options = {
            "application": "audio",
            "frame_duration": str(OPUS_FRAME_MILLISECONDS),
        }
        self._codec = codec
        self._resampler = AudioResampler(
            format="s16", layout=OPUS_LAYOUT, rate=OPUS_SAMPLE_RATE, frame_size=OPUS_FRAME_SAMPLES
        )
        # pts of the next packet, in samples, and of the next input frame
        self._next_pts: int | None = None
        self._expected_input_pts: int | None = None
        self.frames_encoded = 0

    def encode(self, frame: AudioFrame) -> list[Packet[Any]]:
        """Encode `frame` and return the packets that are complete.

        Packets count samples on the live's audio timeline, taken from the frames' pts.
        A gap in the input (the host reconnecting) is a gap in the packets' timestamps
        too, which keeps the audio in step with the video.
        """
        frame_pts = None
        if frame.pts is not None and frame.time_base is not None:
            frame_pts = round(frame.pts * frame.time_base / OPUS_TIME_BASE)
        if frame_pts is not None and (
            self._expected_input_pts is None
            or abs(frame_pts - self._expected_input_pts) > OPUS_RESYNC_SAMPLES
        ):
            self._next_pts = frame_pts
        if frame_pts is not None:
            self._expected_input_pts = frame_pts + frame.samples

        packets: list[Packet[Any]] = []
        for chunk in self._resampler.resample(frame):
            chunk.pts = self._next_pts or 0
            chunk.time_base = OPUS_TIME_BASE
            self._next_pts = chunk.pts + chunk.samples
            packets.extend(self._codec.encode(chunk))
        self.frames_encoded += 1
        return packets
