"""Join the finished parts of one live's recording into a single MP4 for replay.

A live that was interrupted and resumed has one Recording per stretch, each finished
into its own MP4 that starts at 0. Joining copies their packets into one MP4 on the
wall-clock timeline of the first part, so each part starts at its own `started_at`
minus the first part's. Only a part recorded at another picture size is encoded again.
The time between two parts stays a gap in the timestamps, so a chat message keeps its
offset from the first part's start whichever part it was sent in.

These functions block on file I/O and encoding, so the service runs them in a thread.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import av
from av.audio.frame import AudioFrame
from av.container import InputContainer
from av.stream import Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from recordings.finishing import AV_TIME_BASE, remux_to_mp4
from recordings.writer import TransportStreamWriter

logger = logging.getLogger(__name__)


class IncompatiblePartsError(Exception):
    """Two parts differ in their streams (count, codec, picture size or audio format),
    so their packets cannot share one MP4 stream without re-encoding."""


@dataclass(frozen=True)
class RecordingPart:
    """One finished part: its MP4 and where it starts on the joined timeline."""

    video_path: Path
    offset_secs: float


def join_parts(parts: list[RecordingPart], joined_path: Path) -> float:
    """Copy the packets of `parts`, in order, into one MP4 at `joined_path` with its
    index at the front; return its duration in seconds.

    A part whose decoder parameters differ from the first part's (another picture
    size) is encoded again to match. A part that starts before the previous one ends
    is moved after it, and a packet that would not decode after the previous one of
    its stream is left out, so timestamps only go forward. Raises IncompatiblePartsError, OSError or
    av.FFmpegError; the MP4 appears at `joined_path` only once complete.
    """
    if not parts:
        raise ValueError("join_parts needs at least one part")
    started = time.monotonic()
    # named after the process, since two processes may join the same live at once
    partial = joined_path.with_name(f"{joined_path.name}.{os.getpid()}.partial")
    sources = [av.open(str(part.video_path)) for part in parts]
    conformed: list[Path] = []
    try:
        templates = _streams(sources[0])
        for index in range(1, len(parts)):
            try:
                _check_compatible(templates, _streams(sources[index]), parts[index].video_path)
            except IncompatiblePartsError as error:
                if [stream.type for stream in templates] != [
                    stream.type for stream in _streams(sources[index])
                ]:
                    raise
                # the host's camera started at another picture size in this part
                logger.warning("%s; encoding it again to match the first part", error)
                sources[index].close()
                path = joined_path.with_name(f"{joined_path.stem}.{os.getpid()}.part{index}.mp4")
                conformed.append(path)
                conform_part(parts[index].video_path, templates, path)
                sources[index] = av.open(str(path))
                _check_compatible(templates, _streams(sources[index]), path)

        with av.open(str(partial), "w", format="mp4", options={"movflags": "+faststart"}) as target:
            outputs = [target.add_stream_from_template(stream) for stream in templates]
            # maps each output stream's position to the last decoding time written, in
            # seconds, which the next packet must pass
            last_dts_secs: dict[int, float] = {}
            end_secs = 0.0
            skipped = 0
            for part, source in zip(parts, sources, strict=True):
                streams = _streams(source)
                # Two nodes' clocks may disagree by a little, so a part may seem to start
                # before the previous one ended: it then starts right after it instead.
                offset_secs = max(part.offset_secs, end_secs)
                if offset_secs > part.offset_secs:
                    logger.warning(
                        "%s: starts %.3f s before the previous part ended; moved after it",
                        part.video_path,
                        offset_secs - part.offset_secs,
                    )
                for packet in source.demux(streams):
                    if packet.dts is None or packet.size == 0 or packet.time_base is None:
                        continue
                    position = streams.index(packet.stream)
                    shift = round(offset_secs / packet.time_base)
                    dts = packet.dts + shift
                    dts_secs = float(dts * packet.time_base)
                    if position in last_dts_secs and dts_secs <= last_dts_secs[position]:
                        skipped += 1
                        continue
                    pts = packet.pts if packet.pts is not None else packet.dts
                    packet.dts = dts
                    packet.pts = pts + shift
                    last_dts_secs[position] = dts_secs
                    packet_end = pts + shift + (packet.duration or 0)
                    end_secs = max(end_secs, float(packet_end * packet.time_base))
                    packet.stream = outputs[position]
                    target.mux(packet)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        for source in sources:
            source.close()
        for path in conformed:
            path.unlink(missing_ok=True)

    os.replace(partial, joined_path)
    with av.open(str(joined_path)) as joined:
        duration = (joined.duration or 0) / AV_TIME_BASE
    if skipped:
        logger.warning("%s: left out %d overlapping packets", joined_path, skipped)
    logger.info(
        "%s: joined %d parts (%.1f s of media) in %.2f s",
        joined_path,
        len(parts),
        duration,
        time.monotonic() - started,
    )
    return duration


def conform_part(video_path: Path, templates: list[Stream], conformed_path: Path) -> None:
    """Decode the part at `video_path` and encode it again, as the recorder would, at
    the picture size of the video stream in `templates`, into `conformed_path`.

    The recorder's encoder settings then give the same decoder parameters as the first
    part's. Blocks for about the part's duration times the recorder's encoding cost.
    """
    size = next(
        (
            (stream.codec_context.width, stream.codec_context.height)
            for stream in templates
            if isinstance(stream, VideoStream)
        ),
        None,
    )
    raw_path = conformed_path.with_suffix(".ts")
    writer = TransportStreamWriter(
        raw_path,
        has_video=size is not None,
        has_audio=any(stream.type == "audio" for stream in templates),
    )
    first_picture = True
    try:
        with av.open(str(video_path)) as source:
            for packet in source.demux(_streams(source)):
                for frame in packet.decode():
                    if isinstance(frame, VideoFrame) and frame.time is not None and size:
                        # the writer keeps the size of its first picture for the whole file
                        picture = frame.reformat(*size) if first_picture else frame
                        first_picture = False
                        writer.write_video(frame.time, picture)
                    elif isinstance(frame, AudioFrame) and frame.time is not None:
                        writer.write_audio(frame.time, frame)
        writer.close()
        remux_to_mp4(raw_path, conformed_path)
    finally:
        writer.abort()
        raw_path.unlink(missing_ok=True)


def _streams(container: InputContainer) -> list[Stream]:
    """Return the video stream, then the audio stream, of a finished part."""
    return [*container.streams.video[:1], *container.streams.audio[:1]]


def _check_compatible(first: list[Stream], other: list[Stream], path: Path) -> None:
    if [stream.type for stream in first] != [stream.type for stream in other]:
        raise IncompatiblePartsError(
            f"{path}: streams {[stream.type for stream in other]}, "
            f"expected {[stream.type for stream in first]}"
        )
    for expected, actual in zip(first, other, strict=True):
        expected_context = expected.codec_context
        actual_context = actual.codec_context
        if expected_context.name != actual_context.name:
            raise IncompatiblePartsError(
                f"{path}: codec {actual_context.name}, expected {expected_context.name}"
            )
        # An MP4 stream has one set of decoder parameters (H.264's SPS and PPS, AAC's
        # AudioSpecificConfig): a part encoded with others would decode wrongly.
        if expected_context.extradata != actual_context.extradata:
            raise IncompatiblePartsError(
                f"{path}: {actual.type} decoder parameters differ from the first part's"
            )
