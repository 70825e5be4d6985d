"""Which database errors count as an outage (503, try again), and what their
messages show."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core.database import Database, is_unavailable
from tests.support.processes import free_port


def caused_by(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


CASES = [
    # raised elsewhere than in the database client: an SMTP server, a browser
    ("connection refused elsewhere", ConnectionRefusedError(111, "Connect call failed"), False),
    ("connection reset elsewhere", ConnectionResetError(104, "reset by peer"), False),
    ("timeout elsewhere", TimeoutError(), False),
    ("postgresql starting up", asyncpg.exceptions.CannotConnectNowError("starting up"), True),
    ("postgresql shutting down", asyncpg.exceptions.AdminShutdownError("shutdown"), True),
    ("asyncpg connection closed", asyncpg.exceptions.InterfaceError("connection is closed"), True),
    (
        "sqlite locked",
        OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
        True,
    ),
    (
        "sqlite read-only",
        OperationalError(
            "INSERT", {}, sqlite3.OperationalError("attempt to write a readonly database")
        ),
        True,
    ),
    (
        "sqlite i/o",
        OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error")),
        True,
    ),
    (
        "sqlite disk full",
        OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full")),
        True,
    ),
    ("pool exhausted", PoolTimeoutError("QueuePool limit of size 5 overflow 10 reached"), True),
    (
        "invalidated connection",
        DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        True,
    ),
    (
        "wrapped cause",
        caused_by(RuntimeError("wrapper"), asyncpg.exceptions.ConnectionDoesNotExistError()),
        True,
    ),
    (
        "sqlite missing table",
        OperationalError("SELECT 1", {}, sqlite3.OperationalError("no such table: users")),
        False,
    ),
    ("integrity", IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE")), False),
    ("missing file", FileNotFoundError(2, "No such file"), False),
    ("value", ValueError("bad"), False),
]


@pytest.mark.parametrize(
    ("error", "expected"),
    [(error, expected) for _, error, expected in CASES],
    ids=[name for name, _, _ in CASES],
)
def test_is_unavailable_classifies(error: BaseException, expected: bool) -> None:
    assert is_unavailable(error) is expected


async def test_is_unavailable_connection_refused() -> None:
    """Guards against a PostgreSQL server that refuses connections, which reaches the
    caller as the socket's ConnectionRefusedError, counted as a bug (500)."""
    database = Database(f"postgresql+asyncpg://veillee@127.0.0.1:{free_port()}/veillee")
    try:
        with pytest.raises(OSError) as raised:
            await database.ping()
    finally:
        await database.dispose()
    assert is_unavailable(raised.value)


def test_is_unavailable_by_sqlite_code(tmp_path: Path) -> None:
    """Guards against errors raised by the driver, which carry SQLite's result code,
    being classified unlike the hand-built errors of CASES."""
    path = tmp_path / "read-only.sqlite3"
    with sqlite3.connect(path) as writer:
        writer.execute("CREATE TABLE notes (body TEXT)")
    writer.close()
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        with pytest.raises(sqlite3.OperationalError) as read_only:
            reader.execute("INSERT INTO notes VALUES ('x')")
        with pytest.raises(sqlite3.OperationalError) as missing_table:
            reader.execute("SELECT * FROM missing_table")
    finally:
        reader.close()
    assert read_only.value.sqlite_errorname.startswith("SQLITE_READONLY")
    assert is_unavailable(read_only.value)
    assert missing_table.value.sqlite_errorname == "SQLITE_ERROR"
    assert not is_unavailable(missing_table.value)


async def test_database_errors_hide_parameters(tmp_path: Path) -> None:
    """Guards against a failed statement whose error, logged by its caller, shows the
    text of a message or a password hash."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'errors.sqlite3'}")
    try:
        async with database.session() as session:
            with pytest.raises(SQLAlchemyError) as raised:
                await session.execute(
                    text("INSERT INTO missing_table VALUES (:body)"), {"body": "secret body"}
                )
    finally:
        await database.dispose()
    assert "missing_table" in str(raised.value)
    assert "secret body" not in str(raised.value)
