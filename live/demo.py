"""Demo data for `server.py --demo`: a host, a colleague and a live this evening.

Running it again at each start is safe: it reuses the accounts, and creates a new live
only when the demo host has none still to come. The password is generated once and
kept in the data folder, so a demo exposed on a network does not share a published
password.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts import service as accounts_service
from accounts.models import User
from accounts.service import AccountError
from core.database import Database, utc_now
from core.settings import DEFAULT_TIME_ZONE, Settings
from core.timezones import format_local, to_local
from live import service
from live.models import Live, LiveState

logger = logging.getLogger(__name__)

DEMO_HOST_EMAIL = "animatrice@demo.veillee.test"
DEMO_HOST_NAME = "Camille Martin (démo)"
DEMO_VIEWER_EMAIL = "collegue@demo.veillee.test"
DEMO_VIEWER_NAME = "Sacha Bernard (démo)"
DEMO_PASSWORD_FILE = "demo_password"  # noqa: S105 - a file name, not a password
# The demo live starts at the usual evening slot, Paris time.
DEMO_START_TIME = time(20, 30)
# From this time on, 20:30 is too close or past, so the live starts soon instead.
DEMO_LATE_AFTER = time(20, 0)
DEMO_SOON_DELAY = timedelta(minutes=10)
DEMO_DURATION_MINUTES = 60
DEMO_TITLE = "Les cartes mentales en classe"
DEMO_DESCRIPTION = (
    "Un live de démonstration : comment construire une carte mentale avec sa classe, "
    "du CM1 à la terminale, et s'en servir pour réviser."
)


@dataclass(frozen=True)
class DemoData:
    host: User
    viewer: User
    live: Live
    password: str
    password_file: Path


def load_demo_password(data_dir: Path) -> str:
    """Return the demo password kept in `data_dir`, generating it on first use."""
    path = data_dir / DEMO_PASSWORD_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: when two processes start together, one creates the file and the other
        # reads it.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    with os.fdopen(descriptor, "w") as password_file:
        password_file.write(password + "\n")
    return password


async def _ensure_account(
    session: AsyncSession, email: str, display_name: str, password: str
) -> User:
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        try:
            return await accounts_service.create_user(
                session, email=email, display_name=display_name, password=password
            )
        except AccountError as error:
            if error.code != "email_taken":
                raise
            # Another process sharing the database created it just now.
            user = await session.scalar(select(User).where(User.email == email))
            if user is None:
                raise
    if await accounts_service.authenticate(session, email, password) is None:
        # The password file was deleted and generated again: follow it.
        user.password_hash = PasswordHasher().hash(password)
        await session.commit()
    return user


def demo_start(now: datetime) -> datetime:
    """Return when a demo live created at `now` starts: 20:30 Paris time today, or ten
    minutes from now when it is already 20:00 or later in Paris."""
    local_now = to_local(now, DEFAULT_TIME_ZONE)
    if local_now.time() < DEMO_LATE_AFTER:
        return local_now.replace(
            hour=DEMO_START_TIME.hour, minute=DEMO_START_TIME.minute, second=0, microsecond=0
        )
    soon = local_now + DEMO_SOON_DELAY
    # The next whole minute, as a host would type it in the form.
    return soon.replace(second=0, microsecond=0) + timedelta(minutes=1)


async def _ensure_coming_live(session: AsyncSession, host: User, now: datetime) -> Live:
    hosted = await session.scalars(
        select(Live)
        .where(Live.host_id == host.id, Live.state.not_in([LiveState.ENDED, LiveState.CANCELLED]))
        .order_by(Live.starts_at)
    )
    for live in hosted:
        if service.is_current_or_coming(live, now):
            return live

    start = demo_start(now)
    details = service.LiveDetails(
        title=DEMO_TITLE,
        description=DEMO_DESCRIPTION,
        start_day=start.date(),
        start_time=start.time().replace(tzinfo=None),
        time_zone=DEFAULT_TIME_ZONE,
        duration_minutes=DEMO_DURATION_MINUTES,
    )
    return await service.schedule_live(session, host.id, details, now=now)


async def ensure_demo_data(
    database: Database, data_dir: Path, *, now: datetime | None = None
) -> DemoData:
    """Create or reuse the demo accounts and a coming live, with the colleague registered.

    NOTE: two processes starting together on an empty database may each create a live;
    the demo is meant for one process.
    """
    now = now or utc_now()
    password = load_demo_password(data_dir)
    async with database.session() as session:
        host = await _ensure_account(session, DEMO_HOST_EMAIL, DEMO_HOST_NAME, password)
        viewer = await _ensure_account(session, DEMO_VIEWER_EMAIL, DEMO_VIEWER_NAME, password)
        live = await _ensure_coming_live(session, host, now)
        await service.register(session, live.id, viewer.id)
    logger.info("demo data ready host=%s viewer=%s live=%s", host.id, viewer.id, live.id)
    return DemoData(
        host=host,
        viewer=viewer,
        live=live,
        password=password,
        password_file=data_dir / DEMO_PASSWORD_FILE,
    )


def demo_banner(demo: DemoData, site_url: str) -> str:
    """Return the console text that gives the demo log-in details."""
    site_url = site_url.rstrip("/")
    starts = format_local(demo.live.starts_at, DEFAULT_TIME_ZONE)
    return "\n".join(
        [
            "",
            "=" * 72,
            "Démo Veillée / Veillée demo",
            f"  Site : {site_url}/",
            f"  Live de démonstration / demo live : {site_url}/lives/{demo.live.id}",
            f"    {demo.live.title}, {starts} (heure de Paris / Paris time)",
            f"  Animatrice / host    : {DEMO_HOST_EMAIL}",
            f"  Collègue / attendee  : {DEMO_VIEWER_EMAIL}",
            f"  Mot de passe des deux comptes / password of both accounts : {demo.password}",
            f"  (conservé dans / kept in {demo.password_file})",
            f"  Mentorat / mentoring : {site_url}/mentoring/inbox",
            "    une demande de la collègue attend l'animatrice / "
            "a request of the attendee awaits the host",
            "=" * 72,
            "",
        ]
    )


def print_demo_banner(demo: DemoData, settings: Settings) -> None:
    """Print the demo log-in details on standard output."""
    site_url = settings.site_url or f"http://{settings.host}:{settings.port}"
    # Printed, never logged: the password of these throwaway accounts is meant to be read.
    print(demo_banner(demo, site_url), flush=True)
