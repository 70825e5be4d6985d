"""LiveRecorder, PacketRecorder and finish_recording on real aiortc tracks, checked with
PyAV.

The synthetic tracks pace themselves in real time, so each recording here lasts as
long as its frame count gives (30 video frames or 50 audio frames per second). The
packet recorder records what a live's shared encoder makes of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from av.frame import Frame
from av.packet import Packet

from core.database import Database
from core.settings import Settings
from live.models import Live
from recordings import service
from recordings.models import Recording, RecordingStatus
from recordings.recorder import LiveRecorder, PacketRecorder, RecorderState, RecordingError
from recordings.writer import started_at_path
from signaling.broadcast import LiveBroadcast
from signaling.tasks import TaskSupervisor
from tests.support.recording_setup import (
    create_live,
    create_member,
    open_database,
    recording_settings,
    top_level_boxes,
)
from tests.support.synthetic_media import (
    PICTURE_FRAME_RATE,
    FailingVideoTrack,
    MovingPictureTrack,
    ToneTrack,
)

# Generous: the tracks need frame_target / 30 s; a loaded CI machine may need more.
RECORDING_TIMEOUT_SECS = 60.0
VIDEO_FRAME_TARGET = 120
# An H.264 access unit delimiter NAL unit after a 4-byte start code (primary_pic_type 7).
H264_ACCESS_UNIT_DELIMITER = b"\x00\x00\x00\x01\x09\xf0"


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return recording_settings(data_dir)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = await open_database(settings)
    yield db
    await db.dispose()


@pytest.fixture
async def live(database: Database) -> Live:
    host = await create_member(database, "claire@example.org", "Claire")
    return await create_live(database, host)


def recorder_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("recorder-")]


def recorder_tasks() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if task.get_name().startswith("recorder-") and not task.done()
    ]


@contextlib.asynccontextmanager
async def shared_encoder(
    video: MovingPictureTrack, audio: ToneTrack
) -> AsyncIterator[tuple[MediaStreamTrack, MediaStreamTrack]]:
    """Run a live's shared encoders on `video` and `audio`; yield the recorder's tracks:
    the high layer's H.264 packets and the decoded audio."""
    broadcast = LiveBroadcast(7, video, audio)
    tasks = TaskSupervisor("test broadcast")
    broadcast.start(tasks)
    try:
        yield broadcast.recorder_tracks()
    finally:
        video.stop()
        audio.stop()
        await tasks.close()
        await broadcast.close()


@pytest.mark.parametrize("recorder_class", [LiveRecorder, PacketRecorder])
async def test_recording_finishes_into_playable_mp4(
    database: Database, settings: Settings, live: Live, recorder_class: type[LiveRecorder]
) -> None:
    """Guards against a replay that lacks a stream, loses frames or drifts in length,
    keeps its index at the end (no playback while downloading), or has no poster; from
    decoded frames, and from the packets of the live's shared encoder."""
    statuses: list[tuple[int, RecordingStatus, str | None]] = []

    def listen(
        live_id: int, recording_id: int, status: RecordingStatus, reason: str | None
    ) -> None:
        statuses.append((live_id, status, reason))

    service.add_status_listener(listen)
    try:
        recording_id, raw_path = await service.begin_recording(database, settings, live.id)
        video = MovingPictureTrack(frame_target=VIDEO_FRAME_TARGET)
        audio = ToneTrack()
        recorder = recorder_class(live.id, raw_path)
        if recorder_class is PacketRecorder:
            async with shared_encoder(video, audio) as (packets, decoded_audio):
                await recorder.start(packets, decoded_audio)
                await asyncio.wait_for(video.target_reached.wait(), RECORDING_TIMEOUT_SECS)
                await recorder.stop()
        else:
            await recorder.start(video, audio)
            await asyncio.wait_for(video.target_reached.wait(), RECORDING_TIMEOUT_SECS)
            await recorder.stop()
        await service.finish_recording(database, settings, recording_id, recorder.started_at)
    finally:
        service.remove_status_listener(listen)

    sent_seconds = video.frames_sent / PICTURE_FRAME_RATE
    assert [status for _, status, _ in statuses] == [
        RecordingStatus.RECORDING,
        RecordingStatus.PROCESSING,
        RecordingStatus.READY,
    ]
    assert {live_id for live_id, _, _ in statuses} == {live.id}

    async with database.session() as session:
        recording = await session.get(Recording, recording_id)
    assert recording is not None
    assert recording.status is RecordingStatus.READY
    assert recording.failure_reason is None
    assert recording.started_at == recorder.started_at
    assert recording.duration_seconds is not None
    assert abs(recording.duration_seconds - sent_seconds) < 1.0
    assert recording.raw_path is None
    assert not raw_path.exists()
    assert not started_at_path(raw_path).exists()
    assert recording.video_path is not None
    assert recording.poster_path is not None

    video_path = settings.recordings_dir / recording.video_path
    boxes = top_level_boxes(video_path)
    assert "moov" in boxes
    assert "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat")

    with av.open(str(video_path)) as container:
        assert len(container.streams.video) == 1
        assert len(container.streams.audio) == 1
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.duration is not None
        assert abs(container.duration / 1_000_000 - sent_seconds) < 1.0
        keyframe_times = [
            float(packet.pts * packet.time_base)
            for packet in container.demux(container.streams.video[0])
            if packet.is_keyframe and packet.pts is not None
        ]
    with av.open(str(video_path)) as container:
        decoded_frames = sum(1 for _ in container.decode(video=0))
    with av.open(str(video_path)) as container:
        audio_samples = sum(frame.samples for frame in container.decode(audio=0))
    assert decoded_frames >= 2 * video.frames_sent / 3
    assert abs(audio_samples / 48_000 - sent_seconds) < 1.0
    assert len(keyframe_times) >= 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(keyframe_times)]
    assert max(gaps) <= 2.0 + 1e-6

    poster_path = settings.recordings_dir / recording.poster_path
    with av.open(str(poster_path)) as poster:
        assert poster.streams.video[0].codec_context.name == "mjpeg"
        picture = next(poster.decode(video=0))
    assert (picture.width, picture.height) == (video.width, video.height)


class PacketTap(MediaStreamTrack):
    """Hands on the packets of `source`, keeping a copy of the bytes of each."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source
        self.payloads: list[bytes] = []

    async def recv(self) -> Frame | Packet[Any]:
        packet = await self.source.recv()
        assert isinstance(packet, Packet)
        self.payloads.append(bytes(packet))
        return packet

    def stop(self) -> None:
        super().stop()
        self.source.stop()


def without_access_unit_delimiter(payload: bytes) -> bytes:
    """Drop the access unit delimiter that FFmpeg's MPEG-TS muxer puts before each H.264
    packet that lacks one."""
    if payload.startswith(H264_ACCESS_UNIT_DELIMITER):
        return payload[len(H264_ACCESS_UNIT_DELIMITER) :]
    return payload


async def test_packet_recording_holds_encoder_bytes(tmp_path: Path) -> None:
    """Guards against a recording that encodes the live's picture a second time instead
    of muxing the packets of the live's shared encoder."""
    video = MovingPictureTrack(frame_target=PICTURE_FRAME_RATE)
    audio = ToneTrack()
    raw_path = tmp_path / "raw.ts"
    recorder = PacketRecorder(1, raw_path)
    async with shared_encoder(video, audio) as (packets, decoded_audio):
        tap = PacketTap(packets)
        await recorder.start(tap, decoded_audio)
        await asyncio.wait_for(video.target_reached.wait(), RECORDING_TIMEOUT_SECS)
        await recorder.stop()

    with av.open(str(raw_path)) as container:
        recorded = [
            without_access_unit_delimiter(bytes(packet))
            for packet in container.demux(container.streams.video[0])
            if packet.size
        ]
    assert len(recorded) >= PICTURE_FRAME_RATE // 2
    assert len(recorded) <= len(tap.payloads)
    # the file holds, byte for byte and in order, packets the shared encoder made
    start = tap.payloads.index(recorded[0])
    assert recorded == tap.payloads[start : start + len(recorded)]


async def test_recorder_leaves_shared_frames_untouched(tmp_path: Path) -> None:
    """Guards against the encoder rewriting pts and time_base of frames that a relay
    also hands to every viewer's encoder."""
    video = MovingPictureTrack(frame_target=30, keep_frames=True)
    recorder = LiveRecorder(1, tmp_path / "raw.ts")
    await recorder.start(video, ToneTrack())
    await asyncio.wait_for(video.target_reached.wait(), RECORDING_TIMEOUT_SECS)
    await recorder.stop()

    assert len(video.kept) >= 30
    for frame, pts, time_base in video.kept:
        assert frame.pts == pts
        assert frame.time_base == time_base
        assert frame.pict_type != av.video.frame.PictureType.I


async def test_recorder_stop_ends_everything(tmp_path: Path) -> None:
    """Guards against a stopped recorder that keeps a relay subscription reading (its
    buffer then grows without bound), or leaves its tasks or thread running."""
    source_video = MovingPictureTrack(frame_target=20)
    source_audio = ToneTrack()
    relay = MediaRelay()
    video = relay.subscribe(source_video, buffered=True)
    audio = relay.subscribe(source_audio, buffered=True)
    recorder = LiveRecorder(2, tmp_path / "raw.ts")

    await recorder.start(video, audio)
    assert recorder.state.value == "recording"
    # encoding runs on the recorder's own thread, not on the event loop
    assert [thread.name for thread in recorder_threads()] == ["recorder-live-2"]
    assert len(recorder_tasks()) == 2
    await asyncio.wait_for(source_video.target_reached.wait(), RECORDING_TIMEOUT_SECS)
    await recorder.stop()

    assert recorder.state is RecorderState.STOPPED
    assert video.readyState == "ended"
    assert audio.readyState == "ended"
    assert recorder_tasks() == []
    assert recorder_threads() == []
    assert recorder.failure is None
    source_video.stop()
    source_audio.stop()


async def test_recorder_raises_failing_track_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against aiortc MediaRecorder's behaviour: a track task that dies silently
    and leaves a file without video that passes for a good recording."""
    video = FailingVideoTrack(fail_at=10)
    audio = ToneTrack()
    recorder = LiveRecorder(3, tmp_path / "raw.ts")

    with caplog.at_level(logging.ERROR, logger="recordings.recorder"):
        await recorder.start(video, audio)
        await asyncio.wait_for(recorder.failed.wait(), RECORDING_TIMEOUT_SECS)
        # the failure stops the whole recording at once, the audio track included
        assert audio.readyState == "ended"
        with pytest.raises(RecordingError) as raised:
            await recorder.stop()

    assert isinstance(raised.value.__cause__, RuntimeError)
    assert "synthetic camera failure" in str(raised.value)
    assert raised.value.reason.startswith("L'enregistrement")
    assert any(
        record.levelno == logging.ERROR and "recorder-live-3-video" in record.getMessage()
        for record in caplog.records
    )
    assert recorder_tasks() == []
    assert recorder_threads() == []
    # what was recorded before the failure is still a readable file
    with av.open(str(tmp_path / "raw.ts")) as container:
        assert len(container.streams.video) == 1


async def test_recorder_raises_writer_error(tmp_path: Path) -> None:
    """Guards against a writer thread whose error (here: a folder that does not exist)
    never reaches the owner of the recorder."""
    video = MovingPictureTrack()
    recorder = LiveRecorder(4, tmp_path / "missing-folder" / "raw.ts")
    await recorder.start(video, None)
    await asyncio.wait_for(recorder.failed.wait(), RECORDING_TIMEOUT_SECS)

    assert video.readyState == "ended"
    with pytest.raises(RecordingError) as raised:
        await recorder.stop()
    assert isinstance(raised.value.__cause__, OSError)
    assert recorder_threads() == []


async def test_audio_only_recording_has_no_poster(
    database: Database, settings: Settings, live: Live
) -> None:
    """Guards against failing a live whose host had no camera."""
    recording_id, raw_path = await service.begin_recording(database, settings, live.id)
    audio = ToneTrack(frame_target=100)
    recorder = LiveRecorder(live.id, raw_path)
    await recorder.start(None, audio)
    await asyncio.wait_for(audio.target_reached.wait(), RECORDING_TIMEOUT_SECS)
    await recorder.stop()
    await service.finish_recording(database, settings, recording_id, recorder.started_at)

    async with database.session() as session:
        recording = await session.get(Recording, recording_id)
    assert recording is not None
    assert recording.status is RecordingStatus.READY
    assert recording.poster_path is None
    assert recording.video_path is not None
    with av.open(str(settings.recordings_dir / recording.video_path)) as container:
        assert len(container.streams.video) == 0
        assert len(container.streams.audio) == 1


async def test_recorder_start_twice_raises(tmp_path: Path) -> None:
    recorder = LiveRecorder(5, tmp_path / "raw.ts")
    video = MovingPictureTrack()
    await recorder.start(video, None)
    try:
        with pytest.raises(RuntimeError, match="expects state new, not recording"):
            await recorder.start(video, None)
    finally:
        await recorder.stop()


async def test_recorder_rejects_track_of_wrong_kind(tmp_path: Path) -> None:
    recorder = LiveRecorder(6, tmp_path / "raw.ts")
    with pytest.raises(ValueError, match="has kind 'audio'"):
        await recorder.start(ToneTrack(), None)
    await recorder.stop()
    assert recorder.state is RecorderState.STOPPED
