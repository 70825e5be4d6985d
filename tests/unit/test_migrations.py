"""The Alembic migrations create the schema the models describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from core.database import Database
from migrations.models import load_metadata
from migrations.runner import upgrade_to_head


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, load_metadata()))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrations_match_models(database_url: str, tmp_path: Path) -> None:
    """Guards against a model change shipped without its migration."""
    database = Database(database_url)
    try:
        await upgrade_to_head(database, tmp_path)
        async with database.engine.connect() as connection:
            differences = await connection.run_sync(_differences)
            tables = await connection.run_sync(_tables)
    finally:
        await database.dispose()
    assert differences == []
    assert {"users", "lives", "chat_events", "recordings", "alembic_version"} <= tables


async def test_migrations_run_twice_harmlessly(database_url: str, tmp_path: Path) -> None:
    database = Database(database_url)
    try:
        await upgrade_to_head(database, tmp_path)
        await upgrade_to_head(database, tmp_path)
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(_tables)
    finally:
        await database.dispose()
    assert "lives" in tables
