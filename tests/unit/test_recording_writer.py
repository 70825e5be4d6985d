"""TransportStreamWriter and the finishing steps, fed with frames at chosen offsets.

No real time passes here: each frame comes with the wall-clock offset the recorder
would have stamped, so gaps, frame rates and size changes are exact.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame

from recordings.finishing import EmptyRecordingError, finish_media, remux_to_mp4
from recordings.writer import TransportStreamWriter
from signaling.encoding import LayerEncoder, Quality, VideoLayer

AUDIO_FRAME_SAMPLES = 960
AUDIO_FRAME_SECS = AUDIO_FRAME_SAMPLES / 48_000


def picture(index: int, width: int = 320, height: int = 240) -> VideoFrame:
    array = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    left = (index * 8) % (width - 16)
    array[:height, left : left + 16] = 235
    return VideoFrame.from_ndarray(array, format="yuv420p")


def sound() -> AudioFrame:
    frame = AudioFrame.from_ndarray(
        np.full((1, AUDIO_FRAME_SAMPLES), 1000, dtype=np.int16), format="s16", layout="mono"
    )
    frame.sample_rate = 48_000
    return frame


def write_stretch(
    writer: TransportStreamWriter,
    start_secs: float,
    end_secs: float,
    frame_rate: float = 30,
    audio: bool = True,
) -> None:
    """Write video frames at `frame_rate` and 20 ms audio frames between two offsets,
    interleaved by time as the recorder's queue delivers them."""
    video_times = np.arange(start_secs, end_secs, 1 / frame_rate)
    audio_times = np.arange(start_secs + AUDIO_FRAME_SECS, end_secs, AUDIO_FRAME_SECS)
    events = [(time, "video") for time in video_times]
    if audio:
        events += [(time, "audio") for time in audio_times]
    for index, (time, kind) in enumerate(sorted(events)):
        if kind == "video":
            writer.write_video(float(time), picture(index))
        else:
            writer.write_audio(float(time), sound())


def stream_seconds(path: Path, kind: str) -> float:
    """Decoded length of the first stream of `kind`, from its first frame's start to its
    last frame's end (audio) or start (video)."""
    with av.open(str(path)) as container:
        if kind == "audio":
            sounds = list(container.decode(audio=0))
            first, last = sounds[0].time, sounds[-1].time
            assert first is not None and last is not None
            return last + sounds[-1].samples / sounds[-1].sample_rate - first
        pictures = list(container.decode(video=0))
        first, last = pictures[0].time, pictures[-1].time
        assert first is not None and last is not None
        return last - first


def keyframe_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [
            float(packet.pts * packet.time_base)
            for packet in container.demux(container.streams.video[0])
            if packet.is_keyframe and packet.pts is not None
        ]


def test_writer_timestamps_follow_wall_clock(tmp_path: Path) -> None:
    """Guards against a replay that is shorter than the live when frames were dropped
    (timestamps counted in frames instead of taken from the clock)."""
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True)
    write_stretch(writer, 0.0, 1.0)
    # three seconds without any frame, as when the host's connection stalls
    write_stretch(writer, 4.0, 5.0)
    writer.close()

    video = tmp_path / "video.mp4"
    remux_to_mp4(raw, video)

    assert abs(stream_seconds(video, "video") - 5.0) < 0.1
    # the audio gap is filled with silence, so audio stays in step with the video
    assert abs(stream_seconds(video, "audio") - 5.0) < 0.1
    assert writer.stats.silence_samples >= 2.9 * 48_000


def stream_end_secs(path: Path, kind: str) -> float:
    """Return when the first stream of `kind` ends, from the container's stream header."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        assert stream.duration is not None and stream.time_base is not None
        return float(((stream.start_time or 0) + stream.duration) * stream.time_base)


def write_packet_stretch(writer: TransportStreamWriter, end_secs: float) -> None:
    """Write 30 H.264 packets a second from the shared encoder and 20 ms audio frames,
    from 0 to `end_secs`."""
    encoder = LayerEncoder(VideoLayer(Quality.HIGH, 320, 240, 300_000))
    for index in range(round(end_secs * 30)):
        image = picture(index)
        image.pts = index * 3_000
        for packet in encoder.encode(image, index % 30 == 0):
            writer.write_video_packet(index / 30, packet)
        if index % 3 == 2:
            for _ in range(5):
                writer.write_audio((index + 1) / 30, sound())


@pytest.mark.parametrize("video_packets", [False, True], ids=["frames", "packets"])
def test_writer_lasts_until_stop(tmp_path: Path, video_packets: bool) -> None:
    """Guards against a replay that ends at the host's last frame when the host left
    and the live ended later: the time away must stay as a still picture and silence."""
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True, video_packets=video_packets)
    if video_packets:
        write_packet_stretch(writer, 2.0)
    else:
        write_stretch(writer, 0.0, 2.0)
    # the host went away at 2 s, and recording stopped at 6 s
    writer.close(end_offset_secs=6.0)

    media = finish_media(raw, tmp_path / "video.mp4", tmp_path / "poster.jpg")

    assert abs(media.duration_seconds - 6.0) < 0.1
    assert abs(stream_end_secs(tmp_path / "video.mp4", "audio") - 6.0) < 0.1
    # the last picture stays on screen until the end
    assert abs(stream_end_secs(tmp_path / "video.mp4", "video") - 6.0) < 0.1
    assert writer.stats.silence_samples >= 3.9 * 48_000
    assert abs(stream_seconds(tmp_path / "video.mp4", "video") - 2.0) < 0.1


def test_writer_early_stop_adds_nothing(tmp_path: Path) -> None:
    """Guards against silence added past the last frame, or a recording cut short, when
    the stop offset is not after the last frame."""
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True)
    write_stretch(writer, 0.0, 2.0)
    writer.close(end_offset_secs=1.0)

    video = tmp_path / "video.mp4"
    remux_to_mp4(raw, video)

    assert writer.stats.silence_samples == 0
    assert abs(stream_seconds(video, "audio") - 2.0) < 0.1
    assert abs(stream_end_secs(video, "video") - 2.0) < 0.1


def test_writer_drops_audio_running_ahead_of_clock(tmp_path: Path) -> None:
    """Guards against audio drifting ahead of the video when a burst of audio frames
    arrives at once."""
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=False, has_audio=True)
    for index in range(50):
        writer.write_audio((index + 1) * AUDIO_FRAME_SECS, sound())
    # two seconds of audio arriving within the same instant
    for _ in range(100):
        writer.write_audio(1.0 + AUDIO_FRAME_SECS, sound())
    writer.close()

    assert writer.stats.dropped_audio_samples > 0
    assert writer.stats.audio_samples / 48_000 < 1.0 + 0.5


@pytest.mark.parametrize("frame_rate", [5, 12, 30, 60])
def test_writer_keyframe_every_two_seconds(tmp_path: Path, frame_rate: int) -> None:
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=False)
    write_stretch(writer, 0.0, 9.0, frame_rate=frame_rate, audio=False)
    writer.close()

    times = keyframe_times(raw)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(times) >= 4
    assert max(gaps) <= 2.0 + 1e-6


def test_writer_keeps_size_on_resolution_change(tmp_path: Path) -> None:
    """Guards against an encoder error when the browser lowers its camera resolution."""
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=False)
    for index in range(30):
        writer.write_video(index / 30, picture(index, 640, 360))
    for index in range(30, 60):
        writer.write_video(index / 30, picture(index, 320, 180))
    writer.close()

    with av.open(str(raw)) as container:
        sizes = {(frame.width, frame.height) for frame in container.decode(video=0)}
    assert sizes == {(640, 360)}
    assert writer.stats.video_frames == 60


def test_writer_keeps_audio_before_first_picture(tmp_path: Path) -> None:
    """Guards against losing the first words when the microphone starts before the
    camera: the container can only open once the picture size is known."""
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True)
    for index in range(25):
        writer.write_audio((index + 1) * AUDIO_FRAME_SECS, sound())
    assert not raw.exists()
    write_stretch(writer, 0.5, 2.0)
    writer.close()

    video = tmp_path / "video.mp4"
    remux_to_mp4(raw, video)
    assert abs(stream_seconds(video, "audio") - 2.0) < 0.1
    with av.open(str(video)) as container:
        first_picture = next(container.decode(video=0))
    assert first_picture.time is not None
    assert abs(first_picture.time - 0.5) < 0.1


@pytest.mark.parametrize(
    ("video", "audio", "expected_streams"),
    [
        pytest.param(False, True, ["audio"], id="camera-never-started"),
        pytest.param(True, False, ["video"], id="microphone-never-started"),
    ],
)
def test_stream_without_frames_is_left_out(
    tmp_path: Path, video: bool, audio: bool, expected_streams: list[str]
) -> None:
    """Guards against a failed replay when the host's camera or microphone never sent a
    frame: the MP4 muxer rejects a stream whose picture size or sample rate is unknown."""
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True)
    if video:
        write_stretch(writer, 0.0, 3.0, audio=False)
    if audio:
        for index in range(150):
            writer.write_audio((index + 1) * AUDIO_FRAME_SECS, sound())
    writer.close()

    media = finish_media(raw, tmp_path / "video.mp4", tmp_path / "poster.jpg")

    assert abs(media.duration_seconds - 3.0) < 0.2
    assert media.has_poster is video
    with av.open(str(tmp_path / "video.mp4")) as container:
        assert [stream.type for stream in container.streams] == expected_streams


def test_writer_without_frames_creates_no_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True)
    writer.close()
    assert not raw.exists()


def test_truncated_raw_file_finishes(tmp_path: Path) -> None:
    """Guards against losing a whole recording because its last packet was cut in the
    middle by a crash."""
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True)
    write_stretch(writer, 0.0, 6.0)
    writer.close()
    data = raw.read_bytes()
    # cut inside a 188-byte MPEG-TS packet, past the middle of the file
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: len(data) * 6 // 10 + 100])

    media = finish_media(cut, tmp_path / "video.mp4", tmp_path / "poster.jpg")

    assert 2.5 < media.duration_seconds < 4.5
    assert media.has_poster
    with av.open(str(tmp_path / "video.mp4")) as container:
        assert len(container.streams.video) == 1
        assert len(container.streams.audio) == 1
        assert sum(1 for _ in container.decode(video=0)) > 60


def test_poster_of_very_short_recording(tmp_path: Path) -> None:
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=False)
    write_stretch(writer, 0.0, 0.5, audio=False)
    writer.close()

    media = finish_media(raw, tmp_path / "video.mp4", tmp_path / "poster.jpg")

    assert media.has_poster
    with av.open(str(tmp_path / "poster.jpg")) as poster:
        image = next(poster.decode(video=0))
    assert (image.width, image.height) == (320, 240)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\x47" + bytes(150), id="partial-packet"),
        pytest.param(b"not a recording" * 100, id="garbage"),
    ],
)
def test_unreadable_raw_file_is_empty_recording(tmp_path: Path, content: bytes) -> None:
    raw = tmp_path / "raw.ts"
    raw.write_bytes(content)
    check_empty_recording(tmp_path, raw)


def test_raw_file_without_packets_is_empty(tmp_path: Path) -> None:
    """Guards against a ready replay without any picture or sound, or a half-written
    MP4 left behind, when the process died right after the file was opened."""
    whole = tmp_path / "whole.ts"
    writer = TransportStreamWriter(whole, has_video=True, has_audio=True)
    write_stretch(writer, 0.0, 1.0)
    writer.close()
    raw = tmp_path / "raw.ts"
    # the first packets of the file are its stream tables (PAT, PMT)
    raw.write_bytes(whole.read_bytes()[: 188 * 3])
    check_empty_recording(tmp_path, raw)


def check_empty_recording(tmp_path: Path, raw: Path) -> None:
    with pytest.raises(EmptyRecordingError):
        finish_media(raw, tmp_path / "video.mp4", tmp_path / "poster.jpg")
    assert not (tmp_path / "video.mp4").exists()
    assert list(tmp_path.glob("*.partial")) == []


def test_writer_muxes_shared_encoder_packets(tmp_path: Path) -> None:
    """Guards against a recording of the shared encoder's packets that re-encodes them,
    loses their keyframes, or takes its timestamps from the encoder instead of the
    clock."""
    encoder = LayerEncoder(VideoLayer(Quality.HIGH, 320, 240, 300_000))
    raw = tmp_path / "raw.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True, video_packets=True)
    with pytest.raises(RuntimeError, match="expected video packets"):
        writer.write_video(0.0, picture(0))
    sent_keyframes = []
    for index in range(90):
        offset = index / 30 + (2.0 if index >= 60 else 0.0)
        keyframe = index % 30 == 0
        image = picture(index)
        image.pts = index * 3_000
        for packet in encoder.encode(image, keyframe):
            writer.write_video_packet(offset, packet)
            if packet.is_keyframe:
                sent_keyframes.append(round(offset, 3))
        writer.write_audio(offset, sound())
    writer.close()

    assert writer.stats.video_frames == 90
    # the muxer shifts every timestamp by the same start delay
    recorded = keyframe_times(raw)
    assert [round(time - recorded[0], 3) for time in recorded] == sent_keyframes
    video = tmp_path / "video.mp4"
    remux_to_mp4(raw, video)
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 240)
    # two seconds without any packet stay two seconds in the replay
    assert abs(stream_seconds(video, "video") - (89 / 30 + 2.0)) < 0.1
