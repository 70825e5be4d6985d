"""Async SQLAlchemy engine and sessions; SQLite in WAL mode by default, PostgreSQL by URL."""

from __future__ import annotations

import logging
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy import DateTime, MetaData, TypeDecorator, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

logger = logging.getLogger(__name__)

# How long a SQLite writer waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_SECS = 30

# Errors of the PostgreSQL driver when the server cannot be reached or is not accepting
# connections: connection failures (class 08), shutdown and start-up (class 57P).
_DRIVER_UNAVAILABLE_ERRORS = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InterfaceError,
)
# Socket errors for a refused or reset connection, a timeout or a name that does not
# resolve. They mean an outage only when raised by the database client, since other
# clients (SMTP, a browser that went away) raise them too.
_SOCKET_UNAVAILABLE_ERRORS = (ConnectionError, TimeoutError, socket.gaierror)
# Folders of the packages whose frames mark a socket error as the database's.
_DATABASE_CLIENT_FOLDERS = ("/sqlalchemy/", "/asyncpg/", "/aiosqlite/")
# Every exception class that `is_unavailable` may accept, for handlers keyed by class.
UNAVAILABLE_ERROR_TYPES: tuple[type[BaseException], ...] = (
    SQLAlchemyError,
    sqlite3.Error,
    *_DRIVER_UNAVAILABLE_ERRORS,
    *_SOCKET_UNAVAILABLE_ERRORS,
)
# SQLite's result codes, and the starts of their messages, for a database file that
# another process keeps locked past the busy timeout, that cannot be opened, written
# (read-only, immutable, on a file system remounted read-only) or grown (disk full).
# An extended code such as SQLITE_READONLY_DBMOVED starts with its primary code.
_SQLITE_UNAVAILABLE_CODES = (
    "SQLITE_BUSY",
    "SQLITE_CANTOPEN",
    "SQLITE_READONLY",
    "SQLITE_IOERR",
    "SQLITE_FULL",
)
_SQLITE_UNAVAILABLE_MESSAGES = (
    "database is locked",
    "unable to open database file",
    "attempt to write a readonly database",
    "disk I/O error",
    "database or disk is full",
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store timezone-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Database:
    """One engine and session factory per server process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_SECS
        self.engine: AsyncEngine = create_async_engine(
            url,
            connect_args=connect_args,
            # A pooled connection may have died while idle (a database restart or
            # failover): test it at checkout and reconnect, rather than fail a request.
            pool_pre_ping=not self.is_sqlite,
            # Statement parameters contain message texts and password hashes, which
            # must stay out of the logs that print these errors.
            hide_parameters=True,
        )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _configure_sqlite)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def create_schema(self) -> None:
        """Create every table that does not exist yet (development and tests)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)

    async def ping(self) -> None:
        """Run a trivial query; raise if the database cannot be reached."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()


def is_unavailable(error: BaseException) -> bool:
    """Return whether `error` means the database cannot be reached right now, so that
    the same request may succeed later, rather than a bug or a rejected statement.

    Follows SQLAlchemy's wrapped driver error (`orig`) and explicit causes.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        # every pooled connection stayed taken for the pool timeout, for example by
        # writers waiting on a locked SQLite file
        if isinstance(current, PoolTimeoutError):
            return True
        if isinstance(current, _DRIVER_UNAVAILABLE_ERRORS):
            return True
        if isinstance(current, _SOCKET_UNAVAILABLE_ERRORS) and _raised_by_database_client(current):
            return True
        if isinstance(current, sqlite3.OperationalError) and _is_sqlite_unavailable(current):
            return True
        orig = current.orig if isinstance(current, DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def _is_sqlite_unavailable(error: sqlite3.OperationalError) -> bool:
    # The driver sets sqlite_errorname (Python 3.11+) on the errors it raises; an
    # error built by hand has only its message.
    code = getattr(error, "sqlite_errorname", None)
    if isinstance(code, str):
        return code.startswith(_SQLITE_UNAVAILABLE_CODES)
    return str(error).startswith(_SQLITE_UNAVAILABLE_MESSAGES)


def _raised_by_database_client(error: BaseException) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        filename = traceback.tb_frame.f_code.co_filename.replace("\\", "/")
        if any(folder in filename for folder in _DATABASE_CLIENT_FOLDERS):
            return True
        traceback = traceback.tb_next
    return False


def _configure_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    # WAL lets several server processes on one machine read while one writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode, NORMAL syncs the log at checkpoints instead of at every commit.
    # The database stays consistent. A power failure or operating system crash may
    # lose the last commits, while a crash of the server process loses none. An fsync
    # per commit took 10 to 15 ms on the benchmark machine and, since writers wait
    # for each other, capped the chat at one message per fsync (docs/benchmarks.md).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECS * 1000}")
    cursor.close()
