"""Helpers of the fault tests: waiting for /health to change, and reading back what a
channel stored, to compare with what each client received."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import func, select

from chat.models import ChannelCounter, ChannelEvent
from core.database import Database
from live.models import Live

# A Redis or PostgreSQL restart takes a few seconds on a loaded machine, and the
# broker's reconnection backoff adds at most a few more. The wait ends as soon as
# the status changes.
HEALTH_TIMEOUT_SECS = 60.0
HEALTH_POLL_SECS = 0.1
# The French sentence of the page that a request gets while the database is away.
UNAVAILABLE_TEXT = "Le service est momentanément indisponible"


async def wait_for_health(base_url: str, status: str) -> dict[str, Any]:
    """Poll `base_url`/health until its `status` is `status`; return the last body."""
    body: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=10.0) as client:
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_SECS):
                while True:
                    try:
                        response = await client.get(f"{base_url}/health")
                        body = response.json()
                    except httpx.HTTPError:
                        body = {}
                    if body.get("status") == status:
                        return body
                    await asyncio.sleep(HEALTH_POLL_SECS)
        except TimeoutError:
            raise AssertionError(
                f"{base_url}/health never reported {status!r} within "
                f"{HEALTH_TIMEOUT_SECS} s; last body: {body}"
            ) from None


async def stored_messages(database: Database, channel: str) -> list[tuple[int, str, str]]:
    """Return the channel's stored events as (seq, client_id, text), in seq order."""
    async with database.session() as session:
        rows = await session.execute(
            select(ChannelEvent.seq, ChannelEvent.client_id, ChannelEvent.text)
            .where(ChannelEvent.channel == channel)
            .order_by(ChannelEvent.seq)
        )
        return [(seq, client_id or "", text) for seq, client_id, text in rows]


async def stored_last_seq(database: Database, channel: str) -> int:
    """Return the channel's counter row: the last seq handed out, 0 without a row."""
    async with database.session() as session:
        value = await session.scalar(
            select(ChannelCounter.last_seq).where(ChannelCounter.channel == channel)
        )
        return value or 0


async def count_lives(database: Database) -> int:
    async with database.session() as session:
        return await session.scalar(select(func.count()).select_from(Live)) or 0


def received_messages(events: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """Return `event` frames as (seq, client_id, text), comparable with stored_messages."""
    return [(event["seq"], event.get("client_id") or "", event["text"]) for event in events]
