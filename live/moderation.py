"""Removing a participant from a live: the host takes their registration away for good,
and their chat and signaling sockets close at once, in every server process.

The live package stores the removal; the sockets close through the revocation bus
(chat.revocations), whose listeners belong to chat and signaling.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chat.models import ModerationAction
from chat.moderation import record_action
from live.access import is_removed
from live.models import Live, Registration, Removal
from live.service import LiveError

logger = logging.getLogger(__name__)


async def remove_participant(
    session: AsyncSession, live_id: int, user_id: int, host_id: int, now: datetime
) -> Live:
    """Remove `user_id` from the live hosted by `host_id` and commit; return the live.

    The person loses their registration and may not register again. Removing someone
    already removed changes nothing. Raise LiveError when the live does not exist, when
    `host_id` does not host it, or when `user_id` is the host or not registered.
    """
    live = await session.get(Live, live_id)
    if live is None:
        raise LiveError("live_not_found", "Ce live n'existe pas.")
    if live.host_id != host_id:
        raise LiveError(
            "not_host", "Seule la personne qui anime ce live peut en retirer quelqu'un."
        )
    if user_id == host_id:
        raise LiveError(
            "cannot_remove_host", "Vous animez ce live : vous ne pouvez pas vous en retirer."
        )
    if await is_removed(session, live_id, user_id):
        return live
    registration = await session.scalar(
        select(Registration.id).where(
            Registration.live_id == live_id, Registration.user_id == user_id
        )
    )
    if registration is None:
        raise LiveError("not_participant", "Cette personne n'est pas inscrite à ce live.")

    await session.execute(delete(Registration).where(Registration.id == registration))
    session.add(Removal(live_id=live_id, user_id=user_id, removed_by_id=host_id, created_at=now))
    record_action(session, live.channel, ModerationAction.REMOVE, host_id, now, target_id=user_id)
    try:
        await session.commit()
    except IntegrityError:
        # a second click that raced the first: the unique constraint kept one removal
        await session.rollback()
        return live
    logger.info("live %s: user %s removed by the host %s", live_id, user_id, host_id)
    return live
