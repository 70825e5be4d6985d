"""Chat access for a live's channel `live:<id>`: its host moderates, its registered
attendees read and write, and the channel turns read-only once the live is over."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from chat.policy import NO_ACCESS, ChannelAccess
from live.access import LiveRole, live_role
from live.models import Live, LiveState

# A live in one of these states accepts no new chat messages; the history stays
# readable for the replay.
CLOSED_STATES = frozenset({LiveState.ENDED, LiveState.CANCELLED})

# Live ids are database integer keys; 18 digits stay inside a signed 64-bit integer.
LIVE_ID_MAX_DIGITS = 18


class LiveChannelPolicy:
    """The `ChannelPolicy` of the `live` channel prefix."""

    async def access(self, session: AsyncSession, key: str, user_id: int) -> ChannelAccess | None:
        # Only the canonical spelling names a channel: `live:012` would otherwise be
        # a second channel of live 12 with its own sequence numbers.
        if not key.isascii() or not key.isdigit() or len(key) > LIVE_ID_MAX_DIGITS:
            return None
        if str(int(key)) != key:
            return None

        live = await session.get(Live, int(key))
        if live is None:
            return None
        role = await live_role(session, live, user_id)
        if role is None:
            return NO_ACCESS
        return ChannelAccess(
            read=True,
            write=True,
            moderate=role is LiveRole.HOST,
            closed=live.state in CLOSED_STATES,
        )
