"""Chat access for a live's channel `live:<id>`: its host moderates, its registered
attendees read and write, and the channel turns read-only once the live is over."""

from __future__ import annotations

from sqlalchemy import bindparam, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from chat.policy import NO_ACCESS, ChannelAccess
from live.models import LIVE_ID_MAX, Live, LiveState, Registration

# A live in one of these states accepts no new chat messages; the history stays
# readable for the replay.
CLOSED_STATES = frozenset({LiveState.ENDED, LiveState.CANCELLED})
LIVE_CHANNEL_PREFIX = "live"


def live_id_of_key(key: str) -> int | None:
    """Return the live id of a channel key, such as 12 for `live:12`, or None.

    Only the canonical spelling names a channel: `live:012` would otherwise be a second
    channel of live 12 with its own sequence numbers.
    """
    if not key.isascii() or not key.isdigit() or len(key) > len(str(LIVE_ID_MAX)):
        return None
    if str(int(key)) != key or int(key) > LIVE_ID_MAX:
        return None
    return int(key)


def live_id_of_channel(channel: str) -> int | None:
    """Return the live id of a channel name such as `live:12`, or None for another name."""
    prefix, separator, key = channel.partition(":")
    if prefix != LIVE_CHANNEL_PREFIX or not separator:
        return None
    return live_id_of_key(key)


# The live's host and state, and whether the person registered (the role rules of
# live_role), in one query built once, since every chat message checks access.
_ACCESS_QUERY = select(
    Live.host_id,
    Live.state,
    exists().where(Registration.live_id == Live.id, Registration.user_id == bindparam("user_id")),
).where(Live.id == bindparam("live_id"))


class LiveChannelPolicy:
    """The `ChannelPolicy` of the `live` channel prefix."""

    async def access(self, session: AsyncSession, key: str, user_id: int) -> ChannelAccess | None:
        live_id = live_id_of_key(key)
        if live_id is None:
            return None

        parameters = {"live_id": live_id, "user_id": user_id}
        row = (await session.execute(_ACCESS_QUERY, parameters)).one_or_none()
        if row is None:
            return None
        host_id, state, is_registered = row
        if host_id != user_id and not is_registered:
            return NO_ACCESS
        return ChannelAccess(
            read=True,
            write=True,
            moderate=host_id == user_id,
            closed=state in CLOSED_STATES,
        )
