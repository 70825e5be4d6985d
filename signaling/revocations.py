"""Closing a person's signaling sockets at once, when the host removed them from a
live or they logged out elsewhere. Their media peers close with the sockets."""

from __future__ import annotations

import logging

from signaling.audience import LocalAudience
from signaling.protocol import CloseCode
from signaling.routes import SignalingConnection

logger = logging.getLogger(__name__)


def close_person(
    audience: LocalAudience, user_id: int, live_id: int | None, code: CloseCode
) -> int:
    """Close the person's signaling sockets of `live_id` in this process, or of every
    live for None; return how many were open.

    Each socket sends what it has queued and the close frame, then its endpoint leaves
    the live's audience, which closes its viewer peer or host peer, on whichever
    process is the live's media node.
    """
    closed = 0
    for socket_live_id, listeners in list(audience.listeners.items()):
        if live_id is not None and socket_live_id != live_id:
            continue
        for listener in list(listeners):
            if isinstance(listener, SignalingConnection) and listener.user_id == user_id:
                listener.close(code)
                closed += 1
    if closed:
        logger.info(
            "signaling: closing %d sockets of user=%s live=%s with %d",
            closed,
            user_id,
            live_id if live_id is not None else "*",
            code.value,
        )
    return closed
