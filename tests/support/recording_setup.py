"""Database rows, settings and MP4 inspection shared by the recording tests."""

from __future__ import annotations

import struct
from datetime import timedelta
from pathlib import Path

import chat.models  # noqa: F401 - registers the chat tables that the replay reads
import recordings.models  # noqa: F401 - registers the recordings table
from accounts import service as accounts_service
from accounts.models import User
from core.database import Database, utc_now
from core.settings import Settings
from live.models import Live, LiveState

TEST_SECRET_KEY = "test-secret-key-for-recordings"
TEST_NODE_NAME = "test-node"
MEMBER_PASSWORD = "correct horse battery"


def recording_settings(data_dir: Path, node_name: str = TEST_NODE_NAME) -> Settings:
    settings = Settings(data_dir=data_dir, secret_key=TEST_SECRET_KEY, node_name=node_name)
    settings.recordings_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def open_database(settings: Settings) -> Database:
    database = Database(settings.resolved_database_url)
    await database.create_schema()
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
