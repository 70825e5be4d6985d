"""Alembic environment: runs on a connection handed over by migrations/runner.py,
or, from the command line, on an engine built from DATABASE_URL."""

from __future__ import annotations

import asyncio
import os
from typing import Any, Literal

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from core.database import UTCDateTime
from migrations.models import load_metadata

target_metadata = load_metadata()


def render_item(kind: str, item: Any, autogen_context: Any) -> str | Literal[False]:
    """Write UTCDateTime columns as plain timezone-aware DateTime, so that migrations
    do not import application code that may change later."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_on_connection(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most column properties; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_from_url(url: str) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(run_on_connection)
    await engine.dispose()


shared_connection = context.config.attributes.get("connection")
if shared_connection is not None:
    run_on_connection(shared_connection)
elif context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
else:
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("set DATABASE_URL, e.g. sqlite+aiosqlite:///data/veillee.sqlite3")
    asyncio.run(run_from_url(database_url))
