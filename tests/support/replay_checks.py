"""Read a replay MP4 made from the numbered picture of tests.support.signaling_peers, to
check that every part of a live is in it, in order, on one timeline."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import av

from tests.support.signaling_peers import PICTURE_FRAME_RATE, read_frame_number


@dataclass(frozen=True)
class DecodedFrame:
    time_secs: float
    number: int


@dataclass(frozen=True)
class ReplayTimeline:
    """What a replay's video and audio streams decode to."""

    video_streams: int
    audio_streams: int
    duration_secs: float
    video: list[DecodedFrame]
    audio_times_secs: list[float]

    def parts(self) -> list[list[DecodedFrame]]:
        """Split the video frames where the picture number goes down: each publisher
        numbers its frames from 0, so a new part starts there."""
        parts: list[list[DecodedFrame]] = []
        for frame in self.video:
            if not parts or frame.number < parts[-1][-1].number:
                parts.append([])
            parts[-1].append(frame)
        return parts


def read_replay(path: Path) -> ReplayTimeline:
    with av.open(str(path)) as container:
        video_streams = len(container.streams.video)
        audio_streams = len(container.streams.audio)
        duration_secs = (container.duration or 0) / av.time_base
        video = [
            DecodedFrame(float(frame.time or 0.0), read_frame_number(frame))
            for frame in container.decode(video=0)
        ]
    with av.open(str(path)) as container:
        audio_times = [float(frame.time or 0.0) for frame in container.decode(audio=0)]
    return ReplayTimeline(video_streams, audio_streams, duration_secs, video, audio_times)


def is_increasing(values: list[float] | list[int]) -> bool:
    return all(earlier < later for earlier, later in itertools.pairwise(values))


def assert_two_parts(
    timeline: ReplayTimeline,
    part_secs: tuple[float, float],
    away_secs: float,
    max_lost_secs_per_part: float,
) -> None:
    """Assert that `timeline` is one video of two recorded parts, in order, that lasted
    `part_secs` with `away_secs` between them, each missing at most
    `max_lost_secs_per_part` of media."""
    parts = timeline.parts()
    print(
        f"parts {part_secs[0]:.1f} s and {part_secs[1]:.1f} s, away {away_secs:.1f} s; "
        f"replay {timeline.duration_secs:.1f} s, {[len(part) for part in parts]} frames"
    )
    assert timeline.video_streams == 1
    assert timeline.audio_streams == 1
    assert len(parts) == 2
    assert is_increasing([frame.time_secs for frame in timeline.video])
    assert is_increasing(timeline.audio_times_secs)
    for part, secs in zip(parts, part_secs, strict=True):
        assert is_increasing([frame.number for frame in part])
        # a loaded machine may decode fewer frames than were sent; half is far below that
        assert len(part) >= (secs - max_lost_secs_per_part) * PICTURE_FRAME_RATE / 2
    gap_secs = parts[1][0].time_secs - parts[0][-1].time_secs
    assert gap_secs >= away_secs - 2 * max_lost_secs_per_part
    wall_secs = sum(part_secs) + away_secs
    assert timeline.duration_secs >= wall_secs - 2 * max_lost_secs_per_part
    assert timeline.duration_secs <= wall_secs + 1.0
