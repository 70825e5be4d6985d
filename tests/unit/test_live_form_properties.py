"""Property tests of the schedule form: every input is either stored faithfully or
rejected with a documented LiveError, on SQLite and PostgreSQL."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, time, timedelta

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from accounts import service as accounts_service
from core.database import Database
from core.timezones import TIME_ZONES, local_to_utc
from live import service
from live.service import LiveError

# A Friday at 13:00 in Paris, passed as `now` so that no example depends on the clock.
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)

# Every code schedule_live and parse_details may raise, each with a French message.
DOCUMENTED_CODES = {
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
}

# Examples per backend, below Hypothesis's default of 100 to keep the suite fast:
# every stored example commits a live.
EXAMPLES = 60

# Any form value a browser can send: text from the whole of Unicode except
# surrogates, which form decoding never produces.
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=150)
# Letters, marks, digits, punctuation, symbols (emoji) and spaces, as a teacher types.
typed = st.characters(categories=("L", "M", "N", "P", "S", "Zs"))
any_day = st.dates().map(date.isoformat)
any_time = st.times().map(time.isoformat)

# Maps each form field to values a person would enter.
VALID_VALUES: dict[str, st.SearchStrategy[str]] = {
    "title": st.text(typed, min_size=1, max_size=120),
    "description": st.lists(
        st.one_of(st.text(typed, max_size=30), st.sampled_from(["\n", "\r\n", "\t"])),
        max_size=12,
    ).map("".join),
    # Days in and around the window a live may be scheduled in.
    "start_day": st.dates(NOW.date() - timedelta(days=3), NOW.date() + timedelta(days=410)).map(
        date.isoformat
    ),
    "start_time": st.times().map(lambda moment: moment.strftime("%H:%M")),
    "time_zone": st.sampled_from(sorted(TIME_ZONES)),
    "duration_minutes": st.integers(5, 240).map(str),
}
# Maps each form field to values that are wrong or hostile for it.
HOSTILE_VALUES: dict[str, st.SearchStrategy[str]] = {
    "title": st.one_of(any_text, st.text(typed, min_size=121, max_size=200)),
    "description": any_text,
    # Any day up to the ends of datetime's range.
    "start_day": st.one_of(any_day, any_text),
    "start_time": st.one_of(any_time, any_text),
    "time_zone": any_text,
    "duration_minutes": st.one_of(st.integers(-10, 10**6).map(str), any_text),
}


@st.composite
def forms(draw: st.DrawFn) -> dict[str, str]:
    """Draw a form a person would fill in, with up to two fields replaced by hostile
    values, so that about a quarter of the forms are stored."""
    form = {field: draw(values) for field, values in VALID_VALUES.items()}
    for field in draw(st.sets(st.sampled_from(sorted(form)), max_size=2)):
        form[field] = draw(HOSTILE_VALUES[field])
    return form


def cleaned(raw: str) -> str:
    """The stored form of a title or description: CR LF as LF, NFC, trimmed."""
    return unicodedata.normalize("NFC", raw.replace("\r\n", "\n")).strip()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(form=forms())
@example(
    form={
        "title": "Cartes mentales",
        "description": "",
        "start_day": "0001-01-01",
        "start_time": "00:10",
        "time_zone": "Pacific/Noumea",
        "duration_minutes": "60",
    }
)
@example(
    form={
        "title": "Cartes mentales",
        "description": "",
        "start_day": "9999-12-31",
        "start_time": "23:30",
        "time_zone": "America/Cayenne",
        "duration_minutes": "60",
    }
)
@example(
    form={
        "title": "e\u0301" * 120,
        "description": "Ligne 1\r\nLigne 2",
        "start_day": "2026-12-10",
        "start_time": "20:30:59.999",
        "time_zone": "Indian/Reunion",
        "duration_minutes": " 60 ",
    }
)
async def test_schedule_form_stores_or_rejects(database: Database, form: dict[str, str]) -> None:
    """No input crashes the form: each is stored as entered, cleaned, or rejected with
    a documented code and a French message."""
    async with database.session() as session:
        host = await accounts_service.get_user(session, 1)
        if host is None:
            host = await accounts_service.create_user(
                session,
                email="claire@example.org",
                display_name="Claire",
                password="correct horse battery",
            )
    try:
        details = service.parse_details(**form)
        async with database.session() as session:
            live = await service.schedule_live(session, host.id, details, now=NOW)
    except LiveError as error:
        event(error.code)
        assert error.code in DOCUMENTED_CODES
        assert error.message
        return

    event("accepted")
    async with database.session() as session:
        stored = await service.get_live(session, live.id)
    assert stored is not None
    assert stored.title == cleaned(form["title"])
    assert stored.description == cleaned(form["description"])
    assert NOW < stored.starts_at <= NOW + timedelta(days=service.SCHEDULE_HORIZON_DAYS)

    # What the edit form shows is what was entered, to the minute.
    reread = service.details_of(stored)
    assert reread.start_day == details.start_day
    assert reread.start_time == details.start_time
    assert reread.time_zone == form["time_zone"]
    assert reread.duration_minutes == int(form["duration_minutes"])


# the schedule form's default start

# 23:28 in Paris on Friday 4 December 2026, when 20:30 has passed.
LATE_EVENING = datetime(2026, 12, 4, 22, 28, tzinfo=UTC)


def test_default_start_today_or_tomorrow() -> None:
    cases = [
        # (now, zone, expected day)
        (NOW, "Europe/Paris", date(2026, 12, 4)),
        (LATE_EVENING, "Europe/Paris", date(2026, 12, 5)),
        # 20:30 exactly is no longer ahead
        (datetime(2026, 12, 4, 19, 30, tzinfo=UTC), "Europe/Paris", date(2026, 12, 5)),
        # 02:28 on Saturday in La Réunion: tonight is Saturday evening
        (LATE_EVENING, "Indian/Reunion", date(2026, 12, 5)),
        # 12:28 on Friday in Tahiti, whose evening is still ahead
        (LATE_EVENING, "Pacific/Tahiti", date(2026, 12, 4)),
    ]
    for now, zone_name, expected_day in cases:
        day, wall_time = service.default_start(zone_name, now=now)
        assert day == expected_day, (now, zone_name)
        assert wall_time == time(20, 30), (now, zone_name)


@given(
    now=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    zone_name=st.sampled_from(sorted(TIME_ZONES)),
)
def test_default_start_is_ahead(now: datetime, zone_name: str) -> None:
    """Guards against a form that offered an evening already past, which the server
    then rejected with start_in_past."""
    day, wall_time = service.default_start(zone_name, now=now)
    starts_at = local_to_utc(day, wall_time, zone_name)
    assert starts_at > now
    # at most a day ahead, plus the hour of a change to winter time
    assert starts_at - now <= timedelta(hours=25)
