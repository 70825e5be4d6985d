"""A recording whose process is SIGKILLed, recovered at the next start of its node."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import av
import pytest
from sqlalchemy import select

from core.database import Database
from core.settings import Settings
from live.models import Live, LiveState
from recordings import service
from recordings.models import Recording, RecordingStatus
from recordings.writer import read_started_at
from tests.support.processes import PROJECT_DIR
from tests.support.recording_setup import (
    create_live,
    create_member,
    open_database,
    recording_settings,
)
from tests.support.synthetic_media import PICTURE_FRAME_RATE

# The child records until it has handed this many video frames to its recorder (4 s).
FRAMES_BEFORE_KILL = 120
# A killed recorder loses what its encoders and queue still held: x264's lookahead and
# the frames not yet encoded, well under this.
MAX_LOST_SECS = 3.0
CHILD_TIMEOUT_SECS = 60.0
FINISH_TIMEOUT_SECS = 60.0

# Records a moving picture and a tone into argv[2] for live argv[1], printing the
# number of video frames handed out every 30 frames, until it is killed.
CHILD_CODE = """
import asyncio
import sys
from pathlib import Path

from recordings.recorder import LiveRecorder
from tests.support.synthetic_media import MovingPictureTrack, ToneTrack


class ReportingPictureTrack(MovingPictureTrack):
    async def recv(self):
        frame = await super().recv()
        if self.frames_sent % 30 == 0:
            print(self.frames_sent, flush=True)
        return frame


async def main():
    recorder = LiveRecorder(int(sys.argv[1]), Path(sys.argv[2]))
    await recorder.start(ReportingPictureTrack(), ToneTrack())
    await asyncio.Event().wait()


asyncio.run(main())
"""

# The same, recording the packets of a live's shared encoder with a PacketRecorder.
PACKET_CHILD_CODE = """
import asyncio
import sys
from pathlib import Path

from recordings.recorder import PacketRecorder
from signaling.broadcast import LiveBroadcast
from signaling.tasks import TaskSupervisor
from tests.support.synthetic_media import MovingPictureTrack, ToneTrack


class ReportingPictureTrack(MovingPictureTrack):
    async def recv(self):
        frame = await super().recv()
        if self.frames_sent % 30 == 0:
            print(self.frames_sent, flush=True)
        return frame


async def main():
    broadcast = LiveBroadcast(int(sys.argv[1]), ReportingPictureTrack(), ToneTrack())
    broadcast.start(TaskSupervisor("child broadcast"))
    recorder = PacketRecorder(int(sys.argv[1]), Path(sys.argv[2]))
    await recorder.start(*broadcast.recorder_tracks())
    await asyncio.Event().wait()


asyncio.run(main())
"""


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return recording_settings(data_dir)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = await open_database(settings)
    yield db
    await service.wait_for_finishing(FINISH_TIMEOUT_SECS)
    await db.dispose()


@pytest.fixture
async def live(database: Database) -> Live:
    host = await create_member(database, "claire@example.org", "Claire")
    return await create_live(database, host, LiveState.LIVE)


async def record_until_killed(live_id: int, raw_path: Path, child_code: str = CHILD_CODE) -> int:
    """Record in a child process, SIGKILL it by PID after FRAMES_BEFORE_KILL video
    frames, and return the number of frames it reported."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        child_code,
        str(live_id),
        str(raw_path),
        cwd=PROJECT_DIR,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    frames = 0
    try:
        while frames < FRAMES_BEFORE_KILL:
            line = await asyncio.wait_for(child.stdout.readline(), CHILD_TIMEOUT_SECS)
            if not line:
                raise AssertionError(f"recording child exited with {await child.wait()}")
            frames = int(line)
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL
    return frames


async def load_recording(database: Database, recording_id: int) -> Recording:
    async with database.session() as session:
        recording = await session.get(Recording, recording_id)
    assert recording is not None
    return recording


async def load_live(database: Database, live_id: int) -> Live:
    async with database.session() as session:
        live = await session.get(Live, live_id)
    assert live is not None
    return live


@pytest.mark.parametrize("child_code", [CHILD_CODE, PACKET_CHILD_CODE], ids=["frames", "packets"])
async def test_killed_recording_recovers_into_replay(
    database: Database, settings: Settings, live: Live, child_code: str
) -> None:
    """Guards against losing a live's recording, or leaving its live shown as on air,
    when the process that recorded it is killed, whether it encoded the video itself
    or muxed the packets of the live's shared encoder."""
    recording_id, raw_path = await service.begin_recording(database, settings, live.id)
    frames = await record_until_killed(live.id, raw_path, child_code)
    recorded_secs = frames / PICTURE_FRAME_RATE
    assert raw_path.stat().st_size > 0
    started_at = read_started_at(raw_path)
    assert started_at is not None

    await service.recover_interrupted(database, settings)
    # the live is marked before recover_interrupted returns; finishing follows
    assert (await load_live(database, live.id)).state is LiveState.INTERRUPTED
    await service.wait_for_finishing(FINISH_TIMEOUT_SECS)

    recording = await load_recording(database, recording_id)
    assert recording.status is RecordingStatus.READY
    assert recording.started_at == started_at
    assert recording.duration_seconds is not None
    assert recording.duration_seconds >= recorded_secs - MAX_LOST_SECS
    assert recording.duration_seconds <= recorded_secs + 1.0
    assert recording.video_path is not None
    assert recording.poster_path is not None
    assert not raw_path.exists()

    video_path = settings.recordings_dir / recording.video_path
    with av.open(str(video_path)) as container:
        assert len(container.streams.video) == 1
        assert len(container.streams.audio) == 1
        decoded_frames = sum(1 for _ in container.decode(video=0))
    assert decoded_frames >= (recorded_secs - MAX_LOST_SECS) * PICTURE_FRAME_RATE


async def test_recover_leaves_other_nodes_recordings(
    database: Database, settings: Settings, live: Live
) -> None:
    """Guards against one process finishing, as if crashed, a recording that another
    process sharing the database is still writing."""
    other_settings = recording_settings(settings.data_dir, node_name="other-node")
    recording_id, _ = await service.begin_recording(database, other_settings, live.id)

    await service.recover_interrupted(database, settings)
    await service.wait_for_finishing(FINISH_TIMEOUT_SECS)

    assert (await load_recording(database, recording_id)).status is RecordingStatus.RECORDING
    assert (await load_live(database, live.id)).state is LiveState.LIVE


async def test_recover_fails_recording_without_frames(
    database: Database, settings: Settings, live: Live
) -> None:
    """Guards against a recording stuck in status recording forever when its process
    died before the first frame arrived."""
    statuses: list[tuple[RecordingStatus, str | None]] = []

    def listen(
        live_id: int, recording_id: int, status: RecordingStatus, reason: str | None
    ) -> None:
        statuses.append((status, reason))

    recording_id, _ = await service.begin_recording(database, settings, live.id)
    service.add_status_listener(listen)
    try:
        await service.recover_interrupted(database, settings)
        await service.wait_for_finishing(FINISH_TIMEOUT_SECS)
    finally:
        service.remove_status_listener(listen)

    recording = await load_recording(database, recording_id)
    assert recording.status is RecordingStatus.FAILED
    assert recording.failure_reason == service.EMPTY_REASON
    assert statuses == [
        (RecordingStatus.PROCESSING, None),
        (RecordingStatus.FAILED, service.EMPTY_REASON),
    ]
    assert (await load_live(database, live.id)).state is LiveState.INTERRUPTED


async def test_recover_finishes_processing_recording(
    database: Database, settings: Settings, live: Live
) -> None:
    """Guards against a recording left in processing by a shutdown that cancelled its
    finishing: the next start of the node finishes it."""
    recording_id, raw_path = await service.begin_recording(database, settings, live.id)
    await record_until_killed(live.id, raw_path)
    async with database.session() as session:
        recording = await session.get(Recording, recording_id)
        assert recording is not None
        recording.status = RecordingStatus.PROCESSING
        await session.commit()

    await service.recover_interrupted(database, settings)
    await service.wait_for_finishing(FINISH_TIMEOUT_SECS)

    assert (await load_recording(database, recording_id)).status is RecordingStatus.READY
    async with database.session() as session:
        unfinished = (
            await session.scalars(
                select(Recording.id).where(Recording.status != RecordingStatus.READY)
            )
        ).all()
    assert unfinished == []


async def test_fail_recording_stores_reason(
    database: Database, settings: Settings, live: Live
) -> None:
    statuses: list[tuple[RecordingStatus, str | None]] = []

    def listen(
        live_id: int, recording_id: int, status: RecordingStatus, reason: str | None
    ) -> None:
        statuses.append((status, reason))

    recording_id, _ = await service.begin_recording(database, settings, live.id)
    service.add_status_listener(listen)
    try:
        await service.fail_recording(database, recording_id, "La caméra a cessé d'envoyer.")
    finally:
        service.remove_status_listener(listen)

    recording = await load_recording(database, recording_id)
    assert recording.status is RecordingStatus.FAILED
    assert recording.failure_reason == "La caméra a cessé d'envoyer."
    assert recording.ended_at is not None
    assert statuses == [(RecordingStatus.FAILED, "La caméra a cessé d'envoyer.")]
    with pytest.raises(service.InvalidStatusChangeError, match="from failed to processing"):
        await service.finish_recording(database, settings, recording_id, None)
