"""Which database errors count as an outage (503, try again), and what their
messages show."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from core.database import Database, is_unavailable


def caused_by(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


CASES = [
    ("connection refused", ConnectionRefusedError(111, "Connect call failed"), True),
    ("connection reset", ConnectionResetError(104, "reset by peer"), True),
    ("timeout", TimeoutError(), True),
    ("postgresql starting up", asyncpg.exceptions.CannotConnectNowError("starting up"), True),
    ("postgresql shutting down", asyncpg.exceptions.AdminShutdownError("shutdown"), True),
    ("asyncpg connection closed", asyncpg.exceptions.InterfaceError("connection is closed"), True),
    (
        "sqlite locked",
        OperationalError("SELECT 1", {}, sqlite3.OperationalError("database is locked")),
        True,
    ),
    (
        "invalidated connection",
        DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        True,
    ),
    ("wrapped cause", caused_by(RuntimeError("wrapper"), ConnectionResetError()), True),
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
