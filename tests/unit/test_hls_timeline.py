"""The HLS stream's timeline and master playlist, without a live: packets keep their
source's spacing, a jump in the source's timestamps re-anchors it on the arrival clock,
and the master playlist lists both layers with their codecs."""

from __future__ import annotations

import fractions
import re

from signaling.encoding import VIDEO_TIME_BASE, Quality, plan_layers
from signaling.hls import RESYNC_SECS, SourceTimeline
from signaling.hls_muxer import VARIANT_CODECS, master_playlist

ORIGIN = 1000.0
# One frame at 30 frames per second, in 90 kHz ticks.
FRAME_TICKS = 3000


def test_timeline_starts_at_arrival() -> None:
    timeline = SourceTimeline(VIDEO_TIME_BASE, ORIGIN)
    assert timeline.place(123_456, ORIGIN + 0.5) == 45_000


def test_timeline_keeps_source_spacing() -> None:
    timeline = SourceTimeline(VIDEO_TIME_BASE, ORIGIN)
    first = timeline.place(500_000, ORIGIN)
    # the second frame arrives 20 ms late, the third on time: the spacing stays one frame
    second = timeline.place(500_000 + FRAME_TICKS, ORIGIN + 1 / 30 + 0.02)
    third = timeline.place(500_000 + 2 * FRAME_TICKS, ORIGIN + 2 / 30)
    assert second - first == FRAME_TICKS
    assert third - second == FRAME_TICKS
    assert timeline.resyncs == 0


def test_timeline_reanchors_after_jump() -> None:
    """A host who publishes again sends timestamps that start anywhere."""
    timeline = SourceTimeline(VIDEO_TIME_BASE, ORIGIN)
    timeline.place(500_000, ORIGIN)
    after_gap = timeline.place(7, ORIGIN + 12.0)
    assert after_gap == 12 * 90_000
    assert timeline.place(7 + FRAME_TICKS, ORIGIN + 12.0 + 1 / 30) == after_gap + FRAME_TICKS
    assert timeline.resyncs == 1


def test_timeline_reanchors_on_drift() -> None:
    timeline = SourceTimeline(VIDEO_TIME_BASE, ORIGIN)
    timeline.place(0, ORIGIN)
    # the source says one frame later, but the packet arrives long after
    late = ORIGIN + RESYNC_SECS + 0.5
    assert timeline.place(FRAME_TICKS, late) == round((late - ORIGIN) * 90_000)
    assert timeline.resyncs == 1


def test_timeline_counts_audio_samples() -> None:
    timeline = SourceTimeline(fractions.Fraction(1, 48_000), ORIGIN)
    assert timeline.place(-312, ORIGIN) == 0
    assert timeline.place(-312 + 2880, ORIGIN + 0.06) == 2880


def test_master_playlist_lists_both_layers() -> None:
    playlist = master_playlist(plan_layers(1280, 720))
    lines = playlist.splitlines()

    assert lines[0] == "#EXTM3U"
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in lines
    variants = [line for line in lines if line.startswith("#EXT-X-STREAM-INF:")]
    assert len(variants) == len(Quality)
    assert "RESOLUTION=1280x720" in variants[0]
    assert "RESOLUTION=640x360" in variants[1]
    for variant in variants:
        assert f'CODECS="{VARIANT_CODECS}"' in variant
    assert lines[lines.index(variants[0]) + 1] == "high.m3u8"
    assert lines[lines.index(variants[1]) + 1] == "low.m3u8"
    assert playlist.endswith("\n")


def test_master_playlist_peak_above_average() -> None:
    for line in master_playlist(plan_layers(640, 360)).splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            peak = re.search(r"[:,]BANDWIDTH=(\d+)", line)
            average = re.search(r"[:,]AVERAGE-BANDWIDTH=(\d+)", line)
            assert peak is not None, line
            assert average is not None, line
            assert int(peak.group(1)) > int(average.group(1))
