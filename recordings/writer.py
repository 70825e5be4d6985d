"""The raw recording: H.264 and AAC in an MPEG-TS file, written while the live happens.

The video arrives either decoded, and is encoded here, or already encoded in H.264
by the live's shared encoder, and is muxed as it is.

MPEG-TS is a sequence of self-contained 188-byte packets that repeats its stream tables
several times a second, so a file cut anywhere (process killed, disk full) stays
readable up to the cut. `TransportStreamWriter` is not thread-safe: one thread owns it.
"""

from __future__ import annotations

import fractions
import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import av
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.frame import PictureType, VideoFrame
from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

# MPEG-TS states every timestamp on a 90 kHz clock.
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
# WebRTC's Opus decodes at 48 kHz, so the host's microphone needs no rate conversion.
AUDIO_SAMPLE_RATE = 48_000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
# One voice, so mono; 96 kbit/s AAC keeps speech and a played music excerpt clean.
AUDIO_BIT_RATE = 96_000
AUDIO_LAYOUT = "mono"

# Finishing copies the H.264 stream into the MP4 without re-encoding, and a player can
# only seek to a keyframe: a keyframe at least every 2 s gives 2-second seeking in the
# replay and bounds what a damaged packet spoils. A keyframe is forced on the first frame
# 1.9 s after the last one, which keeps the gap at 2 s or less above 10 frames per second.
KEYFRAME_FORCE_AFTER_SECS = 1.9
KEYFRAME_FORCE_AFTER_TICKS = int(KEYFRAME_FORCE_AFTER_SECS / VIDEO_TIME_BASE)
# Timestamps come from the wall clock; x264 only uses the rate for its bit budget.
NOMINAL_FRAME_RATE = 30
# x264's own keyframe limit, far above the forced interval so that its periodic
# keyframes do not double ours (a forced IDR frame restarts its count).
X264_MAX_KEYFRAME_INTERVAL_FRAMES = 600
X264_OPTIONS = {
    # Measured at about 6 ms of writer-thread time per 1280x720 frame, copy included,
    # with a synthetic moving picture on a 2-core machine. A camera picture costs more,
    # but one thread still keeps up with 30 frames per second.
    "preset": "veryfast",
    # Decoding order equals presentation order, which keeps wall-clock timestamps simple.
    "bframes": "0",
    # A keyframe forced through pict_type becomes an IDR frame, where decoding can start.
    "forced-idr": "1",
}
# Used when audio has been arriving for FIRST_VIDEO_FRAME_WAIT_SECS without any video.
DEFAULT_VIDEO_SIZE = (640, 360)
# The container needs the picture size before its first packet, so audio waits this long
# in memory for the first video frame (10 s of 48 kHz 16-bit stereo is under 2 MB).
FIRST_VIDEO_FRAME_WAIT_SECS = 10.0

# Audio timestamps count samples, which keeps AAC frames contiguous, and are pulled back
# to the wall clock when they drift. A stall longer than the lag limit is filled with
# silence, and audio running ahead by more than the lead limit is dropped.
AUDIO_MAX_LAG_SECS = 0.15
AUDIO_MAX_LEAD_SECS = 0.3
# A long stall is filled one second per frame, so a gap never takes one huge buffer.
SILENCE_CHUNK_SAMPLES = AUDIO_SAMPLE_RATE

CONTAINER_OPTIONS = {
    # Hand every packet to the operating system at once, so that a killed process loses
    # only what the encoders still hold.
    "flush_packets": "1",
    # The interleaver keeps packets until every stream has one. Without a limit, a video
    # stall would keep up to 10 s of audio in memory, off the disk.
    "max_interleave_delta": "1000000",  # microseconds
}


@dataclass
class WriterStats:
    """Frame and sample counts of one writer, for the recorder's closing log line."""

    video_frames: int = 0
    audio_samples: int = 0
    silence_samples: int = 0
    dropped_audio_samples: int = 0


class TransportStreamWriter:
    """Encodes decoded frames into H.264 and AAC and muxes them into an MPEG-TS file.

    Each frame comes with its offset in seconds from the first recorded frame. The
    offsets become the timestamps, so the file's duration follows the wall clock even
    when frames were dropped on the way. Frames passed in are copied, never modified:
    a relay hands the same frame object to every viewer's encoder.

    With `video_packets`, the video comes as H.264 packets (Annex B, with SPS and PPS
    before each keyframe, the first packet a keyframe) through `write_video_packet`,
    and keeps the encoder's keyframes. Packets are copied too: the viewers' senders
    read the same objects.
    """

    def __init__(
        self, path: Path, *, has_video: bool, has_audio: bool, video_packets: bool = False
    ) -> None:
        self.path = path
        self.has_video = has_video
        self.has_audio = has_audio
        self.video_packets = video_packets
        self.stats = WriterStats()
        self._container: OutputContainer | None = None
        self._video: VideoStream | None = None
        self._video_copy: Stream | None = None
        self._audio: AudioStream | None = None
        self._video_size = DEFAULT_VIDEO_SIZE
        self._last_video_pts: int | None = None
        self._last_keyframe_pts: int | None = None
        self._resampler: AudioResampler | None = None
        self._resampler_input: tuple[str, str, int] | None = None
        self._audio_next_sample = 0
        # Audio that arrived before the first video frame, as (offset, copied frame).
        self._pending_audio: list[tuple[float, AudioFrame]] = []

    def write_video(self, offset_secs: float, frame: VideoFrame) -> None:
        if self.video_packets:
            raise RuntimeError(f"{self.path}: expected video packets, got a decoded frame")
        if self._container is None:
            # yuv420p needs even dimensions.
            self._open((frame.width - frame.width % 2, frame.height - frame.height % 2))
        assert self._video is not None

        width, height = self._video_size
        # NOTE: to_ndarray and from_ndarray copy the picture, scaled to the size the
        # stream was opened with (a browser lowers its resolution when bandwidth drops).
        image = VideoFrame.from_ndarray(
            frame.to_ndarray(format="yuv420p", width=width, height=height), format="yuv420p"
        )
        pts = self._next_video_pts(offset_secs)
        image.pts = pts
        image.time_base = VIDEO_TIME_BASE
        if (
            self._last_keyframe_pts is None
            or pts - self._last_keyframe_pts >= KEYFRAME_FORCE_AFTER_TICKS
        ):
            image.pict_type = PictureType.I
            self._last_keyframe_pts = pts

        self._mux(self._video.encode(image))
        self.stats.video_frames += 1

    def _next_video_pts(self, offset_secs: float) -> int:
        pts = round(offset_secs / VIDEO_TIME_BASE)
        if self._last_video_pts is not None and pts <= self._last_video_pts:
            pts = self._last_video_pts + 1
        self._last_video_pts = pts
        return pts

    def write_video_packet(self, offset_secs: float, packet: Packet[Any]) -> None:
        if not self.video_packets:
            raise RuntimeError(f"{self.path}: expected decoded video frames, got a packet")
        if self._container is None:
            self._open(DEFAULT_VIDEO_SIZE)
        assert self._container is not None and self._video_copy is not None

        pts = self._next_video_pts(offset_secs)
        copy = Packet(bytes(packet))
        copy.pts = pts
        copy.dts = pts
        copy.time_base = VIDEO_TIME_BASE
        copy.is_keyframe = packet.is_keyframe
        copy.stream = self._video_copy
        self._container.mux(copy)
        self.stats.video_frames += 1

    def write_audio(self, offset_secs: float, frame: AudioFrame) -> None:
        copy = _copy_audio(frame)
        if self._container is None:
            waits_for_size = self.has_video and not self.video_packets
            if offset_secs < FIRST_VIDEO_FRAME_WAIT_SECS and waits_for_size:
                self._pending_audio.append((offset_secs, copy))
                return
            if waits_for_size:
                logger.warning(
                    "%s: no video frame after %.0f s of audio; recording at %dx%d",
                    self.path,
                    FIRST_VIDEO_FRAME_WAIT_SECS,
                    *DEFAULT_VIDEO_SIZE,
                )
            self._open(DEFAULT_VIDEO_SIZE)
        self._write_audio_copy(offset_secs, copy)

    def close(self, end_offset_secs: float | None = None) -> None:
        """Flush the encoders and write the last packets; a writer that never received a
        frame creates no file.

        With `end_offset_secs`, the moment recording stopped, silence fills the audio
        from its last frame to that offset. The file then lasts until the stop even
        when the host's media stopped earlier (host away, then the live ended), and
        finishing shows the last picture until the end of the sound.

        NOTE: a file without an audio stream still ends at its last video frame.
        """
        if self._container is None:
            if not self._pending_audio:
                return
            self._open(DEFAULT_VIDEO_SIZE)
        assert self._container is not None

        if self._video is not None:
            self._mux(self._video.encode(None))
        if self._audio is not None:
            if self._resampler is not None:
                for resampled in self._resampler.resample(None):
                    self._encode_audio(resampled)
            if end_offset_secs is not None:
                silence_samples = (
                    round(end_offset_secs * AUDIO_SAMPLE_RATE) - self._audio_next_sample
                )
                if silence_samples > 0:
                    self._write_silence(silence_samples)
            self._mux(self._audio.encode(None))
        self._container.close()
        self._container = None

    def abort(self) -> None:
        """Close the file without flushing the encoders, after an error; what was already
        written stays readable."""
        if self._container is None:
            return
        try:
            self._container.close()
        except (av.FFmpegError, OSError) as error:
            logger.warning("%s: closing after an error failed too: %s", self.path, error)
        self._container = None

    def _open(self, video_size: tuple[int, int]) -> None:
        self._video_size = video_size
        container = av.open(
            str(self.path), "w", format="mpegts", container_options=CONTAINER_OPTIONS
        )
        if self.has_video and self.video_packets:
            # no encoder: the muxer takes the packets as they come, and reads the
            # picture size from the SPS of the first keyframe
            self._video_copy = container.add_mux_stream(
                "h264", rate=NOMINAL_FRAME_RATE, time_base=VIDEO_TIME_BASE
            )
        elif self.has_video:
            video = container.add_stream(
                "libx264", rate=NOMINAL_FRAME_RATE, options=dict(X264_OPTIONS)
            )
            video.width, video.height = video_size
            video.pix_fmt = "yuv420p"
            video.gop_size = X264_MAX_KEYFRAME_INTERVAL_FRAMES
            video.codec_context.time_base = VIDEO_TIME_BASE
            self._video = video
        if self.has_audio:
            audio = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout=AUDIO_LAYOUT)
            audio.bit_rate = AUDIO_BIT_RATE
            self._audio = audio
        self._container = container
        video_description = "none"
        if self.has_video:
            video_description = (
                "h264 packets" if self.video_packets else f"{video_size[0]}x{video_size[1]}"
            )
        logger.info(
            "%s: opened with video=%s audio=%s",
            self.path,
            video_description,
            "aac" if self.has_audio else "none",
        )

        pending, self._pending_audio = self._pending_audio, []
        for offset_secs, copy in pending:
            self._write_audio_copy(offset_secs, copy)

    def _write_audio_copy(self, offset_secs: float, copy: AudioFrame) -> None:
        if self._audio is None:
            return
        for resampled in self._resample(copy):
            # The frame arrived at `offset_secs`, once its last sample was captured.
            wall_clock_start = round(offset_secs * AUDIO_SAMPLE_RATE) - resampled.samples
            lag = wall_clock_start - self._audio_next_sample
            if lag > AUDIO_MAX_LAG_SECS * AUDIO_SAMPLE_RATE:
                self._write_silence(lag)
            elif -lag > AUDIO_MAX_LEAD_SECS * AUDIO_SAMPLE_RATE:
                self.stats.dropped_audio_samples += resampled.samples
                continue
            self._encode_audio(resampled)
            self.stats.audio_samples += resampled.samples

    def _resample(self, copy: AudioFrame) -> list[AudioFrame]:
        # A resampler is set up for one input format; a change of format (a new
        # microphone) gets a new resampler.
        input_format = (copy.format.name, copy.layout.name, copy.sample_rate)
        if self._resampler is None or input_format != self._resampler_input:
            self._resampler = AudioResampler(
                format="fltp", layout=AUDIO_LAYOUT, rate=AUDIO_SAMPLE_RATE
            )
            self._resampler_input = input_format
        return self._resampler.resample(copy)

    def _write_silence(self, samples: int) -> None:
        while samples > 0:
            chunk = min(samples, SILENCE_CHUNK_SAMPLES)
            silence = AudioFrame(format="fltp", layout=AUDIO_LAYOUT, samples=chunk)
            for plane in silence.planes:
                plane.update(bytes(plane.buffer_size))
            silence.sample_rate = AUDIO_SAMPLE_RATE
            self._encode_audio(silence)
            self.stats.silence_samples += chunk
            samples -= chunk

    def _encode_audio(self, frame: AudioFrame) -> None:
        assert self._audio is not None
        frame.pts = self._audio_next_sample
        frame.time_base = AUDIO_TIME_BASE
        self._audio_next_sample += frame.samples
        self._mux(self._audio.encode(frame))

    def _mux(self, packets: list[Packet[Stream]]) -> None:
        assert self._container is not None
        self._container.mux(packets)


def _copy_audio(frame: AudioFrame) -> AudioFrame:
    """Copy `frame` with its own pts, so that resampling and encoding never touch the
    original (the resampler hands back its input unchanged when no conversion is needed)."""
    copy = AudioFrame.from_ndarray(
        frame.to_ndarray(), format=frame.format.name, layout=frame.layout.name
    )
    copy.sample_rate = frame.sample_rate
    copy.pts = None
    return copy


def started_at_path(raw_path: Path) -> Path:
    """Return the path of the JSON file beside a raw recording that stores the time of
    its first frame."""
    return raw_path.with_suffix(".json")


def write_started_at(raw_path: Path, started_at: datetime) -> None:
    """Store `started_at` beside the raw file, so that finishing a recording whose
    process died can still measure chat replay offsets from it."""
    target = started_at_path(raw_path)
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps({"started_at": started_at.isoformat()}))
    # Atomic on POSIX: a crash leaves either no file or the whole file.
    os.replace(partial, target)


def read_started_at(raw_path: Path) -> datetime | None:
    """Return the time stored by `write_started_at`, or None when there is none."""
    try:
        stored = json.loads(started_at_path(raw_path).read_text())
        return datetime.fromisoformat(stored["started_at"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("%s: no start time beside the raw recording: %s", raw_path, error)
        return None
