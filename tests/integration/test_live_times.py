"""Local times of lives across the changes of summer time, on pages and in the iCalendar
feed, with the server process running under TZ=UTC (ServerProcess sets it).

Paris moves from UTC+2 to UTC+1 at 01:00 UTC on the last Sunday of October and back at
01:00 UTC on the last Sunday of March. La Réunion stays at UTC+4 all year.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta

import httpx
import pytest
from icalendar import Calendar, Event
from sqlalchemy import select

from accounts.models import User
from core.database import Database
from core.timezones import to_local
from live import service
from live.models import Live
from live.service import LiveDetails
from tests.support.clients import Account, csrf_from, sign_up
from tests.support.processes import ServerProcess

PARIS = "Europe/Paris"
REUNION = "Indian/Reunion"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("live-times"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
async def database(server: ServerProcess) -> AsyncIterator[Database]:
    """The server's own SQLite file, opened from the test as a second process would."""
    db = Database(f"sqlite+aiosqlite:///{server.data_dir / 'veillee.sqlite3'}")
    yield db
    await db.dispose()


SignUp = Callable[..., httpx.Client]


@pytest.fixture
def signed_up(server: ServerProcess) -> Iterator[SignUp]:
    """Sign up through the form and return the logged-in client, closed after the test."""
    opened: list[httpx.Client] = []

    def sign_up_and_keep(account: Account, time_zone: str = PARIS) -> httpx.Client:
        client = sign_up(server.url, account, time_zone=time_zone)
        opened.append(client)
        return client

    yield sign_up_and_keep
    for client in opened:
        client.close()


def page_text(response: httpx.Response) -> str:
    """The page's HTML with entities decoded, so checks read as the person reads."""
    return html.unescape(response.text)


def new_account(name: str) -> Account:
    return Account(
        email=f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.org",
        password="correct horse battery",
        display_name=name,
    )


async def user_id_of(database: Database, account: Account) -> int:
    async with database.session() as session:
        user_id = await session.scalar(select(User.id).where(User.email == account.email))
    assert user_id is not None
    return user_id


async def schedule_as_of(
    database: Database, host_id: int, day: date, title: str, *, now: datetime
) -> Live:
    """Schedule a 20:30 Paris-time live through the service, validated as of `now`, so
    that dates already past on the machine's clock can still be scheduled."""
    details = LiveDetails(
        title=title,
        description="Un live pour vérifier les horaires.",
        start_day=day,
        start_time=time(20, 30),
        time_zone=PARIS,
        duration_minutes=60,
    )
    async with database.session() as session:
        return await service.schedule_live(session, host_id, details, now=now)


def feed_url_of(client: httpx.Client) -> str:
    page = client.get("/my-agenda")
    assert page.status_code == 200
    match = re.search(r'value="(http://[^"]+/calendar/[A-Za-z0-9_-]+\.ics)"', page.text)
    assert match is not None, "no feed URL on /my-agenda"
    return match.group(1)


def events_by_uid(feed: Calendar) -> dict[str, Event]:
    return {str(event["UID"]): event for event in feed.events}


def last_sunday(year: int, month: int) -> date:
    following_month = date(year + month // 12, month % 12 + 1, 1)
    last_day = following_month - timedelta(days=1)
    return last_day - timedelta(days=(last_day.weekday() - 6) % 7)


# (day, UTC instant of 20:30 in Paris, wall time in La Réunion)
CHANGE_DAYS = [
    # Still summer time the day before the October change: 20:30 is 18:30Z.
    (date(2026, 10, 24), datetime(2026, 10, 24, 18, 30, tzinfo=UTC), "22:30"),
    # The October change day: winter time since 01:00Z that night, so 20:30 is 19:30Z.
    (date(2026, 10, 25), datetime(2026, 10, 25, 19, 30, tzinfo=UTC), "23:30"),
    # Still winter time the day before the March change: 20:30 is 19:30Z.
    (date(2027, 3, 27), datetime(2027, 3, 27, 19, 30, tzinfo=UTC), "23:30"),
    # The March change day: summer time since 01:00Z that night, so 20:30 is 18:30Z.
    (date(2027, 3, 28), datetime(2027, 3, 28, 18, 30, tzinfo=UTC), "22:30"),
]


@pytest.fixture
async def change_day_lives(
    signed_up: SignUp, database: Database
) -> tuple[httpx.Client, httpx.Client, list[Live]]:
    """Return the logged-in clients of a Paris host and a colleague in La Réunion, and the
    host's 20:30 lives on each day of CHANGE_DAYS. The colleague is registered for all."""
    host_account = new_account("Claire")
    colleague_account = new_account("Nadia")
    host = signed_up(host_account, PARIS)
    colleague = signed_up(colleague_account, REUNION)
    host_id = await user_id_of(database, host_account)

    lives = []
    for day, _, _ in CHANGE_DAYS:
        # Scheduled a week ahead, as of a clock a week before the live.
        scheduled_on = datetime.combine(day, time(12, 0), tzinfo=UTC) - timedelta(days=7)
        lives.append(
            await schedule_as_of(database, host_id, day, f"Live du {day}", now=scheduled_on)
        )
    colleague_id = await user_id_of(database, colleague_account)
    async with database.session() as session:
        for live in lives:
            await service.register(session, live.id, colleague_id)
    return host, colleague, lives


async def test_stored_utc_instants(
    change_day_lives: tuple[httpx.Client, httpx.Client, list[Live]],
) -> None:
    _, _, lives = change_day_lives
    for live, (day, expected_utc, _) in zip(lives, CHANGE_DAYS, strict=True):
        assert live.starts_at == expected_utc, day


async def test_live_page_shows_paris_time(
    change_day_lives: tuple[httpx.Client, httpx.Client, list[Live]],
) -> None:
    host, _, lives = change_day_lives
    expected = [
        "samedi 24 octobre 2026 à 20:30",
        "dimanche 25 octobre 2026 à 20:30",
        "samedi 27 mars 2027 à 20:30",
        "dimanche 28 mars 2027 à 20:30",
    ]
    for live, text in zip(lives, expected, strict=True):
        page = host.get(f"/lives/{live.id}")
        assert page.status_code == 200
        assert text in page_text(page)
        assert "heure de France métropolitaine (Paris)" in page_text(page)


async def test_live_page_logged_out_uses_paris(
    server: ServerProcess, change_day_lives: tuple[httpx.Client, httpx.Client, list[Live]]
) -> None:
    _, _, lives = change_day_lives
    with httpx.Client(base_url=server.url) as visitor:
        page = visitor.get(f"/lives/{lives[1].id}")
    assert "dimanche 25 octobre 2026 à 20:30" in page_text(page)
    assert "Connectez-vous pour vous inscrire" in page_text(page)


async def test_live_page_shows_reunion_time(
    change_day_lives: tuple[httpx.Client, httpx.Client, list[Live]],
) -> None:
    _, colleague, lives = change_day_lives
    expected = [
        "samedi 24 octobre 2026 à 22:30",
        "dimanche 25 octobre 2026 à 23:30",
        "samedi 27 mars 2027 à 23:30",
        "dimanche 28 mars 2027 à 22:30",
    ]
    for live, text in zip(lives, expected, strict=True):
        page = colleague.get(f"/lives/{live.id}")
        assert text in page_text(page)
        assert "heure de La Réunion" in page_text(page)
        # The host's own wall time is given too, so both can talk about the same time.
        assert "Soit 20:30 à l'heure de France métropolitaine (Paris)" in page_text(page)


@pytest.mark.parametrize("who", ["host", "colleague"])
async def test_feed_keeps_paris_wall_time(
    change_day_lives: tuple[httpx.Client, httpx.Client, list[Live]], who: str
) -> None:
    host, colleague, lives = change_day_lives
    client = host if who == "host" else colleague
    response = client.get(feed_url_of(client))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/calendar; charset=utf-8"
    feed = Calendar.from_ical(response.content)
    events = events_by_uid(feed)

    for live, (day, expected_utc, _) in zip(lives, CHANGE_DAYS, strict=True):
        event = events[f"live-{live.id}@127.0.0.1"]
        assert event["DTSTART"].params["TZID"] == PARIS
        start = event.decoded("DTSTART")
        assert (start.date(), start.hour, start.minute) == (day, 20, 30)
        assert start.astimezone(UTC) == expected_utc
        end = event.decoded("DTEND")
        assert end.astimezone(UTC) == expected_utc + timedelta(minutes=60)
        assert f"DTSTART;TZID=Europe/Paris:{day:%Y%m%d}T203000" in response.text


async def test_feed_vtimezone_rules_match(
    change_day_lives: tuple[httpx.Client, httpx.Client, list[Live]],
) -> None:
    """Guards against a VTIMEZONE whose rules disagree with the tz database, for the
    calendar applications that read the rules instead of their own zone data."""
    host, _, _ = change_day_lives
    feed = Calendar.from_ical(host.get(feed_url_of(host)).content)
    zones = {zone.tz_name: zone for zone in feed.timezones}
    assert set(zones) == {PARIS}
    rules_only = zones[PARIS].to_tz(lookup_tzid=False)
    for day, expected_utc, _ in CHANGE_DAYS:
        local = datetime.combine(day, time(20, 30), tzinfo=rules_only)
        assert local.astimezone(UTC) == expected_utc, day


async def test_form_schedules_next_march_change(signed_up: SignUp, database: Database) -> None:
    """The schedule form, under TZ=UTC, turns 20:30 Paris time on the next March change
    day into 18:30 UTC. The day is computed so that it is always in the future."""
    today = datetime.now(UTC).date()
    year = today.year if last_sunday(today.year, 3) > today + timedelta(days=1) else today.year + 1
    change_day = last_sunday(year, 3)
    host_account = new_account("Ines")
    host = signed_up(host_account, PARIS)

    form_page = host.get("/lives/new")
    response = host.post(
        "/lives/new",
        data={
            "csrf_token": csrf_from(form_page.text),
            "title": "Le printemps des cartes mentales",
            "description": "",
            "start_day": change_day.isoformat(),
            "start_time": "20:30",
            "time_zone": PARIS,
            "duration_minutes": "45",
        },
    )
    assert response.status_code == 303
    live_id = int(response.headers["location"].rsplit("/", 1)[1])

    async with database.session() as session:
        live = await service.get_live(session, live_id)
    assert live is not None
    assert live.starts_at == datetime.combine(change_day, time(18, 30), tzinfo=UTC)
    page = host.get(f"/lives/{live_id}")
    assert f"{change_day.day} mars {year} à 20:30" in page_text(page)
    event = events_by_uid(Calendar.from_ical(host.get(feed_url_of(host)).content))[
        f"live-{live_id}@127.0.0.1"
    ]
    assert event.decoded("DTSTART").astimezone(UTC) == live.starts_at


# the feed: secret token, revocation, other people's lives, cancellations


async def test_feed_lists_only_own_lives(
    signed_up: SignUp,
    change_day_lives: tuple[httpx.Client, httpx.Client, list[Live]],
) -> None:
    stranger = signed_up(new_account("Paul"))
    response = stranger.get(feed_url_of(stranger))
    assert response.status_code == 200
    feed = Calendar.from_ical(response.content)
    assert feed.events == []


async def test_feed_flags_cancelled_live(signed_up: SignUp, database: Database) -> None:
    host_account = new_account("Claire")
    host = signed_up(host_account)
    colleague = signed_up(new_account("Nadia"), REUNION)
    now = datetime.now(UTC)
    tomorrow = to_local(now + timedelta(days=1), PARIS).date()
    live = await schedule_as_of(
        database, await user_id_of(database, host_account), tomorrow, "Annulé demain", now=now
    )
    page = colleague.get(f"/lives/{live.id}")
    assert (
        colleague.post(
            f"/lives/{live.id}/register", data={"csrf_token": csrf_from(page.text)}
        ).status_code
        == 303
    )

    page = host.get(f"/lives/{live.id}")
    cancel = host.post(f"/lives/{live.id}/cancel", data={"csrf_token": csrf_from(page.text)})
    assert cancel.status_code == 303

    for client in (host, colleague):
        feed = Calendar.from_ical(client.get(feed_url_of(client)).content)
        event = events_by_uid(feed)[f"live-{live.id}@127.0.0.1"]
        assert str(event["STATUS"]) == "CANCELLED"
        assert event.decoded("SEQUENCE") == 1
        assert str(event["SUMMARY"]).startswith("Annulé")


async def test_revoked_feed_returns_404(server: ServerProcess, signed_up: SignUp) -> None:
    client = signed_up(new_account("Lea"))
    old_url = feed_url_of(client)
    assert feed_url_of(client) == old_url
    assert client.get(old_url).status_code == 200

    page = client.get("/my-agenda")
    revoked = client.post("/calendar/revoke", data={"csrf_token": csrf_from(page.text)})
    assert revoked.status_code == 303
    new_url = feed_url_of(client)

    assert new_url != old_url
    with httpx.Client() as calendar_app:
        assert calendar_app.get(old_url).status_code == 404
        assert calendar_app.get(new_url).status_code == 200
        assert calendar_app.get(f"{server.url}/calendar/{'A' * 43}.ics").status_code == 404
        assert calendar_app.get(f"{server.url}/calendar/court.ics").status_code == 404


async def test_feed_needs_no_login(signed_up: SignUp) -> None:
    client = signed_up(new_account("Hugo"))
    url = feed_url_of(client)
    with httpx.Client() as calendar_app:
        response = calendar_app.get(url)
    assert response.status_code == 200
    assert response.content.startswith(b"BEGIN:VCALENDAR")
    assert b"METHOD:PUBLISH" in response.content
    assert "PRODID:-//Veillée//" in response.text
