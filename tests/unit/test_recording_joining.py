"""join_parts, fed with parts written by TransportStreamWriter at chosen offsets, and the
claim that decides which process finishes a dead node's recording."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from core.database import Database
from core.settings import Settings
from live.lifecycle import transition
from live.models import Live, LiveState
from recordings.finishing import remux_to_mp4
from recordings.joining import IncompatiblePartsError, RecordingPart, join_parts
from recordings.models import Recording, RecordingStatus
from recordings.parts import JOINED_FILE_NAME, VIDEO_FILE_NAME, claim_recording, join_if_complete
from recordings.writer import TransportStreamWriter
from tests.support.chat_clients import create_live, create_people
from tests.unit.test_recording_writer import picture, write_stretch


def write_part(
    folder: Path, name: str, secs: float, width: int = 320, stopped_secs: float | None = None
) -> Path:
    """Write `secs` of video and audio from offset 0 into `<name>.mp4`, as a recorder
    stopped at `stopped_secs` (by default at its last frame) would."""
    raw = folder / f"{name}.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=True)
    if width != 320:
        # the writer keeps the size of its first picture
        writer.write_video(0.0, picture(0, width=width, height=width * 3 // 4))
    write_stretch(writer, 0.04 if width != 320 else 0.0, secs)
    writer.close(stopped_secs)
    video = folder / f"{name}.mp4"
    remux_to_mp4(raw, video)
    return video


def video_times(path: Path) -> list[float]:
    with av.open(str(path)) as container:
        return [float(frame.time or 0.0) for frame in container.decode(video=0)]


def test_join_parts_keeps_wall_clock_gap(tmp_path: Path) -> None:
    """Guards against a joined replay that drops a part, reorders the parts, or closes
    the gap between them, which would shift every later chat message."""
    first = write_part(tmp_path, "first", 2.0)
    second = write_part(tmp_path, "second", 3.0)
    joined = tmp_path / "joined.mp4"

    duration = join_parts([RecordingPart(first, 0.0), RecordingPart(second, 10.0)], joined)

    times = video_times(joined)
    assert all(earlier < later for earlier, later in itertools.pairwise(times))
    assert times[0] < 0.1
    # the first part ends before 2 s, and the second starts at 10 s
    assert max(time for time in times if time < 5.0) < 2.0
    assert min(time for time in times if time > 5.0) == pytest.approx(10.0, abs=0.1)
    assert duration == pytest.approx(13.0, abs=0.2)
    assert list(tmp_path.glob("*.partial")) == []


@pytest.mark.parametrize("second_width", [320, 640], ids=["same-size", "other-size"])
def test_join_parts_keeps_absence_at_part_end(tmp_path: Path, second_width: int) -> None:
    """Guards against a joined replay that cuts the time a host was away at the end of a
    part, which would end the video before the live did."""
    first = write_part(tmp_path, "first", 2.0, stopped_secs=4.0)
    second = write_part(tmp_path, "second", 2.0, width=second_width, stopped_secs=5.0)
    joined = tmp_path / "joined.mp4"

    duration = join_parts([RecordingPart(first, 0.0), RecordingPart(second, 10.0)], joined)

    assert duration == pytest.approx(15.0, abs=0.2)
    with av.open(str(joined)) as container:
        video = container.streams.video[0]
        assert video.duration is not None and video.time_base is not None
        video_end = float(((video.start_time or 0) + video.duration) * video.time_base)
    # the second part's last picture stays on screen until the end
    assert video_end == pytest.approx(15.0, abs=0.2)
    times = video_times(joined)
    assert max(time for time in times if time < 5.0) < 2.0
    assert min(time for time in times if time > 5.0) == pytest.approx(10.0, abs=0.1)


def test_join_parts_overlap_keeps_order(tmp_path: Path) -> None:
    """Guards against timestamps that go backwards when a part's clock overlaps the
    previous part (two nodes' clocks disagree), which the MP4 muxer would reject."""
    first = write_part(tmp_path, "first", 2.0)
    second = write_part(tmp_path, "second", 2.0)
    joined = tmp_path / "joined.mp4"

    join_parts([RecordingPart(first, 0.0), RecordingPart(second, 1.0)], joined)

    # the second part moves after the first, with every frame of both
    times = video_times(joined)
    assert all(earlier < later for earlier, later in itertools.pairwise(times))
    assert len(times) == len(video_times(first)) + len(video_times(second))
    assert times[-1] == pytest.approx(4.0, abs=0.1)


def test_join_parts_conforms_other_picture_size(tmp_path: Path) -> None:
    """Guards against a joined video whose second part decodes with the first part's
    H.264 parameters, which garbles its picture: a browser's camera may start a resumed
    live at another size."""
    first = write_part(tmp_path, "first", 1.0)
    second = write_part(tmp_path, "second", 1.0, width=640)
    joined = tmp_path / "joined.mp4"

    join_parts([RecordingPart(first, 0.0), RecordingPart(second, 5.0)], joined)

    with av.open(str(joined)) as container:
        pictures = [(frame.time, frame.width, frame.height) for frame in container.decode(video=0)]
    assert {(width, height) for _, width, height in pictures} == {(320, 240)}
    assert len(pictures) == len(video_times(first)) + len(video_times(second))
    assert max(time or 0.0 for time, _, _ in pictures) == pytest.approx(6.0, abs=0.1)
    assert sorted(path.name for path in tmp_path.iterdir() if "joined" in path.name) == [
        "joined.mp4"
    ]


def test_join_parts_rejects_other_streams(tmp_path: Path) -> None:
    """Guards against a joined video that mixes a part without sound into an audio
    stream, which no re-encoding can fill."""
    first = write_part(tmp_path, "first", 1.0)
    raw = tmp_path / "silent.ts"
    writer = TransportStreamWriter(raw, has_video=True, has_audio=False)
    write_stretch(writer, 0.0, 1.0, audio=False)
    writer.close()
    silent = tmp_path / "silent.mp4"
    remux_to_mp4(raw, silent)
    joined = tmp_path / "joined.mp4"

    with pytest.raises(IncompatiblePartsError):
        join_parts([RecordingPart(first, 0.0), RecordingPart(silent, 5.0)], joined)
    assert not joined.exists()
    assert list(tmp_path.glob("*.partial")) == []


async def test_claim_recording_once(database: Database) -> None:
    """Guards against a dead node's recording finished twice, by a survivor and by the
    node's own restart, which would race on the same files."""
    host, attendee = await create_people(database, ["hote", "participante"])
    live_id = await create_live(database, host.id, [attendee.id])
    async with database.session() as session:
        recording = Recording(live_id=live_id, node_name="node-a")
        session.add(recording)
        await session.commit()
        recording_id = recording.id

    survivor = await claim_recording(database, recording_id, "node-a", "node-b")
    restarted = await claim_recording(database, recording_id, "node-a", "node-a")

    assert survivor is True
    assert restarted is False
    async with database.session() as session:
        claimed = await session.get(Recording, recording_id)
        assert claimed is not None
        assert claimed.node_name == "node-b"
        assert claimed.status is RecordingStatus.PROCESSING


async def test_join_if_complete_updates_last_recording(database: Database, tmp_path: Path) -> None:
    """Guards against a resumed live whose replay shows only its last part, or whose
    chat offsets are measured from the start of that part."""
    settings = Settings(data_dir=tmp_path, secret_key="test-secret")
    host, attendee = await create_people(database, ["hote", "participante"])
    live_id = await create_live(database, host.id, [attendee.id])
    first_start = datetime(2026, 10, 25, 19, 30, tzinfo=UTC)
    starts = [first_start, first_start + timedelta(seconds=8)]
    recording_ids = []
    async with database.session() as session:
        for started_at in starts:
            recording = Recording(
                live_id=live_id,
                node_name="node-a",
                status=RecordingStatus.READY,
                started_at=started_at,
                duration_seconds=2.0,
            )
            session.add(recording)
            await session.flush()
            recording.video_path = f"{recording.id}/{VIDEO_FILE_NAME}"
            recording_ids.append(recording.id)
        await session.commit()
    for recording_id in recording_ids:
        folder = settings.recordings_dir / str(recording_id)
        folder.mkdir(parents=True)
        write_part(folder, "video", 2.0)

    # a live still on air is not joined yet
    await join_if_complete(database, settings, live_id)
    async with database.session() as session:
        last = await session.get(Recording, recording_ids[-1])
        assert last is not None
        assert last.video_path == f"{recording_ids[-1]}/{VIDEO_FILE_NAME}"
        live = await session.get(Live, live_id)
        assert live is not None
        await transition(session, live, LiveState.LIVE)
        await transition(session, live, LiveState.ENDED)

    await join_if_complete(database, settings, live_id)

    async with database.session() as session:
        last = await session.get(Recording, recording_ids[-1])
        assert last is not None
        assert last.video_path == f"{recording_ids[-1]}/{JOINED_FILE_NAME}"
        assert last.started_at == first_start
        assert last.duration_seconds == pytest.approx(10.0, abs=0.2)
        assert last.ended_at is not None
        assert (last.ended_at - first_start).total_seconds() == pytest.approx(10.0, abs=0.2)
    times = video_times(settings.recordings_dir / last.video_path)
    assert min(time for time in times if time > 5.0) == pytest.approx(8.0, abs=0.1)
