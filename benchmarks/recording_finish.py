"""Seconds to finish a one-hour recording into its on-demand MP4.

    .venv/bin/python benchmarks/recording_finish.py [--minutes 60] [--repeat 3]

Records a 10-second segment with the recorder's own writer (recordings/writer.py:
H.264 at 30 fps and AAC in MPEG-TS) from a moving 1280x720 picture and a tone. Then
repeats its packets with shifted timestamps, without encoding again, into a raw file
as long as `--minutes`. It times `finish_media` (remux to an MP4 with
its index first, duration, poster) on that file, `--repeat` times, and writes the
median to benchmarks/results/finish.json.
"""

from __future__ import annotations

import argparse
import fractions
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame
from chat_setup import PROJECT_DIR, load_average, machine_description

from recordings.finishing import finish_media
from recordings.writer import TransportStreamWriter

SEGMENT_SECS = 10
FRAME_RATE = 30
WIDTH, HEIGHT = 1280, 720
SAMPLE_RATE = 48_000
# WebRTC's usual audio packet: 20 ms.
AUDIO_FRAME_SAMPLES = 960


def record_segment(path: Path) -> None:
    """Write SEGMENT_SECS of picture and tone through the recorder's writer."""
    writer = TransportStreamWriter(path, has_video=True, has_audio=True)
    random = np.random.default_rng(2026)
    sample = 0
    for index in range(SEGMENT_SECS * FRAME_RATE):
        offset = index / FRAME_RATE
        # A grey picture with a moving bar and a patch of noise a sixteenth of its
        # size, so that x264 spends about 2 Mbit/s, near what a camera picture costs.
        luma = np.full((HEIGHT, WIDTH), 120, np.uint8)
        luma[: HEIGHT // 4, : WIDTH // 4] = random.integers(
            100, 140, size=(HEIGHT // 4, WIDTH // 4), dtype=np.uint8
        )
        left = (index * 16) % (WIDTH - 64)
        luma[:, left : left + 64] = 235
        picture = np.concatenate([luma, np.full((HEIGHT // 2, WIDTH), 128, np.uint8)])
        writer.write_video(offset, VideoFrame.from_ndarray(picture, format="yuv420p"))

        while sample < (index + 1) * SAMPLE_RATE // FRAME_RATE:
            times = (sample + np.arange(AUDIO_FRAME_SAMPLES)) / SAMPLE_RATE
            tone = (np.sin(2 * np.pi * 440.0 * times) * 8000).astype(np.int16)
            frame = AudioFrame.from_ndarray(tone.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = sample
            frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
            writer.write_audio(sample / SAMPLE_RATE, frame)
            sample += AUDIO_FRAME_SAMPLES
    writer.close()


def repeat_segment(segment: Path, target: Path, minutes: float) -> tuple[float, int]:
    """Write `segment`'s packets again and again, shifted in time, until `minutes`
    long; return the raw file's duration in seconds and its packet count."""
    with av.open(str(segment)) as source:
        streams = [source.streams.video[0], source.streams.audio[0]]
        packets = [
            (packet.stream.index, bytes(packet), packet.pts, packet.dts, packet.is_keyframe)
            for packet in source.demux(streams)
            if packet.dts is not None and packet.size > 0
        ]
        time_base = streams[0].time_base
        assert time_base is not None
        # One loop lasts as long as its longer stream, so no timestamp goes back.
        first = min(pts for _, _, pts, _, _ in packets if pts is not None)
        last = max(pts for _, _, pts, _, _ in packets if pts is not None)
        loop_ticks = last - first + round(fractions.Fraction(1, FRAME_RATE) / time_base)
        loops = max(1, round(minutes * 60 / float(loop_ticks * time_base)))

        with av.open(str(target), "w", format="mpegts") as output:
            outputs = {stream.index: output.add_stream_from_template(stream) for stream in streams}
            count = 0
            for loop in range(loops):
                shift = loop * loop_ticks
                for index, data, pts, dts, keyframe in packets:
                    packet = av.Packet(data)
                    packet.stream = outputs[index]
                    packet.time_base = time_base
                    packet.pts = None if pts is None else pts + shift
                    packet.dts = dts + shift
                    packet.is_keyframe = keyframe
                    output.mux(packet)
                    count += 1
    return float(loops * loop_ticks * time_base), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=60.0, help="default: %(default)s")
    parser.add_argument("--repeat", type=int, default=3, help="default: %(default)s")
    parser.add_argument(
        "--output", type=Path, default=PROJECT_DIR / "benchmarks/results/finish.json"
    )
    arguments = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="veillee-finish-"))
    segment = folder / "segment.ts"
    raw = folder / "recording.ts"
    started = time.monotonic()
    record_segment(segment)
    recording_secs, packets = repeat_segment(segment, raw, arguments.minutes)
    generate_secs = time.monotonic() - started
    print(
        f"raw recording: {recording_secs:.0f} s, {packets} packets, "
        f"{raw.stat().st_size / 1e6:.0f} MB, made in {generate_secs:.0f} s",
        flush=True,
    )

    timings = []
    load_before = load_average()
    for run in range(arguments.repeat):
        video = folder / f"replay-{run}.mp4"
        poster = folder / f"poster-{run}.jpg"
        started = time.monotonic()
        finished = finish_media(raw, video, poster)
        timings.append(time.monotonic() - started)
        print(
            f"finish {run + 1}: {timings[-1]:.2f} s, duration {finished.duration_seconds:.0f} s",
            flush=True,
        )
        video.unlink()
        poster.unlink(missing_ok=True)

    results = {
        "command": "python benchmarks/recording_finish.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine_description(),
        "recording_seconds": round(recording_secs),
        "finish_seconds": round(statistics.median(timings), 2),
        "finish_seconds_runs": [round(value, 2) for value in timings],
        "raw_bytes": raw.stat().st_size,
        "packets": packets,
        "video": f"H.264 {WIDTH}x{HEIGHT} at {FRAME_RATE} fps, AAC mono {SAMPLE_RATE} Hz",
        "load_average_before": load_before,
    }
    raw.unlink()
    segment.unlink()
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
