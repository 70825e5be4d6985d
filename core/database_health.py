"""The database check of /health: whether the database responds to a query and,
for SQLite, whether a write could start now."""

from __future__ import annotations

import enum
import logging
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from core.database import SQLITE_BUSY_TIMEOUT_SECS, Database

logger = logging.getLogger(__name__)

# How long the check waits for SQLite's write lock. Writes hold it for milliseconds,
# so a lock still held after this long belongs to another process (a backup, a
# sqlite3 shell) or to a write queue long enough to be worth reporting.
HEALTH_LOCK_TIMEOUT_SECS = 2.0


class DatabaseHealth(enum.StrEnum):
    """The `database` value of /health."""

    OK = "ok"
    # SQLite only: another connection held the write lock for the whole check.
    LOCKED = "locked"
    # SQLite only: the database file or its write-ahead log cannot be written.
    READ_ONLY = "read_only"
    # The database cannot be reached, or the check failed in another way.
    ERROR = "error"


async def check_database(database: Database) -> DatabaseHealth:
    """Run a trivial query and, on SQLite, check that the files are writable and
    that the write lock can be taken. Log why the check failed."""
    try:
        await database.ping()
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        logger.warning("health: database check failed: %s", error)
        return DatabaseHealth.ERROR
    if not database.is_sqlite:
        return DatabaseHealth.OK

    read_only = _read_only_files(database.url)
    if read_only:
        logger.warning(
            "health: database check failed: not writable: %s", ", ".join(map(str, read_only))
        )
        return DatabaseHealth.READ_ONLY
    try:
        await _take_write_lock(database)
    except Exception as error:  # noqa: BLE001 - any failure means not ready
        if "database is locked" in str(error):
            logger.warning(
                "health: database write lock still taken after %.1f s", HEALTH_LOCK_TIMEOUT_SECS
            )
            return DatabaseHealth.LOCKED
        logger.warning("health: database check failed: %s", error)
        return DatabaseHealth.ERROR
    return DatabaseHealth.OK


def _read_only_files(url: str) -> list[Path]:
    """Return the SQLite file and write-ahead log that this process may not write.

    os.access also reports the immutable attribute, which stops root too.
    """
    name = make_url(url).database
    if not name or name == ":memory:":
        return []
    database_file = Path(name)
    files = [database_file, database_file.with_name(database_file.name + "-wal")]
    return [path for path in files if path.exists() and not os.access(path, os.W_OK)]


async def _take_write_lock(database: Database) -> None:
    """Begin and roll back a write transaction, waiting at most
    HEALTH_LOCK_TIMEOUT_SECS for the lock; raise OperationalError when it stays taken."""
    async with database.engine.connect() as connection:
        await connection.exec_driver_sql(
            f"PRAGMA busy_timeout={int(HEALTH_LOCK_TIMEOUT_SECS * 1000)}"
        )
        try:
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
            await connection.exec_driver_sql("ROLLBACK")
        finally:
            # the connection goes back to the pool, where writers expect the usual wait
            await connection.exec_driver_sql(
                f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECS * 1000}"
            )
