"""Apply Alembic migrations at server start, once even when several processes start together."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import time
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from core.database import Database

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Any constant works: every Veillée process takes the same PostgreSQL advisory lock.
POSTGRES_MIGRATION_LOCK_ID = 7_242_001


def _alembic_config(connection: Connection) -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends: a second process waits, then finds nothing to do.
        connection.execute(text(f"SELECT pg_advisory_xact_lock({POSTGRES_MIGRATION_LOCK_ID})"))
    command.upgrade(_alembic_config(connection), "head")


def _lock(path: Path) -> TextIO:
    """Open and exclusively lock `path`, waiting for another process to release it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_file = path.open("w")
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    return lock_file


async def upgrade_to_head(database: Database, lock_dir: Path) -> None:
    """Bring the schema to the latest revision.

    SQLite has no advisory lock, and processes sharing a SQLite file share a
    machine, so a lock file in `lock_dir` serializes them instead.
    """
    started = time.monotonic()
    lock_file = None
    if database.is_sqlite:
        lock_file = await asyncio.to_thread(_lock, lock_dir / "migrations.lock")
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_upgrade)
    finally:
        if lock_file is not None:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()
    logger.info("database schema at head (%.2f s)", time.monotonic() - started)
