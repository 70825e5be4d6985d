"""Channel moderation: mute and unmute a person, set the slow mode, and the moderation
log that the channel's moderators read.

Who moderates comes from the channel's policy (`ChannelAccess.moderate`), so any
channel whose owner grants it gets these actions. Each action is stored as an event of
the channel, so that every connection shows it in order and gets it again on resume,
and as an entry of the moderation log.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from accounts.models import User
from chat import log
from chat.errors import ChatError, ErrorCode
from chat.log import Person, StoredEvent, format_timestamp
from chat.models import (
    ChannelCounter,
    ChannelEvent,
    ChannelMute,
    EventKind,
    ModerationAction,
    ModerationRecord,
)

if TYPE_CHECKING:
    from chat.service import ChatService

logger = logging.getLogger(__name__)

# The maximum slow mode interval: one message an hour already stops a conversation.
SLOW_MODE_MAX_SECS = 3600
# Entries returned by the moderation log, newest first.
MODERATION_LOG_MAX_ENTRIES = 500


@dataclass(frozen=True)
class ModerationState:
    """The moderation state of one person on one channel, sent in `welcome`."""

    muted: bool
    slow_mode_secs: int


@dataclass(frozen=True)
class LogEntry:
    """One entry of the moderation log, with the names of the people involved."""

    action: ModerationAction
    moderator: Person
    target: Person | None
    target_seq: int | None
    interval_secs: int | None
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "by": self.moderator.to_frame(),
            "user": self.target.to_frame() if self.target else None,
            "seq": self.target_seq,
            "interval_secs": self.interval_secs,
            "at": format_timestamp(self.created_at),
        }


class _NothingChangesError(Exception):
    """The action would leave the channel as it is: nothing is stored."""


def record_action(
    session: AsyncSession,
    channel: str,
    action: ModerationAction,
    moderator_id: int,
    now: datetime,
    *,
    target_id: int | None = None,
    target_seq: int | None = None,
    interval_secs: int | None = None,
) -> None:
    """Add an entry to the channel's moderation log, inside the caller's transaction.

    The owner of a channel calls it too, such as the live package for a removal.
    """
    session.add(
        ModerationRecord(
            channel=channel,
            action=action,
            moderator_id=moderator_id,
            target_id=target_id,
            target_seq=target_seq,
            interval_secs=interval_secs,
            created_at=now,
        )
    )


async def is_muted(session: AsyncSession, channel: str, user_id: int) -> bool:
    mute_id = await session.scalar(
        select(ChannelMute.id).where(ChannelMute.channel == channel, ChannelMute.user_id == user_id)
    )
    return mute_id is not None


async def slow_mode_secs(session: AsyncSession, channel: str) -> int:
    value = await session.scalar(
        select(ChannelCounter.slow_mode_secs).where(ChannelCounter.channel == channel)
    )
    return value or 0


async def check_slow_mode(
    session: AsyncSession, channel: str, author_id: int, now: datetime
) -> None:
    """Raise ChatError(slow_mode) when the author's last message on the channel is more
    recent than the slow mode's interval. The caller skips moderators."""
    interval = await slow_mode_secs(session, channel)
    if interval <= 0:
        return
    last_sent = await session.scalar(
        select(func.max(ChannelEvent.created_at)).where(
            ChannelEvent.channel == channel,
            ChannelEvent.author_id == author_id,
            ChannelEvent.kind == EventKind.MESSAGE,
        )
    )
    if last_sent is None:
        return
    wait_secs = interval - (now - last_sent).total_seconds()
    if wait_secs > 0:
        retry_after = math.ceil(wait_secs)
        raise ChatError(
            ErrorCode.SLOW_MODE,
            message=(
                f"Le mode lent est activé : un message toutes les {interval} secondes. "
                f"Réessayez dans {retry_after} seconde{'s' if retry_after > 1 else ''}."
            ),
            fields={"retry_after_secs": retry_after, "interval_secs": interval},
        )


async def moderation_log(session: AsyncSession, channel: str) -> list[LogEntry]:
    """Return the channel's moderation log, newest first."""
    moderator = aliased(User)
    target = aliased(User)
    rows = await session.execute(
        select(ModerationRecord, moderator.display_name, target.display_name)
        .join(moderator, moderator.id == ModerationRecord.moderator_id)
        .outerjoin(target, target.id == ModerationRecord.target_id)
        .where(ModerationRecord.channel == channel)
        .order_by(ModerationRecord.created_at.desc(), ModerationRecord.id.desc())
        .limit(MODERATION_LOG_MAX_ENTRIES)
    )
    return [
        LogEntry(
            action=record.action,
            moderator=Person(record.moderator_id, moderator_name),
            target=(
                Person(record.target_id, target_name or "")
                if record.target_id is not None
                else None
            ),
            target_seq=record.target_seq,
            interval_secs=record.interval_secs,
            created_at=record.created_at,
        )
        for record, moderator_name, target_name in rows
    ]


class ChannelModeration:
    """The moderation actions of one process's chat service."""

    def __init__(self, service: ChatService) -> None:
        self.service = service

    async def state_of(self, channel: str, user_id: int) -> ModerationState:
        async with self.service.database.session() as session:
            return ModerationState(
                muted=await is_muted(session, channel, user_id),
                slow_mode_secs=await slow_mode_secs(session, channel),
            )

    async def mute(self, channel: str, moderator: Person, user_id: int) -> None:
        """Stop `user_id` from sending on the channel; raise ChatError when rejected."""
        await self._store(channel, moderator, EventKind.MUTE, user_id=user_id)

    async def unmute(self, channel: str, moderator: Person, user_id: int) -> None:
        await self._store(channel, moderator, EventKind.UNMUTE, user_id=user_id)

    async def set_slow_mode(self, channel: str, moderator: Person, interval_secs: int) -> None:
        """Allow one message per `interval_secs` to each participant who does not
        moderate; 0 turns the slow mode off."""
        if not 0 <= interval_secs <= SLOW_MODE_MAX_SECS:
            raise ChatError(ErrorCode.INVALID_FRAME)
        await self._store(channel, moderator, EventKind.SLOW_MODE, interval_secs=interval_secs)

    async def _store(
        self,
        channel: str,
        moderator: Person,
        kind: EventKind,
        *,
        user_id: int | None = None,
        interval_secs: int | None = None,
    ) -> None:
        """Store the action as an event and a log entry in one transaction, then
        publish the event. An action that changes nothing stores nothing."""
        service = self.service
        try:
            async with (
                service.write_lock(channel),
                service.database.session() as session,
                session.begin(),
            ):
                # the counter first, as every writer of the channel (see log.next_seq)
                seq = await log.next_seq(session, channel)
                access = await service.policies.access(session, channel, moderator.id)
                if access is None or not access.read or not access.moderate:
                    raise ChatError(ErrorCode.FORBIDDEN)

                now = service.now()
                subject = None
                if user_id is not None:
                    subject = await self._apply_mute(
                        session, channel, moderator, kind, user_id=user_id, now=now
                    )
                else:
                    await self._apply_slow_mode(session, channel, interval_secs or 0)
                session.add(
                    ChannelEvent(
                        channel=channel,
                        seq=seq,
                        kind=kind,
                        author_id=moderator.id,
                        subject_id=user_id,
                        interval_secs=interval_secs,
                        created_at=now,
                    )
                )
                record_action(
                    session,
                    channel,
                    ModerationAction(kind.value),
                    moderator.id,
                    now,
                    target_id=user_id,
                    interval_secs=interval_secs,
                )
        except _NothingChangesError:
            return
        except (SQLAlchemyError, OSError) as error:
            logger.error(
                "chat %s channel=%s by user=%s: database failed, nothing stored: %s",
                kind.value,
                channel,
                moderator.id,
                error,
            )
            raise ChatError(ErrorCode.TRY_AGAIN) from error

        logger.info(
            "chat %s channel=%s by user=%s subject=%s interval=%s seq=%d",
            kind.value,
            channel,
            moderator.id,
            user_id,
            interval_secs,
            seq,
        )
        await service.publish(
            StoredEvent(
                channel=channel,
                seq=seq,
                kind=kind,
                person=moderator,
                created_at=now,
                subject=subject,
                interval_secs=interval_secs,
            )
        )

    async def _apply_mute(
        self,
        session: AsyncSession,
        channel: str,
        moderator: Person,
        kind: EventKind,
        *,
        user_id: int,
        now: datetime,
    ) -> Person:
        """Add or remove the person's mute; return the person."""
        target = await self.service.policies.access(session, channel, user_id)
        if target is None or not target.read:
            raise ChatError(ErrorCode.NOT_PARTICIPANT)
        if target.moderate:
            # A moderator cannot be muted, and needs no unmuting.
            raise ChatError(ErrorCode.FORBIDDEN)
        muted = await is_muted(session, channel, user_id)
        if muted == (kind is EventKind.MUTE):
            raise _NothingChangesError
        if kind is EventKind.MUTE:
            session.add(
                ChannelMute(
                    channel=channel, user_id=user_id, muted_by_id=moderator.id, created_at=now
                )
            )
        else:
            await session.execute(
                delete(ChannelMute).where(
                    ChannelMute.channel == channel, ChannelMute.user_id == user_id
                )
            )
        name = await session.scalar(select(User.display_name).where(User.id == user_id))
        return Person(user_id, name or "")

    async def _apply_slow_mode(self, session: AsyncSession, channel: str, interval: int) -> None:
        if await slow_mode_secs(session, channel) == interval:
            raise _NothingChangesError
        # next_seq created the channel's counter row, if it was the first event
        await session.execute(
            update(ChannelCounter)
            .where(ChannelCounter.channel == channel)
            .values(slow_mode_secs=interval)
        )
