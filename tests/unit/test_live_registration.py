"""One-click registration: idempotent, open until the live ends, never for its host."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from accounts import service as accounts_service
from accounts.models import User
from core.database import Database
from live import lifecycle, service
from live.access import LiveRole, live_role
from live.models import Live, LiveState
from live.service import LiveDetails, LiveError

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


async def make_user(database: Database, name: str) -> User:
    async with database.session() as session:
        return await accounts_service.create_user(
            session,
            email=f"{name.lower()}@example.org",
            display_name=name,
            password="correct horse battery",
        )


async def make_live(database: Database, host: User) -> Live:
    details = LiveDetails(
        title="Gestion du stress",
        description="",
        start_day=date(2026, 12, 10),
        start_time=time(20, 30),
        time_zone="Europe/Paris",
        duration_minutes=60,
    )
    async with database.session() as session:
        return await service.schedule_live(session, host.id, details, now=NOW)


async def move_to(database: Database, live_id: int, *states: LiveState) -> None:
    async with database.session() as session:
        live = await service.get_live(session, live_id)
        assert live is not None
        for state in states:
            await lifecycle.transition(session, live, state)


async def test_register_twice_keeps_one_registration(database: Database) -> None:
    host = await make_user(database, "Claire")
    colleague = await make_user(database, "Paul")
    live = await make_live(database, host)
    async with database.session() as session:
        first = await service.register(session, live.id, colleague.id)
        second = await service.register(session, live.id, colleague.id)
        count = await service.count_registrations(session, live.id)
        registered = await service.is_registered(session, live.id, colleague.id)
        role = await live_role(session, live, colleague.id)
    assert first is True
    assert second is False
    assert count == 1
    assert registered is True
    assert role is LiveRole.ATTENDEE


async def test_register_in_two_sessions_keeps_one(database: Database) -> None:
    """Guards against a double click whose two requests both insert a row."""
    host = await make_user(database, "Claire")
    colleague = await make_user(database, "Paul")
    live = await make_live(database, host)
    async with database.session() as first_session, database.session() as second_session:
        assert await service.register(first_session, live.id, colleague.id) is True
        assert await service.register(second_session, live.id, colleague.id) is False
    async with database.session() as session:
        assert await service.count_registrations(session, live.id) == 1


async def test_host_cannot_register(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await make_live(database, host)
    async with database.session() as session:
        with pytest.raises(LiveError) as raised:
            await service.register(session, live.id, host.id)
        count = await service.count_registrations(session, live.id)
    assert raised.value.code == "host_cannot_register"
    assert count == 0


@pytest.mark.parametrize(
    "states",
    [
        (),
        (LiveState.OPEN,),
        (LiveState.LIVE,),
        (LiveState.LIVE, LiveState.INTERRUPTED),
    ],
)
async def test_register_open_until_end(database: Database, states: tuple[LiveState, ...]) -> None:
    host = await make_user(database, "Claire")
    colleague = await make_user(database, "Paul")
    live = await make_live(database, host)
    await move_to(database, live.id, *states)
    async with database.session() as session:
        assert await service.register(session, live.id, colleague.id) is True


@pytest.mark.parametrize(
    ("states", "code"),
    [
        ((LiveState.CANCELLED,), "live_cancelled"),
        ((LiveState.LIVE, LiveState.ENDED), "live_ended"),
    ],
)
async def test_register_rejected_when_over(
    database: Database, states: tuple[LiveState, ...], code: str
) -> None:
    host = await make_user(database, "Claire")
    colleague = await make_user(database, "Paul")
    live = await make_live(database, host)
    await move_to(database, live.id, *states)
    async with database.session() as session:
        with pytest.raises(LiveError) as raised:
            await service.register(session, live.id, colleague.id)
    assert raised.value.code == code


async def test_register_unknown_live(database: Database) -> None:
    colleague = await make_user(database, "Paul")
    async with database.session() as session:
        with pytest.raises(LiveError) as raised:
            await service.register(session, 999, colleague.id)
    assert raised.value.code == "live_not_found"


async def test_unregister_is_idempotent(database: Database) -> None:
    host = await make_user(database, "Claire")
    colleague = await make_user(database, "Paul")
    live = await make_live(database, host)
    async with database.session() as session:
        await service.register(session, live.id, colleague.id)
        first = await service.unregister(session, live.id, colleague.id)
        second = await service.unregister(session, live.id, colleague.id)
        count = await service.count_registrations(session, live.id)
        role = await live_role(session, live, colleague.id)
    assert first is True
    assert second is False
    assert count == 0
    assert role is None


async def test_registration_counts_per_live(database: Database) -> None:
    host = await make_user(database, "Claire")
    paul = await make_user(database, "Paul")
    lea = await make_user(database, "Lea")
    busy = await make_live(database, host)
    quiet = await make_live(database, host)
    async with database.session() as session:
        await service.register(session, busy.id, paul.id)
        await service.register(session, busy.id, lea.id)
        await service.register(session, quiet.id, lea.id)
        counts = await service.registration_counts(session, [busy.id, quiet.id, 999])
        paul_lives = await service.registered_live_ids(session, paul.id, [busy.id, quiet.id])
    assert counts == {busy.id: 2, quiet.id: 1, 999: 0}
    assert paul_lives == {busy.id}
