"""Fixtures shared by every test: a real redis-server for the session, data folders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from core.database import Database
from migrations.models import load_metadata
from tests.support.fuzz import register_profiles
from tests.support.postgres import PostgresServer
from tests.support.processes import RedisServer

# Chosen here, before any test module is imported, because `@settings` reads the
# loaded profile when a test module is imported.
register_profiles()

# The fixture of the application that the HTTP property tests send requests to.
pytest_plugins = ["tests.support.fuzz_site"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole run, on a free loopback port."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may stop, start or restart
    without disturbing the session's."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's Redis URL, emptied before each test so channels start clean."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the whole run, started on first use."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of the test's own, which the test may stop and start."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend the service supports: a SQLite file, then a
    fresh database in the session's PostgreSQL cluster."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open Database with every table, on each backend."""
    load_metadata()
    db = Database(database_url)
    await db.create_schema()
    yield db
    await db.dispose()
