"""The chat sockets open in this process, by channel and person: a limit per person,
the write-frame budget of each socket, and closing a person's sockets at once when
they lose access."""

from __future__ import annotations

import asyncio
import logging

from chat.errors import CloseCode
from chat.throttle import WRITE_FRAMES_BURST, WRITE_FRAMES_PER_SEC, TokenBucket

logger = logging.getLogger(__name__)

# Chat sockets one person may have open on one channel in one server process: a few
# tabs and devices, far fewer than a script opening sockets in a loop would.
# NOTE: counted per process, so with N processes a person may open N times as many.
CHAT_SOCKETS_PER_PERSON_MAX = 8


class TooManySocketsError(Exception):
    def __init__(self, channel: str, user_id: int) -> None:
        super().__init__(
            f"user {user_id} already has {CHAT_SOCKETS_PER_PERSON_MAX} sockets on {channel}"
        )


class ConnectionTicket:
    """One open chat socket. `closed` is set, with `close_code`, when the socket must
    close because its person lost access."""

    def __init__(self, channel: str, user_id: int) -> None:
        self.channel = channel
        self.user_id = user_id
        self.closed = asyncio.Event()
        self.close_code: CloseCode | None = None

    def close(self, code: CloseCode) -> None:
        if self.close_code is None:
            self.close_code = code
        self.closed.set()


class ConnectionRegistry:
    """Maps each (channel, person) to the tickets of their open chat sockets."""

    def __init__(
        self,
        max_per_person: int = CHAT_SOCKETS_PER_PERSON_MAX,
        *,
        write_frames_burst: int = WRITE_FRAMES_BURST,
        write_frames_per_sec: float = WRITE_FRAMES_PER_SEC,
    ) -> None:
        self.max_per_person = max_per_person
        # The token bucket size and refill rate of each new socket's write frames.
        self.write_frames_burst = write_frames_burst
        self.write_frames_per_sec = write_frames_per_sec
        self._tickets: dict[tuple[str, int], set[ConnectionTicket]] = {}

    def open(self, channel: str, user_id: int) -> ConnectionTicket:
        """Count a new socket; raise TooManySocketsError above the limit."""
        tickets = self._tickets.setdefault((channel, user_id), set())
        if len(tickets) >= self.max_per_person:
            raise TooManySocketsError(channel, user_id)
        ticket = ConnectionTicket(channel, user_id)
        tickets.add(ticket)
        return ticket

    def write_bucket(self) -> TokenBucket:
        """Return a full token bucket for the write frames of a new socket."""
        return TokenBucket(self.write_frames_burst, self.write_frames_per_sec)

    def release(self, ticket: ConnectionTicket) -> None:
        key = (ticket.channel, ticket.user_id)
        tickets = self._tickets.get(key)
        if tickets is None:
            return
        tickets.discard(ticket)
        if not tickets:
            del self._tickets[key]

    def count(self, channel: str, user_id: int) -> int:
        return len(self._tickets.get((channel, user_id), ()))

    def close_person(self, user_id: int, channel: str | None, code: CloseCode) -> int:
        """Close the person's sockets on `channel`, or on every channel for None;
        return how many were open."""
        closed = 0
        for (ticket_channel, ticket_user), tickets in list(self._tickets.items()):
            if ticket_user != user_id or channel not in (None, ticket_channel):
                continue
            for ticket in tickets:
                ticket.close(code)
                closed += 1
        if closed:
            logger.info(
                "chat: closing %d sockets of user=%s channel=%s with %d",
                closed,
                user_id,
                channel or "*",
                code.value,
            )
        return closed
