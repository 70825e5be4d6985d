"""Notices that a person lost access, carried to every server process, so that each one
closes that person's open sockets at once.

A revocation names a person and a scope: one chat channel (removed from a live), or
everything (logged out, password changed). The chat sockets close through the chat
service's registry. Other packages add listeners, such as signaling for the sockets
of a live. The notices travel through their own broker, the same kind as chat's:
in-process, or Redis pub/sub when configured.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from chat.broker import Broker, BrokerError
from chat.connections import ConnectionRegistry
from chat.errors import CloseCode

logger = logging.getLogger(__name__)

# The one broker channel that carries revocations.
REVOCATIONS_CHANNEL = "revocations"


class RevocationReason(enum.StrEnum):
    # The person logged out, or changed or reset the password, in another browser.
    LOGGED_OUT = "logged_out"
    # The channel's owner removed the person, such as the host from a live.
    REMOVED = "removed"


@dataclass(frozen=True)
class Revocation:
    user_id: int
    reason: RevocationReason
    # The chat channel whose sockets close, or None for every socket of the person.
    channel: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"user_id": self.user_id, "reason": self.reason.value, "channel": self.channel}
        )

    @classmethod
    def from_json(cls, payload: str) -> Revocation:
        """Parse a notice; raise ValueError when it is not one."""
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise ValueError(f"invalid revocation {payload[:200]!r}")
        user_id, channel = data.get("user_id"), data.get("channel")
        reason = data.get("reason")
        valid_channel = channel is None or isinstance(channel, str)
        if not isinstance(user_id, int) or not isinstance(reason, str) or not valid_channel:
            raise ValueError(f"invalid revocation {payload[:200]!r}")
        return cls(user_id=user_id, reason=RevocationReason(reason), channel=channel)


# Called in every process for each revocation; must not block.
RevocationListener = Callable[[Revocation], None]


class RevocationBus:
    """Publishes revocations to every process and calls this process's listeners."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._listeners: list[RevocationListener] = []

    def add_listener(self, listener: RevocationListener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        self.broker.attach(self._receive, self._reconnected)
        await self.broker.start()
        await self.broker.subscribe(REVOCATIONS_CHANNEL)

    async def stop(self) -> None:
        await self.broker.stop()

    async def revoke(self, revocation: Revocation) -> None:
        """Close the person's sockets in scope in every process, this one included."""
        try:
            await self.broker.publish(REVOCATIONS_CHANNEL, revocation.to_json())
        except BrokerError as error:
            # Other processes keep the sockets until they close, but refuse new ones,
            # whose access is read from the database.
            logger.warning(
                "revocation user=%s channel=%s not published, applied here only: %s",
                revocation.user_id,
                revocation.channel,
                error.reason,
            )
            self._dispatch(revocation)

    def _receive(self, channel: str, payload: str) -> None:
        try:
            revocation = Revocation.from_json(payload)
        except ValueError as error:
            logger.warning("revocations: dropped an invalid notice: %s", error)
            return
        self._dispatch(revocation)

    def _dispatch(self, revocation: Revocation) -> None:
        for listener in self._listeners:
            try:
                listener(revocation)
            except Exception:
                logger.exception(
                    "revocation user=%s channel=%s: a listener failed",
                    revocation.user_id,
                    revocation.channel,
                )

    def _reconnected(self) -> None:
        # NOTE: notices published while the broker connection was down are lost. The
        # sockets they would have closed stay open until they close, but every new
        # socket reads its access from the database.
        logger.info("revocations: broker connection back")


# Maps each reason to the close code of the chat sockets it closes.
CHAT_CLOSE_CODES = {
    RevocationReason.LOGGED_OUT: CloseCode.NOT_LOGGED_IN,
    RevocationReason.REMOVED: CloseCode.REMOVED,
}


def chat_listener(connections: ConnectionRegistry) -> RevocationListener:
    """Return the listener that closes the chat sockets of each revocation."""

    def close_chat_sockets(revocation: Revocation) -> None:
        connections.close_person(
            revocation.user_id, revocation.channel, CHAT_CLOSE_CODES[revocation.reason]
        )

    return close_chat_sockets
