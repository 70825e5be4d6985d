"""The in-process application that the HTTP property tests send generated requests to,
with the people and rows those requests name, on SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from sqlalchemy import delete, select, update

import server
from accounts import service as accounts_service
from accounts.models import RateLimitEvent, Role, User
from core.database import Database, utc_now
from core.settings import Settings
from live import calendar
from live.models import Live, LiveState
from mentoring.validation import OfferDetails
from recordings.models import Recording, RecordingStatus
from tests.support.clients import csrf_from
from tests.support.postgres import PostgresServer

T = TypeVar("T")

SECRET_KEY = "fuzz-secret-key-" + "k" * 24
SESSION_COOKIE = "veillee_session"
PASSWORD = "correct horse battery"
CLAIRE_EMAIL = "claire@example.org"
# The bytes served as the recording's video, which differ from one offset to the next
# within each 256 bytes, so that a wrong range shows in the body.
VIDEO_BYTES = bytes(range(256)) * 40
# Statuses a request may get; 500 and above are defects.
CLIENT_ERRORS = range(400, 500)
# French words that every error page and error JSON of the service contains one of.
_FRENCH_HINT = re.compile(
    r"[àâçéèêëîïôûùüÿœ]|Connectez|Cette|Ce |Le |La |Les |Vous|Indiquez|Choisissez|Trop"
)


class SiteClient:
    """An httpx client of the in-process application, driven from synchronous tests
    through the portal whose event loop runs the application."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self.portal = portal
        self.client = client
        self.cookies = client.cookies

    def request(self, method: str, url: str, **options: Any) -> httpx.Response:
        return self.portal.call(functools.partial(self.client.request, method, url, **options))

    def get(self, url: str, **options: Any) -> httpx.Response:
        return self.request("GET", url, **options)

    def post(self, url: str, **options: Any) -> httpx.Response:
        return self.request("POST", url, **options)


@dataclass(repr=False)
class FuzzSite:
    """The running application, Claire's session (a host who is also operator), Karim
    as an available mentor, Claire's live with a ready recording, and her feed token."""

    client: SiteClient
    database: Database
    claire_cookie: str
    claire_csrf: str
    claire_id: int
    karim_id: int
    live_id: int
    recording_id: int
    calendar_token: str

    def __repr__(self) -> str:
        return f"FuzzSite(live_id={self.live_id}, recording_id={self.recording_id})"

    def run(self, work: Callable[[Database], Awaitable[T]]) -> T:
        """Run `work` on the application's event loop, where its database engine lives."""
        return self.client.portal.call(work, self.database)

    def as_claire(self) -> None:
        self.client.cookies.clear()
        self.client.cookies.set(SESSION_COOKIE, self.claire_cookie)

    def as_visitor(self) -> None:
        self.client.cookies.clear()

    def visitor_csrf(self, page: str) -> str:
        """Start a visitor's session on `page` and return its CSRF token."""
        self.as_visitor()
        response = self.client.get(page)
        assert response.status_code == 200, response.status_code
        return csrf_from(response.text)

    def clear_rate_limits(self) -> None:
        """Forget every log-in and reset attempt, so that each example reaches the
        checks behind the rate limit instead of a 429."""

        async def work(database: Database) -> None:
            async with database.session() as session, session.begin():
                await session.execute(delete(RateLimitEvent))

        self.run(work)


def assert_handled(response: httpx.Response) -> None:
    """Check that the response is a success, a redirect or a documented client error
    in French, and never a server error."""
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code in CLIENT_ERRORS:
        assert _FRENCH_HINT.search(response.text), (response.status_code, response.text[:300])


def _set_up(
    site_client: SiteClient, mentoring: Any, database: Database, recordings_dir: Path
) -> FuzzSite:
    """Sign Claire up through the form, then store what the tests need directly."""
    page = site_client.get("/signup")
    response = site_client.post(
        "/signup",
        data={
            "csrf_token": csrf_from(page.text),
            "email": CLAIRE_EMAIL,
            "display_name": "Claire",
            "password": PASSWORD,
            "time_zone": "Europe/Paris",
        },
    )
    assert response.status_code == 303, response.text[:300]
    claire_cookie = site_client.cookies[SESSION_COOKIE]
    claire_csrf = csrf_from(site_client.get("/profile").text)

    video = recordings_dir / "fuzz" / "video.mp4"
    video.parent.mkdir(parents=True, exist_ok=True)
    video.write_bytes(VIDEO_BYTES)

    async def store(database: Database) -> tuple[int, int, int, int, str]:
        async with database.session() as session:
            claire_id = await session.scalar(select(User.id).where(User.email == CLAIRE_EMAIL))
            assert claire_id is not None
            await session.execute(
                update(User).where(User.id == claire_id).values(role=Role.OPERATOR)
            )
            await session.commit()
            karim = await accounts_service.create_user(
                session, email="karim@example.org", display_name="Karim", password=PASSWORD
            )
            now = utc_now()
            live = Live(
                host_id=claire_id,
                title="Les cartes mentales en classe",
                starts_at=now - timedelta(hours=2),
                duration_minutes=45,
                state=LiveState.ENDED,
            )
            session.add(live)
            await session.flush()
            recording = Recording(
                live_id=live.id,
                status=RecordingStatus.READY,
                node_name="fuzz",
                video_path="fuzz/video.mp4",
                poster_path="fuzz/video.mp4",
                duration_seconds=60.0,
                started_at=now - timedelta(hours=2),
                ended_at=now - timedelta(hours=1),
            )
            session.add(recording)
            await session.commit()
            token = await calendar.feed_token(session, claire_id)
            ids = (claire_id, karim.id, live.id, recording.id)
        return (*ids, token)

    claire_id, karim_id, live_id, recording_id, token = site_client.portal.call(store, database)
    offer = OfferDetails(
        disciplines=("mathematiques",),
        levels=("college",),
        academy="lyon",
        presentation="Professeur de mathématiques depuis douze ans.",
        capacity=3,
    )
    site_client.portal.call(mentoring.save_offer, karim_id, offer)
    return FuzzSite(
        client=site_client,
        database=database,
        claire_cookie=claire_cookie,
        claire_csrf=claire_csrf,
        claire_id=claire_id,
        karim_id=karim_id,
        live_id=live_id,
        recording_id=recording_id,
        calendar_token=token,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzSite]:
    """The application on each backend, started once per module and backend."""
    data_dir = tmp_path_factory.mktemp("fuzz-site")
    database_url = None
    if request.param == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        database_url = postgres.create_database()
    settings = Settings(data_dir=data_dir, secret_key=SECRET_KEY, database_url=database_url)
    app = server.create_app(settings)
    with contextlib.ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        stack.enter_context(portal.wrap_async_context_manager(app.router.lifespan_context(app)))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        )
        stack.enter_context(portal.wrap_async_context_manager(client))
        yield _set_up(
            SiteClient(portal, client),
            app.state.mentoring,
            app.state.database,
            settings.recordings_dir,
        )
