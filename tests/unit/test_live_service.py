"""Scheduling, editing and cancelling lives against a real SQLite database."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from accounts import service as accounts_service
from accounts.models import User
from core.database import Database
from live import lifecycle, service
from live.models import Live, LiveState
from live.service import LiveError

# A Friday at 13:00 in Paris. Every test passes it as `now`, so none depends on the clock.
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

VALID_FORM = {
    "title": "Les cartes mentales en classe",
    "description": "Construire une carte mentale avec sa classe.",
    "start_day": "2026-12-10",
    "start_time": "20:30",
    "time_zone": "Europe/Paris",
    "duration_minutes": "60",
}


async def make_user(database: Database, name: str, time_zone: str = "Europe/Paris") -> User:
    async with database.session() as session:
        return await accounts_service.create_user(
            session,
            email=f"{name.lower()}@example.org",
            display_name=name,
            password="correct horse battery",
            time_zone=time_zone,
        )


async def schedule_from_form(database: Database, host: User, **changes: str) -> Live:
    form = {**VALID_FORM, **changes}
    async with database.session() as session:
        return await service.schedule_live(session, host.id, service.parse_details(**form), now=NOW)


async def test_schedule_stores_wall_time_as_utc(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    assert live.starts_at == datetime(2026, 12, 10, 19, 30, tzinfo=UTC)
    assert live.time_zone == "Europe/Paris"
    assert live.state is LiveState.SCHEDULED
    assert live.host.display_name == "Claire"
    assert live.sequence == 0


async def test_schedule_in_reunion_zone(database: Database) -> None:
    host = await make_user(database, "Nadia", time_zone="Indian/Reunion")
    live = await schedule_from_form(database, host, time_zone="Indian/Reunion")
    # La Réunion is UTC+4 all year.
    assert live.starts_at == datetime(2026, 12, 10, 16, 30, tzinfo=UTC)


async def test_schedule_cleans_title_and_description(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(
        database, host, title="  Gestion du stress  ", description="Ligne 1\r\nLigne 2\n"
    )
    assert live.title == "Gestion du stress"
    assert live.description == "Ligne 1\nLigne 2"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"title": "   "}, "title_missing"),
        ({"title": "x" * 121}, "title_too_long"),
        ({"title": "Cartes\u202emales"}, "title_invalid"),
        ({"title": "Cartes\nmentales"}, "title_invalid"),
        ({"description": "x" * 5001}, "description_too_long"),
        ({"description": "texte\x00caché"}, "description_invalid"),
        ({"start_day": "10/12/2026"}, "start_day_invalid"),
        ({"start_day": ""}, "start_day_invalid"),
        ({"start_time": "20h30"}, "start_time_invalid"),
        ({"duration_minutes": "une heure"}, "duration_invalid"),
        ({"duration_minutes": "4"}, "duration_out_of_range"),
        ({"duration_minutes": "241"}, "duration_out_of_range"),
        ({"time_zone": "Europe/Berlin"}, "time_zone_invalid"),
        # 02:30 does not exist in Paris on the night summer time starts.
        ({"start_day": "2027-03-28", "start_time": "02:30"}, "start_time_nonexistent"),
        ({"start_day": "2026-12-03"}, "start_in_past"),
        ({"start_day": "2026-12-04", "start_time": "13:00"}, "start_in_past"),
        ({"start_day": "2028-12-10"}, "start_too_far"),
        # Converted to UTC, these leave datetime's range, which raised OverflowError.
        (
            {"start_day": "0001-01-01", "start_time": "00:10", "time_zone": "Pacific/Noumea"},
            "start_day_invalid",
        ),
        (
            {"start_day": "9999-12-31", "start_time": "23:30", "time_zone": "America/Cayenne"},
            "start_day_invalid",
        ),
    ],
)
async def test_schedule_rejects_invalid_value(
    database: Database, changes: dict[str, str], code: str
) -> None:
    host = await make_user(database, "Claire")
    with pytest.raises(LiveError) as raised:
        await schedule_from_form(database, host, **changes)
    assert raised.value.code == code
    assert raised.value.message


@pytest.mark.parametrize(
    "changes",
    [
        {"title": "x" * 120},
        {"title": "👩‍🏫 Cartes mentales"},
        {"description": "x" * 5000},
        {"description": ""},
        {"duration_minutes": "5"},
        {"duration_minutes": "240"},
        {"start_day": "2026-12-04", "start_time": "13:01"},
        # The autumn change makes 02:30 happen twice; the first occurrence is taken.
        {"start_day": "2027-10-31", "start_time": "02:30"},
    ],
)
async def test_schedule_accepts_limit_values(database: Database, changes: dict[str, str]) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host, **changes)
    assert live.id is not None


async def test_schedule_counts_title_in_code_points(database: Database) -> None:
    host = await make_user(database, "Claire")
    # 120 emoji are 240 UTF-16 code units but 120 characters.
    live = await schedule_from_form(database, host, title="🎓" * 120)
    assert len(live.title) == 120


async def test_no_error_code_is_missing_from_table() -> None:
    """Guards against a new error code in the service that no test exercises."""
    source = Path(service.__file__).read_text()
    tested = {
        "title_missing",
        "title_too_long",
        "title_invalid",
        "description_too_long",
        "description_invalid",
        "start_day_invalid",
        "start_time_invalid",
        "duration_invalid",
        "duration_out_of_range",
        "time_zone_invalid",
        "start_time_nonexistent",
        "start_in_past",
        "start_too_far",
        # Tested below and in test_live_registration.py.
        "live_not_found",
        "not_host",
        "live_cancelled",
        "live_already_started",
        "host_cannot_register",
        "live_ended",
        # Tested in tests/integration/test_moderation.py.
        "removed",
    }
    raised = set(re.findall(r'LiveError\(\s*"([a-z_]+)"', source))
    assert raised == tested


async def test_edit_replaces_details_and_raises_sequence(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    details = service.parse_details(
        **{**VALID_FORM, "title": "Nouveau titre", "start_time": "21:00"}
    )
    async with database.session() as session:
        edited = await service.edit_live(session, live.id, host.id, details, now=NOW)
    assert edited.title == "Nouveau titre"
    assert edited.starts_at == datetime(2026, 12, 10, 20, 0, tzinfo=UTC)
    assert edited.sequence == 1
    assert edited.updated_at == NOW


async def test_edit_keeps_past_start_when_unchanged(database: Database) -> None:
    """Guards against a late live whose host cannot fix a typo any more."""
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    late = live.starts_at + timedelta(minutes=5)
    details = service.parse_details(**{**VALID_FORM, "title": "Titre corrigé"})
    async with database.session() as session:
        edited = await service.edit_live(session, live.id, host.id, details, now=late)
    assert edited.title == "Titre corrigé"


async def test_edit_rejects_new_start_in_past(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    details = service.parse_details(**{**VALID_FORM, "start_day": "2026-12-01"})
    async with database.session() as session:
        with pytest.raises(LiveError) as raised:
            await service.edit_live(session, live.id, host.id, details, now=NOW)
    assert raised.value.code == "start_in_past"


async def test_edit_rejects_other_person(database: Database) -> None:
    host = await make_user(database, "Claire")
    other = await make_user(database, "Paul")
    live = await schedule_from_form(database, host)
    async with database.session() as session:
        with pytest.raises(LiveError) as raised:
            await service.edit_live(session, live.id, other.id, service.details_of(live), now=NOW)
    assert raised.value.code == "not_host"


async def test_details_of_round_trips_wall_time(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host, time_zone="Pacific/Noumea")
    details = service.details_of(live)
    assert details.start_time == time(20, 30)
    assert details.start_day.isoformat() == "2026-12-10"
    assert details.time_zone == "Pacific/Noumea"


async def test_cancel_before_start(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    async with database.session() as session:
        cancelled = await service.cancel_live(session, live.id, host.id, now=NOW)
    assert cancelled.state is LiveState.CANCELLED
    assert cancelled.sequence == 1


async def test_cancel_from_open_lobby(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    async with database.session() as session:
        loaded = await service.get_live(session, live.id)
        assert loaded is not None
        await lifecycle.transition(session, loaded, LiveState.OPEN)
        cancelled = await service.cancel_live(session, live.id, host.id)
    assert cancelled.state is LiveState.CANCELLED


async def test_cancel_twice_is_noop(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    async with database.session() as session:
        await service.cancel_live(session, live.id, host.id)
        again = await service.cancel_live(session, live.id, host.id)
    assert again.state is LiveState.CANCELLED
    assert again.sequence == 1


@pytest.mark.parametrize("started_state", [LiveState.LIVE, LiveState.ENDED])
async def test_cancel_rejected_after_start(database: Database, started_state: LiveState) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    async with database.session() as session:
        loaded = await service.get_live(session, live.id)
        assert loaded is not None
        await lifecycle.transition(session, loaded, LiveState.LIVE)
        if started_state is LiveState.ENDED:
            await lifecycle.transition(session, loaded, LiveState.ENDED)
        with pytest.raises(LiveError) as raised:
            await service.cancel_live(session, live.id, host.id)
    assert raised.value.code == "live_already_started"


async def test_cancel_rejects_other_person(database: Database) -> None:
    host = await make_user(database, "Claire")
    other = await make_user(database, "Paul")
    live = await schedule_from_form(database, host)
    async with database.session() as session:
        with pytest.raises(LiveError) as raised:
            await service.cancel_live(session, live.id, other.id)
        unchanged = await service.get_live(session, live.id)
    assert raised.value.code == "not_host"
    assert unchanged is not None
    assert unchanged.state is LiveState.SCHEDULED


async def test_edit_rejected_after_cancel(database: Database) -> None:
    host = await make_user(database, "Claire")
    live = await schedule_from_form(database, host)
    async with database.session() as session:
        await service.cancel_live(session, live.id, host.id)
        with pytest.raises(LiveError) as raised:
            await service.edit_live(session, live.id, host.id, service.details_of(live), now=NOW)
    assert raised.value.code == "live_cancelled"


async def test_cancel_unknown_live(database: Database) -> None:
    host = await make_user(database, "Claire")
    async with database.session() as session:
        with pytest.raises(LiveError) as raised:
            await service.cancel_live(session, 999, host.id)
    assert raised.value.code == "live_not_found"
