"""A teacher's mentoring conversations, their unread counts and read positions.

Unread messages are the messages of the other member, not deleted, above the seq
the reader marked as seen. Every query here only finds conversations that the
reader is a member of.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import User
from chat import log
from chat.models import ChannelEvent, EventKind
from core.database import Database
from mentoring.channel_policy import find_conversation
from mentoring.models import Mentorship, MentorshipStatus


@dataclass(frozen=True)
class ConversationSummary:
    """One conversation as its member sees it in lists."""

    conversation_id: str
    channel: str
    mentorship_id: int
    # "mentor" when the reader is the mentor, "mentee" otherwise.
    role: str
    other_name: str
    active: bool
    started_at: datetime
    ended_at: datetime | None
    read_seq: int
    last_seq: int
    unread: int

    def to_json(self) -> dict[str, object]:
        return {
            "conversation_id": self.conversation_id,
            "channel": self.channel,
            "role": self.role,
            "other_name": self.other_name,
            "active": self.active,
            "read_seq": self.read_seq,
            "last_seq": self.last_seq,
            "unread": self.unread,
        }


def read_seq_of(mentorship: Mentorship, user_id: int) -> int:
    if user_id == mentorship.mentor_id:
        return mentorship.mentor_read_seq
    return mentorship.mentee_read_seq


async def count_unread(session: AsyncSession, mentorship: Mentorship, user_id: int) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(ChannelEvent)
        .where(
            ChannelEvent.channel == mentorship.channel,
            ChannelEvent.kind == EventKind.MESSAGE,
            ChannelEvent.deleted.is_(False),
            ChannelEvent.author_id != user_id,
            ChannelEvent.seq > read_seq_of(mentorship, user_id),
        )
    )
    return count or 0


async def summarize(
    session: AsyncSession, mentorship: Mentorship, user_id: int
) -> ConversationSummary:
    other = await session.get(User, mentorship.other_member(user_id))
    return ConversationSummary(
        conversation_id=mentorship.conversation_id,
        channel=mentorship.channel,
        mentorship_id=mentorship.id,
        role="mentor" if user_id == mentorship.mentor_id else "mentee",
        other_name=other.display_name if other else "?",
        active=mentorship.status is MentorshipStatus.ACTIVE,
        started_at=mentorship.started_at,
        ended_at=mentorship.ended_at,
        read_seq=read_seq_of(mentorship, user_id),
        last_seq=await log.last_seq(session, mentorship.channel),
        unread=await count_unread(session, mentorship, user_id),
    )


async def list_conversations(session: AsyncSession, user_id: int) -> list[ConversationSummary]:
    """Return the reader's conversations: active ones first, the most recent first."""
    rows = await session.scalars(
        select(Mentorship)
        .where(or_(Mentorship.mentor_id == user_id, Mentorship.mentee_id == user_id))
        .order_by(Mentorship.status, Mentorship.started_at.desc(), Mentorship.id.desc())
    )
    return [await summarize(session, mentorship, user_id) for mentorship in rows]


async def get_conversation(
    session: AsyncSession, conversation_id: str, user_id: int
) -> ConversationSummary | None:
    """Return the conversation when `user_id` is a member; None for a missing one and
    for one of other people alike."""
    mentorship = await find_conversation(session, conversation_id, user_id)
    if mentorship is None:
        return None
    return await summarize(session, mentorship, user_id)


async def mark_read(database: Database, conversation_id: str, user_id: int, seq: int) -> bool:
    """Raise the reader's read position to `seq`, capped at the channel's last seq; never
    lower it. Return False when the reader is not a member."""
    async with database.session() as session:
        mentorship = await find_conversation(session, conversation_id, user_id)
        if mentorship is None:
            return False
        capped = min(seq, await log.last_seq(session, mentorship.channel))
    column = (
        Mentorship.mentor_read_seq
        if user_id == mentorship.mentor_id
        else Mentorship.mentee_read_seq
    )
    async with database.session() as session, session.begin():
        # One conditional UPDATE, so that concurrent marks from two tabs never lower it.
        await session.execute(
            update(Mentorship)
            .where(Mentorship.id == mentorship.id, column < capped)
            .values({column: capped})
        )
    return True


async def total_unread(session: AsyncSession, user_id: int) -> int:
    """Count the unread messages of all the reader's conversations."""
    return sum(summary.unread for summary in await list_conversations(session, user_id))
