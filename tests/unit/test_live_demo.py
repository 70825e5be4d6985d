"""Demo data created at each start with --demo: idempotent, and a live this evening."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from accounts import service as accounts_service
from accounts.models import User
from core.database import Database
from core.timezones import to_local
from live import demo, service
from live.models import Live, Registration


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}")
    await db.create_schema()
    yield db
    await db.dispose()


@pytest.mark.parametrize(
    ("now", "expected_paris"),
    [
        # 09:00 in Paris: tonight at 20:30.
        (datetime(2026, 12, 4, 8, 0, tzinfo=UTC), datetime(2026, 12, 4, 20, 30)),
        # 19:59 in Paris: still tonight at 20:30.
        (datetime(2026, 12, 4, 18, 59, tzinfo=UTC), datetime(2026, 12, 4, 20, 30)),
        # 20:00:30 in Paris: the first whole minute ten minutes from now.
        (datetime(2026, 12, 4, 19, 0, 30, tzinfo=UTC), datetime(2026, 12, 4, 20, 11)),
        # 23:55 in Paris: shortly after midnight.
        (datetime(2026, 12, 4, 22, 55, tzinfo=UTC), datetime(2026, 12, 5, 0, 6)),
        # Summer time: still 20:30 Paris time.
        (datetime(2026, 7, 1, 10, 0, tzinfo=UTC), datetime(2026, 7, 1, 20, 30)),
    ],
)
def test_demo_start_tonight_or_soon(now: datetime, expected_paris: datetime) -> None:
    start = demo.demo_start(now)
    assert start.replace(tzinfo=None) == expected_paris
    assert start > now


async def test_demo_data_is_idempotent(database: Database, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    first = await demo.ensure_demo_data(database, data_dir, now=now)
    second = await demo.ensure_demo_data(database, data_dir, now=now)

    assert second.host.id == first.host.id
    assert second.viewer.id == first.viewer.id
    assert second.live.id == first.live.id
    assert second.password == first.password
    assert (data_dir / demo.DEMO_PASSWORD_FILE).stat().st_mode & 0o777 == 0o600
    async with database.session() as session:
        live_count = await session.scalar(select(func.count()).select_from(Live))
        registration_count = await session.scalar(select(func.count()).select_from(Registration))
        registered = await service.is_registered(session, first.live.id, first.viewer.id)
    assert live_count == 1
    assert registration_count == 1
    assert registered is True
    assert to_local(first.live.starts_at, "Europe/Paris").strftime("%H:%M") == "20:30"


async def test_demo_accounts_log_in(database: Database, tmp_path: Path) -> None:
    data = await demo.ensure_demo_data(database, tmp_path / "data")
    async with database.session() as session:
        for email in (demo.DEMO_HOST_EMAIL, demo.DEMO_VIEWER_EMAIL):
            user = await accounts_service.authenticate(session, email, data.password)
            assert user is not None, email


async def test_demo_follows_new_password_file(database: Database, tmp_path: Path) -> None:
    """Guards against demo accounts locked out after the password file was deleted."""
    data_dir = tmp_path / "data"
    first = await demo.ensure_demo_data(database, data_dir)
    (data_dir / demo.DEMO_PASSWORD_FILE).unlink()
    second = await demo.ensure_demo_data(database, data_dir)
    assert second.password != first.password
    async with database.session() as session:
        user = await accounts_service.authenticate(session, demo.DEMO_HOST_EMAIL, second.password)
    assert user is not None


async def test_demo_schedules_again_after_end(database: Database, tmp_path: Path) -> None:
    """The next day's start gets a new live once yesterday's is over."""
    data_dir = tmp_path / "data"
    first = await demo.ensure_demo_data(
        database, data_dir, now=datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    )
    second = await demo.ensure_demo_data(
        database, data_dir, now=datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    )
    assert second.live.id != first.live.id
    assert to_local(second.live.starts_at, "Europe/Paris").date().isoformat() == "2026-12-05"


def test_demo_banner_gives_log_in_details(tmp_path: Path) -> None:
    data = demo.DemoData(
        host=User(id=1, email=demo.DEMO_HOST_EMAIL, display_name="Camille"),
        viewer=User(id=2, email=demo.DEMO_VIEWER_EMAIL, display_name="Sacha"),
        live=Live(
            id=7,
            title=demo.DEMO_TITLE,
            starts_at=datetime(2026, 12, 4, 19, 30, tzinfo=UTC),
            duration_minutes=60,
        ),
        password="mot-de-passe-de-demo",
        password_file=tmp_path / demo.DEMO_PASSWORD_FILE,
    )
    banner = demo.demo_banner(data, "http://127.0.0.1:8000/")
    assert "http://127.0.0.1:8000/lives/7" in banner
    assert demo.DEMO_HOST_EMAIL in banner
    assert demo.DEMO_VIEWER_EMAIL in banner
    assert "mot-de-passe-de-demo" in banner
    assert "vendredi 4 décembre 2026 à 20:30" in banner
