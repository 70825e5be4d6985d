"""Turn a raw MPEG-TS recording into an MP4 for replay, a JPEG poster and a duration.

These functions block on file I/O and decoding; the service runs them in a thread.
"""

from __future__ import annotations

import fractions
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

logger = logging.getLogger(__name__)

# The poster shows the picture this far in, past a black first frame or a camera still
# adjusting its exposure. A shorter recording uses its middle.
POSTER_AT_SECS = 1.0
# Microseconds, FFmpeg's unit for a container's duration.
AV_TIME_BASE = 1_000_000


class EmptyRecordingError(Exception):
    """The raw file contains no audio or video packet that can be replayed."""


@dataclass(frozen=True)
class FinishedMedia:
    duration_seconds: float
    has_poster: bool


def finish_media(raw_path: Path, video_path: Path, poster_path: Path) -> FinishedMedia:
    """Remux `raw_path` into `video_path`, then write a poster to `poster_path` when the
    recording has video. Raises EmptyRecordingError, OSError or av.FFmpegError."""
    started = time.monotonic()
    remux_to_mp4(raw_path, video_path)
    duration = read_duration(video_path)
    has_poster = extract_poster(video_path, poster_path, min(POSTER_AT_SECS, duration / 2))
    logger.info(
        "%s: finished into %s (%.1f s of media, %d bytes) in %.2f s",
        raw_path,
        video_path,
        duration,
        video_path.stat().st_size,
        time.monotonic() - started,
    )
    return FinishedMedia(duration_seconds=duration, has_poster=has_poster)


def remux_to_mp4(raw_path: Path, video_path: Path) -> None:
    """Copy the audio and video packets of `raw_path` into an MP4 whose index (moov)
    precedes the media (mdat), so that a browser plays it while downloading and seeks
    with HTTP Range requests. Nothing is re-encoded.

    A raw file cut by a crash ends in a partial packet; damaged packets are skipped.
    The MP4 appears at `video_path` only once complete.
    """
    partial = video_path.with_name(video_path.name + ".partial")
    try:
        source = av.open(str(raw_path))
    except av.InvalidDataError as error:
        # An empty or nearly empty file has no stream table to find.
        raise EmptyRecordingError(f"{raw_path}: no readable stream: {error}") from error
    with source:
        streams = _media_streams(source)
        if not streams:
            raise EmptyRecordingError(f"{raw_path}: no audio or video stream")
        # Shift every stream by the same amount, so that the MP4 starts at 0 (the first
        # recorded frame) and audio and video keep their offset to each other.
        start_secs = min(
            (
                float(stream.start_time * stream.time_base)
                for stream in streams
                if stream.start_time is not None and stream.time_base is not None
            ),
            default=0.0,
        )

        try:
            with av.open(
                str(partial), "w", format="mp4", options={"movflags": "+faststart"}
            ) as target:
                outputs = {
                    stream.index: target.add_stream_from_template(stream) for stream in streams
                }
                copied, skipped = _copy_packets(source, streams, target, outputs, start_secs)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if copied == 0:
        partial.unlink(missing_ok=True)
        raise EmptyRecordingError(f"{raw_path}: no complete audio or video packet")
    if skipped:
        logger.warning("%s: skipped %d damaged or out-of-order packets", raw_path, skipped)
    os.replace(partial, video_path)


def _media_streams(source: InputContainer) -> list[Stream]:
    """Return the first video and the first audio stream, in that order, leaving out a
    stream that never received a packet: the demuxer then cannot tell its picture size
    or sample rate, and the MP4 muxer rejects it."""
    streams: list[Stream] = []
    if source.streams.video and source.streams.video[0].codec_context.width > 0:
        streams.append(source.streams.video[0])
    if source.streams.audio and source.streams.audio[0].codec_context.sample_rate > 0:
        streams.append(source.streams.audio[0])
    return streams


def _copy_packets(
    source: InputContainer,
    streams: list[Stream],
    target: OutputContainer,
    outputs: dict[int, Stream],
    start_secs: float,
) -> tuple[int, int]:
    """Mux every usable packet of `streams` into `outputs`; return (copied, skipped).

    The last video packet is held back until the end, then shown until the end of the
    longest stream. The recorder fills the audio with silence up to the moment it
    stopped, so a host away since their last picture stays in the video as that
    picture, held until the end.
    """
    copied = 0
    skipped = 0
    last_dts: dict[int, int] = {}
    # the latest video packet, muxed once the next one arrives or at the end
    held_video: Packet[Any] | None = None
    end_secs = 0.0
    for packet in source.demux(streams):
        # The demuxer ends each stream with an empty packet without timestamps.
        if packet.dts is None or packet.size == 0:
            continue
        index = packet.stream.index
        if packet.is_corrupt or packet.time_base is None:
            skipped += 1
            continue

        shift = round(start_secs / packet.time_base)
        dts = packet.dts - shift
        # The MP4 muxer rejects a stream whose decoding times go backwards.
        if index in last_dts and dts <= last_dts[index]:
            skipped += 1
            continue
        pts = packet.pts if packet.pts is not None else packet.dts
        packet.dts = dts
        packet.pts = pts - shift
        last_dts[index] = dts
        end_secs = max(end_secs, float((packet.pts + (packet.duration or 0)) * packet.time_base))

        packet.stream = outputs[index]
        if packet.stream.type == "video":
            if held_video is not None:
                target.mux(held_video)
            held_video = packet
        else:
            target.mux(packet)
        copied += 1

    if held_video is not None:
        _hold_until(held_video, end_secs)
        target.mux(held_video)
    return copied, skipped


def _hold_until(packet: Packet[Any], end_secs: float) -> None:
    """Lengthen `packet`'s duration so that its picture shows until `end_secs`."""
    if packet.pts is None or packet.time_base is None:
        return
    shown_until = round(end_secs / packet.time_base) - packet.pts
    packet.duration = max(packet.duration or 0, shown_until)


def read_duration(video_path: Path) -> float:
    """Return the duration of the media file at `video_path`, in seconds."""
    with av.open(str(video_path)) as container:
        if container.duration is not None:
            return container.duration / AV_TIME_BASE
        ends = [
            float(((stream.start_time or 0) + stream.duration) * stream.time_base)
            for stream in container.streams
            if stream.duration is not None and stream.time_base is not None
        ]
    return max(ends, default=0.0)


def extract_poster(video_path: Path, poster_path: Path, at_secs: float) -> bool:
    """Write the frame at `at_secs` (or the last one before the end) to `poster_path` as
    a JPEG. Return False, writing nothing, when the file has no decodable picture."""
    with av.open(str(video_path)) as container:
        if not container.streams.video:
            return False
        stream = container.streams.video[0]
        picture = _frame_at(container, stream, at_secs)
    if picture is None:
        logger.warning("%s: no decodable picture for the poster", video_path)
        return False

    encoder = av.CodecContext.create("mjpeg", "w")
    assert isinstance(encoder, av.video.codeccontext.VideoCodecContext)
    encoder.width = picture.width
    encoder.height = picture.height
    # JPEG stores full-range YUV; the scaler expands the video's limited range to it.
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 1)
    image = picture.reformat(format="yuvj420p")
    image.pts = 0
    packets = [*encoder.encode(image), *encoder.encode(None)]

    partial = poster_path.with_name(poster_path.name + ".partial")
    partial.write_bytes(b"".join(bytes(packet) for packet in packets))
    os.replace(partial, poster_path)
    return True


def _frame_at(container: InputContainer, stream: VideoStream, at_secs: float) -> VideoFrame | None:
    if stream.time_base is not None:
        # Lands on the keyframe before `at_secs`; decoding goes on from there.
        container.seek(round(at_secs / stream.time_base), stream=stream)
    picture: VideoFrame | None = None
    for frame in container.decode(stream):
        picture = frame
        if frame.time is not None and frame.time >= at_secs:
            break
    return picture
