"""Start and end times that live.lifecycle stamps on each state change."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from accounts import service as accounts_service
from core.database import Database, utc_now
from live import lifecycle
from live.models import Live, LiveState


async def scheduled_live(session: AsyncSession) -> Live:
    """Store a live hosted by a new account, scheduled an hour from now."""
    host = await accounts_service.create_user(
        session,
        email="claire@example.org",
        display_name="Claire",
        password="correct horse battery",
    )
    live = Live(
        host_id=host.id,
        title="Les cartes mentales en classe",
        starts_at=utc_now() + timedelta(hours=1),
        duration_minutes=60,
    )
    session.add(live)
    await session.commit()
    return live


async def test_resume_clears_ended_at(database: Database) -> None:
    """Guards against a resumed live whose `state` frames still carry the time of its
    interruption as `ended_at`."""
    async with database.session() as session:
        live = await scheduled_live(session)

        await lifecycle.transition(session, live, LiveState.LIVE)
        first_start = live.started_at
        assert first_start is not None
        assert live.ended_at is None

        await lifecycle.transition(session, live, LiveState.INTERRUPTED)
        assert live.ended_at is not None

        await lifecycle.transition(session, live, LiveState.LIVE)
        assert live.started_at == first_start
        assert live.ended_at is None

        await lifecycle.transition(session, live, LiveState.ENDED)
        assert live.ended_at is not None


async def test_state_change_clears_host_away(database: Database) -> None:
    """Guards against a live that reports its host away in the `welcome` of later
    sockets after it ended, was interrupted (a media process that died while the host
    was away) or resumed."""
    async with database.session() as session:
        live = await scheduled_live(session)
        await lifecycle.transition(session, live, LiveState.LIVE)

        for new_state in (LiveState.INTERRUPTED, LiveState.LIVE, LiveState.ENDED):
            live.host_away_since = utc_now()
            await session.commit()
            await lifecycle.transition(session, live, new_state)
            await session.refresh(live)
            assert live.host_away_since is None, new_state
