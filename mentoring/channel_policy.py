"""Chat access for a mentoring conversation `conversation:<id>`: its mentor and its
mentee read and write, nobody else, and the channel turns read-only once the
mentorship has ended.

The policy answers "no such channel" both for an id that names no conversation and
for a conversation the person is not a member of. The chat socket then closes with
4404 and the history endpoint answers 404 in both cases, so nobody can learn by
trying ids whether a conversation exists. No moderation rule gives staff access.
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chat.policy import ChannelAccess
from mentoring.models import CONVERSATION_ID_CHARS, Mentorship, MentorshipStatus

# The only spelling of a conversation id, as `secrets.token_urlsafe` writes it.
CONVERSATION_ID_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{{CONVERSATION_ID_CHARS}}}")


async def find_conversation(
    session: AsyncSession, conversation_id: str, user_id: int
) -> Mentorship | None:
    """Return the mentorship of `conversation_id` when `user_id` is one of its two
    members; None when it does not exist or belongs to others."""
    if not CONVERSATION_ID_PATTERN.fullmatch(conversation_id):
        return None
    mentorship = await session.scalar(
        select(Mentorship).where(Mentorship.conversation_id == conversation_id)
    )
    if mentorship is None or not mentorship.is_member(user_id):
        return None
    return mentorship


class ConversationChannelPolicy:
    """The `ChannelPolicy` of the `conversation` channel prefix."""

    async def access(self, session: AsyncSession, key: str, user_id: int) -> ChannelAccess | None:
        mentorship = await find_conversation(session, key, user_id)
        if mentorship is None:
            return None
        return ChannelAccess(
            read=True,
            write=True,
            moderate=False,
            closed=mentorship.status is MentorshipStatus.ENDED,
        )
