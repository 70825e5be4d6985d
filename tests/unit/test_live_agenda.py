"""Agenda queries: which lives are coming, grouped by evening in the viewer's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import service as accounts_service
from accounts.models import User
from core.database import Database
from live import lifecycle, service
from live.models import Live, LiveState
from live.service import LiveDetails
from recordings.models import Recording, RecordingStatus
from recordings.service import recent_replays

# Friday 4 December 2026, 19:00 in Paris (UTC+1 in winter), 22:00 in La Réunion (UTC+4).
NOW = datetime(2026, 12, 4, 18, 0, tzinfo=UTC)


async def make_user(database: Database, name: str) -> User:
    async with database.session() as session:
        return await accounts_service.create_user(
            session,
            email=f"{name.lower()}@example.org",
            display_name=name,
            password="correct horse battery",
        )


async def make_live(
    database: Database,
    host: User,
    title: str,
    day: date,
    wall_time: time,
    *,
    duration_minutes: int = 60,
    states: tuple[LiveState, ...] = (),
) -> Live:
    """Schedule a Paris-time live as if a week earlier, then move it through `states`."""
    details = LiveDetails(
        title=title,
        description="",
        start_day=day,
        start_time=wall_time,
        time_zone="Europe/Paris",
        duration_minutes=duration_minutes,
    )
    async with database.session() as session:
        live = await service.schedule_live(session, host.id, details, now=NOW - timedelta(days=7))
        for state in states:
            await lifecycle.transition(session, live, state)
    return live


async def make_live_for_host(
    session: AsyncSession, host_id: int, title: str, wall_time: time
) -> Live:
    details = LiveDetails(
        title=title,
        description="",
        start_day=date(2026, 12, 4),
        start_time=wall_time,
        time_zone="Europe/Paris",
        duration_minutes=60,
    )
    return await service.schedule_live(session, host_id, details, now=NOW)


@pytest.fixture
async def lives(database: Database) -> dict[str, Live]:
    host = await make_user(database, "Claire")
    today = date(2026, 12, 4)
    tomorrow = date(2026, 12, 5)
    return {
        "next_year": await make_live(database, host, "Janvier", date(2027, 1, 5), time(20, 30)),
        "monday": await make_live(database, host, "Lundi", date(2026, 12, 7), time(20, 30)),
        "tomorrow": await make_live(database, host, "Demain", tomorrow, time(20, 30)),
        "tonight_late": await make_live(database, host, "Tard", today, time(23, 30)),
        "tonight": await make_live(database, host, "Ce soir", today, time(20, 30)),
        "running": await make_live(database, host, "En cours", today, time(18, 30)),
        "overrunning": await make_live(
            database,
            host,
            "Débordement",
            date(2026, 12, 3),
            time(23, 0),
            states=(LiveState.LIVE,),
        ),
        "over_by_plan": await make_live(database, host, "Fini", today, time(17, 0)),
        "ended": await make_live(
            database, host, "Terminé", today, time(18, 45), states=(LiveState.LIVE, LiveState.ENDED)
        ),
        "cancelled": await make_live(
            database, host, "Annulé", today, time(21, 0), states=(LiveState.CANCELLED,)
        ),
    }


async def test_coming_lives_in_start_order(database: Database, lives: dict[str, Live]) -> None:
    async with database.session() as session:
        coming = await service.coming_lives(session, now=NOW)
    assert [live.title for live in coming] == [
        "Débordement",
        "En cours",
        "Ce soir",
        "Tard",
        "Demain",
        "Lundi",
        "Janvier",
    ]


async def test_coming_lives_leave_out_finished(database: Database, lives: dict[str, Live]) -> None:
    async with database.session() as session:
        titles = {live.title for live in await service.coming_lives(session, now=NOW)}
    assert "Terminé" not in titles
    assert "Annulé" not in titles
    # Planned 17:00-18:00 and never started: over by its plan at 19:00.
    assert "Fini" not in titles


async def test_group_by_evening_tonight_first(database: Database, lives: dict[str, Live]) -> None:
    async with database.session() as session:
        coming = await service.coming_lives(session, now=NOW)
    evenings = service.group_by_evening(coming, "Europe/Paris", now=NOW)
    assert [evening.label for evening in evenings] == [
        "Ce soir",
        "Demain",
        "Lundi 7 décembre",
        "Mardi 5 janvier 2027",
    ]
    assert [live.title for live in evenings[0].lives] == [
        "Débordement",
        "En cours",
        "Ce soir",
        "Tard",
    ]
    assert evenings[0].day == date(2026, 12, 4)


async def test_group_by_evening_in_reunion(database: Database, lives: dict[str, Live]) -> None:
    """23:30 in Paris is 02:30 the next day in La Réunion, so tomorrow for that viewer."""
    async with database.session() as session:
        coming = await service.coming_lives(session, now=NOW)
    evenings = service.group_by_evening(coming, "Indian/Reunion", now=NOW)
    assert evenings[0].label == "Ce soir"
    assert [live.title for live in evenings[0].lives] == ["Débordement", "En cours", "Ce soir"]
    assert evenings[1].label == "Demain"
    assert [live.title for live in evenings[1].lives] == ["Tard", "Demain"]


async def test_group_by_evening_after_midnight(database: Database, lives: dict[str, Live]) -> None:
    """At 00:15, the live still running since 23:30 and the lives of the coming evening
    are tonight's, not tomorrow's."""
    after_midnight = datetime(2026, 12, 4, 23, 15, tzinfo=UTC)
    async with database.session() as session:
        coming = await service.coming_lives(session, now=after_midnight)
    evenings = service.group_by_evening(coming, "Europe/Paris", now=after_midnight)
    assert evenings[0].label == "Ce soir"
    assert evenings[0].day == date(2026, 12, 5)
    assert [live.title for live in evenings[0].lives] == ["Débordement", "Tard", "Demain"]


async def test_personal_agenda_of_attendee(database: Database, lives: dict[str, Live]) -> None:
    paul = await make_user(database, "Paul")
    host_id = lives["tonight"].host_id
    async with database.session() as session:
        for key in ("tomorrow", "tonight"):
            await service.register(session, lives[key].id, paul.id)
        called_off = await make_live_for_host(session, host_id, "Reporté", time(21, 15))
        await service.register(session, called_off.id, paul.id)
        await service.cancel_live(session, called_off.id, host_id)
        agenda = await service.personal_agenda(session, paul.id, now=NOW)
    # The cancelled live stays listed, so Paul learns that it will not happen.
    assert [live.title for live in agenda.coming] == ["Ce soir", "Reporté", "Demain"]
    assert agenda.past == []


async def test_personal_agenda_of_host(database: Database, lives: dict[str, Live]) -> None:
    async with database.session() as session:
        agenda = await service.personal_agenda(session, lives["tonight"].host_id, now=NOW)
    assert [live.title for live in agenda.past] == ["Terminé"]
    assert "Lundi" in [live.title for live in agenda.coming]
    assert "Fini" not in [live.title for live in agenda.coming]


async def test_personal_agenda_excludes_others(database: Database, lives: dict[str, Live]) -> None:
    stranger = await make_user(database, "Lea")
    async with database.session() as session:
        agenda = await service.personal_agenda(session, stranger.id, now=NOW)
        all_lives = await service.lives_of_person(session, stranger.id, limit=100)
    assert agenda.coming == []
    assert agenda.past == []
    assert all_lives == []


async def end_with_recording(
    database: Database, live: Live, ended_at: datetime, *statuses: RecordingStatus
) -> None:
    """Move a scheduled live to ended at `ended_at`, with one recording per status."""
    async with database.session() as session:
        stored = await service.get_live(session, live.id)
        assert stored is not None
        await lifecycle.transition(session, stored, LiveState.LIVE)
        await lifecycle.transition(session, stored, LiveState.ENDED)
        stored.ended_at = ended_at
        for status in statuses:
            session.add(Recording(live_id=live.id, status=status, node_name="test"))
        await session.commit()


async def test_recent_replays_ready_latest_first(database: Database) -> None:
    host = await make_user(database, "Claire")
    day = date(2026, 12, 3)
    titles = ["Premier", "Deuxième", "Échoué", "Sans enregistrement", "Troisième", "Repris"]
    lives_by_title = {
        title: await make_live(database, host, title, day, time(20, 30)) for title in titles
    }
    evening = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)
    ready = RecordingStatus.READY
    failed = RecordingStatus.FAILED
    await end_with_recording(database, lives_by_title["Premier"], evening, ready)
    await end_with_recording(
        database, lives_by_title["Deuxième"], evening + timedelta(hours=2), ready
    )
    await end_with_recording(
        database, lives_by_title["Échoué"], evening + timedelta(hours=3), failed
    )
    await end_with_recording(
        database, lives_by_title["Sans enregistrement"], evening + timedelta(hours=4)
    )
    await end_with_recording(
        database, lives_by_title["Troisième"], evening + timedelta(hours=1), ready
    )
    # a live resumed after an interruption: its first stretch failed, its second is ready
    await end_with_recording(
        database, lives_by_title["Repris"], evening + timedelta(hours=5), failed, ready
    )
    # ready recordings of lives that are not ended yet stay off the list
    on_air = await make_live(
        database, host, "En direct", day, time(22, 0), states=(LiveState.LIVE,)
    )
    async with database.session() as session:
        session.add(Recording(live_id=on_air.id, status=ready, node_name="test"))
        await session.commit()

    async with database.session() as session:
        replays = await recent_replays(session)
        first_two = await recent_replays(session, limit=2)
    assert [live.title for live in replays] == ["Repris", "Deuxième", "Troisième", "Premier"]
    assert [live.title for live in first_two] == ["Repris", "Deuxième"]
    assert replays[0].host.display_name == "Claire"
