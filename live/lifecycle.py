"""State transitions of a live, shared by signaling (start, end) and recordings (interrupted)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from core.database import utc_now
from live.models import Live, LiveState

logger = logging.getLogger(__name__)

# Maps each state to the states it may move to.
ALLOWED_TRANSITIONS: dict[LiveState, frozenset[LiveState]] = {
    LiveState.SCHEDULED: frozenset({LiveState.OPEN, LiveState.LIVE, LiveState.CANCELLED}),
    LiveState.OPEN: frozenset({LiveState.LIVE, LiveState.SCHEDULED, LiveState.CANCELLED}),
    LiveState.LIVE: frozenset({LiveState.ENDED, LiveState.INTERRUPTED}),
    LiveState.INTERRUPTED: frozenset({LiveState.LIVE, LiveState.ENDED}),
    LiveState.ENDED: frozenset(),
    LiveState.CANCELLED: frozenset(),
}


class InvalidTransitionError(RuntimeError):
    def __init__(self, live_id: int, current: LiveState, requested: LiveState) -> None:
        super().__init__(
            f"live {live_id}: cannot move from {current.value} to {requested.value}; "
            f"allowed: {sorted(state.value for state in ALLOWED_TRANSITIONS[current])}"
        )
        self.live_id = live_id
        self.current = current
        self.requested = requested


async def transition(session: AsyncSession, live: Live, new_state: LiveState) -> None:
    """Move `live` to `new_state`, stamping start and end times, clearing the host's
    absence, and commit."""
    if new_state not in ALLOWED_TRANSITIONS[live.state]:
        raise InvalidTransitionError(live.id, live.state, new_state)

    old_state = live.state
    live.state = new_state
    # a live that resumes, ends or is interrupted no longer waits for its host to come back
    live.host_away_since = None
    if new_state is LiveState.LIVE:
        # a live resumed after an interruption keeps its first start and is no longer over
        live.started_at = live.started_at or utc_now()
        live.ended_at = None
    if new_state in {LiveState.ENDED, LiveState.INTERRUPTED}:
        live.ended_at = utc_now()
    await session.commit()
    logger.info("live %s: %s -> %s", live.id, old_state.value, new_state.value)
