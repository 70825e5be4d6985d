"""Who may read, write and moderate a channel, decided by the domain that owns it.

Chat imports no domain package. Each domain provides a `ChannelPolicy` for its
channel prefix (`live` for `live:12`), and server.py registers it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from chat.models import CHANNEL_NAME_MAX_CHARS


class ChannelRole(enum.StrEnum):
    HOST = "host"
    PARTICIPANT = "participant"


@dataclass(frozen=True)
class ChannelAccess:
    """What one person may do on one channel.

    `closed` means the channel takes no new messages from anyone, as for a live
    that is over. Deletions stay possible, so that a replay can still be cleaned up.
    """

    read: bool
    write: bool
    moderate: bool
    closed: bool = False

    @property
    def role(self) -> ChannelRole:
        return ChannelRole.HOST if self.moderate else ChannelRole.PARTICIPANT

    @property
    def can_send(self) -> bool:
        return self.read and self.write and not self.closed


NO_ACCESS = ChannelAccess(read=False, write=False, moderate=False)


class ChannelPolicy(Protocol):
    async def access(self, session: AsyncSession, key: str, user_id: int) -> ChannelAccess | None:
        """Return what `user_id` may do on the channel `<prefix>:<key>`.

        Return None when no such channel exists, and `NO_ACCESS` when it exists but
        the person may not take part.
        """
        ...


def split_channel(channel: str) -> tuple[str, str] | None:
    """Split `live:12` into (`live`, `12`); None for a name without both parts."""
    if len(channel) > CHANNEL_NAME_MAX_CHARS:
        return None
    prefix, separator, key = channel.partition(":")
    if not separator or not prefix or not key:
        return None
    return prefix, key


class PolicyRegistry:
    """Maps a channel prefix to the policy of the domain that owns those channels."""

    def __init__(self) -> None:
        self._policies: dict[str, ChannelPolicy] = {}

    def register(self, prefix: str, policy: ChannelPolicy) -> None:
        if not prefix.isascii() or not prefix.isalpha() or not prefix.islower():
            raise ValueError(f"channel prefix {prefix!r} must be lower-case ASCII letters")
        if prefix in self._policies:
            raise ValueError(f"channel prefix {prefix!r} already has a policy")
        self._policies[prefix] = policy

    async def access(
        self, session: AsyncSession, channel: str, user_id: int
    ) -> ChannelAccess | None:
        """Return the access of `user_id` to `channel`; None for an unknown channel."""
        parts = split_channel(channel)
        if parts is None:
            return None
        prefix, key = parts
        policy = self._policies.get(prefix)
        if policy is None:
            return None
        return await policy.access(session, key, user_id)
