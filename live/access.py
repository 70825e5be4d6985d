"""Who may take part in a live: its host and its registered attendees."""

from __future__ import annotations

import enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from live.models import Live, Registration, Removal


class LiveRole(enum.StrEnum):
    HOST = "host"
    ATTENDEE = "attendee"


async def live_role(session: AsyncSession, live: Live, user_id: int) -> LiveRole | None:
    """Return the user's role in `live`, or None when they are neither host nor registered."""
    if live.host_id == user_id:
        return LiveRole.HOST
    registration = await session.scalar(
        select(Registration.id).where(
            Registration.live_id == live.id, Registration.user_id == user_id
        )
    )
    return LiveRole.ATTENDEE if registration is not None else None


async def is_removed(session: AsyncSession, live_id: int, user_id: int) -> bool:
    """Return whether the host removed `user_id` from the live."""
    removal = await session.scalar(
        select(Removal.id).where(Removal.live_id == live_id, Removal.user_id == user_id)
    )
    return removal is not None
