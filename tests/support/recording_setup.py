"""Database rows, settings and MP4 inspection shared by the recording tests."""

from __future__ import annotations

import fractions
import struct
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame

import chat.models  # noqa: F401 - registers the chat tables that the replay reads
import recordings.models  # noqa: F401 - registers the recordings table
from accounts import service as accounts_service
from accounts.models import User
from core.database import Database, utc_now
from core.settings import Settings
from live.models import Live, LiveState
from migrations.runner import upgrade_to_head
from recordings.writer import TransportStreamWriter, write_started_at

TEST_SECRET_KEY = "test-secret-key-for-recordings"
TEST_NODE_NAME = "test-node"
# Length of the raw recording that write_synthetic_raw writes.
SYNTHETIC_RAW_SECS = 3.0
FRAME_RATE = 30
AUDIO_FRAME_SAMPLES = 960
MEMBER_PASSWORD = "correct horse battery"


def recording_settings(data_dir: Path, node_name: str = TEST_NODE_NAME) -> Settings:
    settings = Settings(data_dir=data_dir, secret_key=TEST_SECRET_KEY, node_name=node_name)
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def open_database(settings: Settings) -> Database:
    """Open the settings' SQLite file with the schema the server's migrations create,
    so that a server started later on the same file finds it at head."""
    database = Database(settings.resolved_database_url)
    await upgrade_to_head(database, settings.data_dir)
    return database


async def create_member(database: Database, email: str, name: str) -> User:
    async with database.session() as session:
        return await accounts_service.create_user(
            session, email=email, display_name=name, password=MEMBER_PASSWORD
        )


async def create_live(database: Database, host: User, state: LiveState = LiveState.LIVE) -> Live:
    now = utc_now()
    live = Live(
        host_id=host.id,
        title="Les cartes mentales en classe",
        starts_at=now - timedelta(minutes=5),
        duration_minutes=45,
        state=state,
        started_at=now if state is LiveState.LIVE else None,
    )
    async with database.session() as session:
        session.add(live)
        await session.commit()
    return live


def top_level_boxes(path: Path) -> list[str]:
    """Return the types of the top-level boxes of an MP4 file, in file order."""
    boxes: list[str] = []
    with path.open("rb") as file:
        while header := file.read(8):
            size, kind = struct.unpack(">I4s", header)
            boxes.append(kind.decode("latin-1"))
            if size == 1:
                (size,) = struct.unpack(">Q", file.read(8))
                file.seek(size - 16, 1)
            elif size == 0:
                break
            else:
                file.seek(size - 8, 1)
    return boxes


def write_synthetic_raw(raw_path: Path, started_at: datetime) -> None:
    """Write SYNTHETIC_RAW_SECS of a moving picture and silence as the recorder would,
    without waiting for the wall clock."""
    write_started_at(raw_path, started_at)
    writer = TransportStreamWriter(raw_path, has_video=True, has_audio=True)
    audio_frames_per_video_frame = 48_000 / AUDIO_FRAME_SAMPLES / FRAME_RATE
    audio_sent = 0
    for index in range(int(SYNTHETIC_RAW_SECS * FRAME_RATE)):
        picture = np.full((240 * 3 // 2, 320), 128, dtype=np.uint8)
        picture[:240, (index * 8) % 300 : (index * 8) % 300 + 16] = 235
        writer.write_video(index / FRAME_RATE, VideoFrame.from_ndarray(picture, format="yuv420p"))
        while audio_sent < (index + 1) * audio_frames_per_video_frame:
            audio_sent += 1
            sound = AudioFrame.from_ndarray(
                np.zeros((1, AUDIO_FRAME_SAMPLES), dtype=np.int16), format="s16", layout="mono"
            )
            sound.sample_rate = 48_000
            sound.time_base = fractions.Fraction(1, 48_000)
            writer.write_audio(audio_sent * AUDIO_FRAME_SAMPLES / 48_000, sound)
    writer.close()
