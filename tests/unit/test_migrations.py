"""The Alembic migrations create the schema the models describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from core.database import Database
from migrations.models import load_metadata
from migrations.runner import MIGRATIONS_DIR, upgrade_to_head


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


# The first revision, before mentoring existed.
FIRST_REVISION = "a3acb7972aed"


def _upgrade_to_first_revision(connection: Connection) -> None:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, FIRST_REVISION)


def _head_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_migrations_upgrade_keeps_rows(database_url: str, tmp_path: Path) -> None:
    """Guards against a migration that fails on a database already in use, or loses
    its rows (users, and lives whose table later revisions alter), where creating the
    schema from nothing works."""
    database = Database(database_url)
    try:
        async with database.engine.begin() as connection:
            await connection.run_sync(_upgrade_to_first_revision)
            await connection.execute(
                text(
                    "INSERT INTO users (email, display_name, password_hash, role, time_zone,"
                    " created_at) VALUES ('claire@example.org', 'Claire', '-', 'teacher',"
                    " 'Europe/Paris', CURRENT_TIMESTAMP)"
                )
            )
            await connection.execute(
                text(
                    "INSERT INTO lives (host_id, title, description, starts_at,"
                    " duration_minutes, time_zone, state, started_at, created_at, sequence,"
                    " updated_at) SELECT id, 'Les cartes mentales en classe', '',"
                    " CURRENT_TIMESTAMP, 60, 'Europe/Paris', 'live', CURRENT_TIMESTAMP,"
                    " CURRENT_TIMESTAMP, 0, CURRENT_TIMESTAMP FROM users"
                )
            )
        async with database.engine.connect() as connection:
            assert "mentor_offers" not in await connection.run_sync(_tables)

        await upgrade_to_head(database, tmp_path)
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(_tables)
            differences = await connection.run_sync(_differences)
            revision = await connection.run_sync(_head_revision)
            names = (await connection.execute(text("SELECT display_name FROM users"))).all()
            lives = (
                await connection.execute(text("SELECT title, state, host_away_since FROM lives"))
            ).all()
    finally:
        await database.dispose()
    assert "mentor_offers" in tables
    assert differences == []
    assert revision == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert [name for (name,) in names] == ["Claire"]
    # a live on air before the upgrade keeps its state, with its host present
    assert [tuple(row) for row in lives] == [("Les cartes mentales en classe", "live", None)]
