"""The live pages through a real server process: forms, one-click registration, the
recording notice, CSRF and log-in checks, and French everywhere."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from accounts.models import User
from core.database import Database
from core.timezones import to_local
from live import lifecycle, service
from live.models import Live, LiveState
from live.service import LiveDetails
from recordings.models import Recording, RecordingStatus
from tests.support.clients import Account, csrf_from, sign_up
from tests.support.processes import ServerProcess

RECORDING_NOTICE = "Ce live et sa discussion sont enregistrés puis proposés en replay."
# English words a French page must not show. "live" and "replay" are French usage here.
ENGLISH_WORDS = re.compile(
    r"\b(Register|Sign in|Sign up|Log in|Log out|Logout|Cancel|Submit|Schedule|Upcoming|"
    r"Tonight|Tomorrow|Not Found|Error|Save|Edit|Delete|Loading|Password|Recording|"
    r"Duration|Start|Title|Join|Host)\b"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("live-pages"))
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

    def sign_up_and_keep(account: Account, time_zone: str = "Europe/Paris") -> httpx.Client:
        client = sign_up(server.url, account, time_zone=time_zone)
        opened.append(client)
        return client

    yield sign_up_and_keep
    for client in opened:
        client.close()


@pytest.fixture
def visitor(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url) as client:
        yield client


def new_account(name: str) -> Account:
    return Account(
        email=f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.org",
        password="correct horse battery",
        display_name=name,
    )


def unique_title(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:6]}"


def page_text(response: httpx.Response) -> str:
    """The page's HTML with entities decoded, so checks read as the person reads."""
    return html.unescape(response.text)


def visible_text(response: httpx.Response) -> str:
    """The text a person reads: no tags, scripts, styles or attribute values."""
    without_code = re.sub(r"<(script|style)\b.*?</\1>", " ", response.text, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", without_code))


def tomorrow_evening_form(title: str) -> dict[str, str]:
    tomorrow = to_local(datetime.now(UTC), "Europe/Paris").date() + timedelta(days=1)
    return {
        "title": title,
        "description": "Une heure pour partager nos pratiques.\nQuestions bienvenues.",
        "start_day": tomorrow.isoformat(),
        "start_time": "20:30",
        "time_zone": "Europe/Paris",
        "duration_minutes": "60",
    }


def schedule_through_form(client: httpx.Client, title: str) -> int:
    form_page = client.get("/lives/new")
    response = client.post(
        "/lives/new",
        data={"csrf_token": csrf_from(form_page.text), **tomorrow_evening_form(title)},
    )
    assert response.status_code == 303, page_text(response)[:2000]
    return int(response.headers["location"].rsplit("/", 1)[1])


def post_with_csrf(client: httpx.Client, page_path: str, action: str) -> httpx.Response:
    page = client.get(page_path)
    return client.post(action, data={"csrf_token": csrf_from(page.text)})


async def user_id_of(database: Database, account: Account) -> int:
    async with database.session() as session:
        user_id = await session.scalar(select(User.id).where(User.email == account.email))
    assert user_id is not None
    return user_id


async def count_lives_titled(database: Database, title: str) -> int:
    async with database.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Live).where(Live.title == title)
        )
    return count or 0


async def count_registrations(database: Database, live_id: int) -> int:
    async with database.session() as session:
        return await service.count_registrations(session, live_id)


async def move_live(database: Database, live_id: int, *states: LiveState) -> None:
    """Move the live through `states`, as signaling does when the host goes on air."""
    async with database.session() as session:
        live = await service.get_live(session, live_id)
        assert live is not None
        for state in states:
            await lifecycle.transition(session, live, state)


async def add_recording(
    database: Database, live_id: int, status: RecordingStatus, reason: str | None = None
) -> None:
    """Store a recording of the live in `status`, as the recorder's node would."""
    async with database.session() as session:
        session.add(
            Recording(live_id=live_id, status=status, failure_reason=reason, node_name="test")
        )
        await session.commit()


# scheduling


async def test_schedule_through_form(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"), "Indian/Reunion")
    form_page = host.get("/lives/new")
    assert form_page.status_code == 200
    # The host's own zone is preselected.
    assert '<option value="Indian/Reunion" selected>' in form_page.text

    title = unique_title("Les cartes mentales")
    live_id = schedule_through_form(host, title)

    page = host.get(f"/lives/{live_id}")
    text = page_text(page)
    assert title in text
    assert "Une heure pour partager nos pratiques." in text
    assert "Vous animez ce live." in text
    assert "Modifier le live" in text
    assert "Programmé" in text
    # 20:30 in Paris tomorrow, shown to a host living in La Réunion.
    local = to_local(await starts_at_of(database, live_id), "Indian/Reunion")
    assert f"à {local:%H:%M}</time>, à l'heure de La Réunion" in text
    assert "Soit 20:30 à l'heure de France métropolitaine (Paris)." in text


async def starts_at_of(database: Database, live_id: int) -> datetime:
    async with database.session() as session:
        live = await service.get_live(session, live_id)
    assert live is not None
    return live.starts_at


async def test_schedule_form_prefills_coming_evening(signed_up: SignUp, database: Database) -> None:
    """At 23:28 the form used to offer today at 20:30, which the server then rejected
    as already past. Whatever the time, the prefilled start is accepted as it is."""
    for zone_name in ("Europe/Paris", "Pacific/Noumea", "America/Cayenne"):
        host = signed_up(new_account("Claire"), zone_name)
        form_page = host.get("/lives/new")
        day = re.search(r'name="start_day" required value="([^"]+)"', form_page.text)
        start_time = re.search(r'name="start_time" required value="([^"]+)"', form_page.text)
        assert day is not None
        assert start_time is not None
        assert start_time.group(1) == "20:30"
        today = to_local(datetime.now(UTC), zone_name).date()
        assert date.fromisoformat(day.group(1)) in (today, today + timedelta(days=1))

        title = unique_title("Prérempli")
        form = {
            **tomorrow_evening_form(title),
            "start_day": day.group(1),
            "start_time": start_time.group(1),
            "time_zone": zone_name,
        }
        response = host.post("/lives/new", data={"csrf_token": csrf_from(form_page.text), **form})
        assert response.status_code == 303, page_text(response)[:2000]
        assert await count_lives_titled(database, title) == 1


async def test_schedule_form_shows_french_error(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    title = unique_title("Trop tôt")
    form = {**tomorrow_evening_form(title), "start_day": "2020-01-06"}
    form_page = host.get("/lives/new")
    response = host.post("/lives/new", data={"csrf_token": csrf_from(form_page.text), **form})
    assert response.status_code == 400
    assert "Cette date et cette heure sont déjà passées." in page_text(response)
    # The person's input is kept, so only the date needs fixing.
    assert f'value="{title}"' in page_text(response)
    assert await count_lives_titled(database, title) == 0


async def test_edit_through_form(signed_up: SignUp) -> None:
    host = signed_up(new_account("Claire"))
    live_id = schedule_through_form(host, unique_title("Premier titre"))
    edit_page = host.get(f"/lives/{live_id}/edit")
    assert edit_page.status_code == 200
    assert 'value="20:30"' in edit_page.text

    new_title = unique_title("Titre corrigé")
    form = {**tomorrow_evening_form(new_title), "start_time": "21:00"}
    response = host.post(
        f"/lives/{live_id}/edit", data={"csrf_token": csrf_from(edit_page.text), **form}
    )
    assert response.status_code == 303
    text = page_text(host.get(f"/lives/{live_id}"))
    assert new_title in text
    assert "à 21:00" in text


async def test_edit_page_only_for_host(signed_up: SignUp) -> None:
    host = signed_up(new_account("Claire"))
    other = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("Le mien"))
    response = other.get(f"/lives/{live_id}/edit")
    assert response.status_code == 403
    assert "Seule la personne qui anime ce live peut le modifier." in page_text(response)


# registration and the recording notice


async def test_register_with_one_click(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("Gestion du stress"))

    before = colleague.get(f"/lives/{live_id}")
    text = page_text(before)
    assert "Aucune inscription pour l'instant" in text
    assert f'action="/lives/{live_id}/register"' in text
    assert "M'inscrire" in text
    # The stage is only for registered colleagues, so everyone reads the notice first.
    assert 'class="stage"' not in text
    assert text.index(RECORDING_NOTICE) < text.index(f'action="/lives/{live_id}/register"')

    response = colleague.post(
        f"/lives/{live_id}/register", data={"csrf_token": csrf_from(before.text)}
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/lives/{live_id}"

    after = page_text(colleague.get(f"/lives/{live_id}"))
    assert "Votre inscription est enregistrée." in after
    assert "1 inscription" in after
    assert "Me désinscrire" in after
    assert 'class="stage"' in after
    assert after.index(RECORDING_NOTICE) < after.index('class="stage"')
    assert await count_registrations(database, live_id) == 1


async def test_register_twice_counts_once(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("Double clic"))
    page = colleague.get(f"/lives/{live_id}")
    token = csrf_from(page.text)
    for _ in range(2):
        response = colleague.post(f"/lives/{live_id}/register", data={"csrf_token": token})
        assert response.status_code == 303
    assert await count_registrations(database, live_id) == 1


async def test_register_while_live(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    latecomer = signed_up(new_account("Lea"))
    live_id = schedule_through_form(host, unique_title("Déjà commencé"))
    await move_live(database, live_id, LiveState.OPEN, LiveState.LIVE)

    page = latecomer.get(f"/lives/{live_id}")
    text = page_text(page)
    assert "En direct" in text
    assert "M'inscrire et rejoindre le live" in text
    assert text.index(RECORDING_NOTICE) < text.index(f'action="/lives/{live_id}/register"')

    response = latecomer.post(
        f"/lives/{live_id}/register", data={"csrf_token": csrf_from(page.text)}
    )
    assert response.status_code == 303
    assert 'class="stage"' in latecomer.get(f"/lives/{live_id}").text
    assert await count_registrations(database, live_id) == 1


async def test_register_rejected_after_end(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("Fini"))
    page = colleague.get(f"/lives/{live_id}")
    await move_live(database, live_id, LiveState.LIVE, LiveState.ENDED)

    response = colleague.post(
        f"/lives/{live_id}/register", data={"csrf_token": csrf_from(page.text)}
    )
    assert response.status_code == 409
    assert "Ce live est terminé : regardez plutôt son replay." in page_text(response)
    assert f'href="/lives/{live_id}/replay"' in response.text
    assert await count_registrations(database, live_id) == 0


async def test_host_sees_no_register_button(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    live_id = schedule_through_form(host, unique_title("Sans bouton"))
    page = host.get(f"/lives/{live_id}")
    assert f'action="/lives/{live_id}/register"' not in page.text
    assert 'class="stage"' in page.text

    forced = host.post(f"/lives/{live_id}/register", data={"csrf_token": csrf_from(page.text)})
    assert forced.status_code == 409
    assert "Vous animez ce live : pas besoin de vous inscrire." in page_text(forced)
    assert await count_registrations(database, live_id) == 0


async def test_unregister_through_form(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("Je me ravise"))
    assert post_with_csrf(colleague, f"/lives/{live_id}", f"/lives/{live_id}/register").is_redirect
    response = post_with_csrf(colleague, f"/lives/{live_id}", f"/lives/{live_id}/unregister")
    assert response.status_code == 303
    text = page_text(colleague.get(f"/lives/{live_id}"))
    assert "M'inscrire" in text
    assert 'class="stage"' not in text
    assert await count_registrations(database, live_id) == 0


async def test_unregister_after_end_keeps_registration(
    signed_up: SignUp, database: Database
) -> None:
    """Guards against an attendee who unregisters from an ended live and so loses its
    chat history for good, since registering again is refused once it has ended."""
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("Trop tard"))
    assert post_with_csrf(colleague, f"/lives/{live_id}", f"/lives/{live_id}/register").is_redirect
    page = colleague.get(f"/lives/{live_id}")
    await move_live(database, live_id, LiveState.LIVE, LiveState.ENDED)

    response = colleague.post(
        f"/lives/{live_id}/unregister", data={"csrf_token": csrf_from(page.text)}
    )

    assert response.status_code == 409
    assert "Ce live est terminé : votre inscription reste" in page_text(response)
    assert await count_registrations(database, live_id) == 1


async def test_logged_out_visitor_sees_notice(signed_up: SignUp, visitor: httpx.Client) -> None:
    host = signed_up(new_account("Claire"))
    live_id = schedule_through_form(host, unique_title("Public"))
    page = visitor.get(f"/lives/{live_id}")
    text = page_text(page)
    assert page.status_code == 200
    assert RECORDING_NOTICE in text
    assert "Une heure pour partager nos pratiques." in text
    assert "Connectez-vous pour vous inscrire" in text
    assert f'href="/login?next=/lives/{live_id}"' in text
    assert 'class="stage"' not in text


# cancelling


async def test_cancel_through_form(signed_up: SignUp, visitor: httpx.Client) -> None:
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    title = unique_title("Reporté")
    live_id = schedule_through_form(host, title)
    post_with_csrf(colleague, f"/lives/{live_id}", f"/lives/{live_id}/register")

    response = post_with_csrf(host, f"/lives/{live_id}", f"/lives/{live_id}/cancel")
    assert response.status_code == 303
    text = page_text(host.get(f"/lives/{live_id}"))
    assert "Ce live est annulé." in text
    assert "Annuler ce live" not in text

    # Gone from the public agenda, still in the colleague's own agenda, marked cancelled.
    assert title not in page_text(visitor.get("/"))
    agenda = page_text(colleague.get("/my-agenda"))
    assert title in agenda
    assert "Annulé" in agenda


async def test_cancel_rejected_for_others(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    other = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("Pas à toi"))
    response = post_with_csrf(other, f"/lives/{live_id}", f"/lives/{live_id}/cancel")
    assert response.status_code == 403
    assert "Seule la personne qui anime ce live peut le modifier ou l'annuler." in page_text(
        response
    )
    async with database.session() as session:
        live = await service.get_live(session, live_id)
    assert live is not None
    assert live.state is LiveState.SCHEDULED


async def test_cancel_rejected_after_start(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    live_id = schedule_through_form(host, unique_title("En cours"))
    page = host.get(f"/lives/{live_id}")
    await move_live(database, live_id, LiveState.LIVE)
    response = host.post(f"/lives/{live_id}/cancel", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 409
    assert "Ce live a déjà commencé" in page_text(response)


# the replay page before its replay is ready


async def test_replay_page_explains_each_case(signed_up: SignUp, database: Database) -> None:
    """The replay page used to say "Ce live n'a pas été enregistré." even before the
    live had taken place."""
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    failure = "L'enregistrement est vide : aucune image ni aucun son n'a été reçu."
    # (case, states the live goes through, recording status, expected sentence)
    cases: list[tuple[str, tuple[LiveState, ...], RecordingStatus | None, str]] = [
        (
            "scheduled",
            (),
            None,
            "Ce live n'a pas encore eu lieu : le replay sera disponible après sa diffusion.",
        ),
        (
            "cancelled",
            (LiveState.CANCELLED,),
            None,
            "Ce live a été annulé : il n'a pas eu lieu, il n'a donc pas de replay.",
        ),
        (
            "on air",
            (LiveState.LIVE,),
            RecordingStatus.RECORDING,
            "Le live est en cours : son replay sera disponible après la fin.",
        ),
        (
            "ended, recorder finishing",
            (LiveState.LIVE, LiveState.ENDED),
            RecordingStatus.RECORDING,
            "Le replay est en préparation. Cette page l'affichera dès qu'il sera prêt.",
        ),
        (
            "processing",
            (LiveState.LIVE, LiveState.ENDED),
            RecordingStatus.PROCESSING,
            "Le replay est en préparation. Cette page l'affichera dès qu'il sera prêt.",
        ),
        (
            "failed",
            (LiveState.LIVE, LiveState.ENDED),
            RecordingStatus.FAILED,
            f"Le replay n'a pas pu être préparé : {failure}",
        ),
        (
            "not recorded",
            (LiveState.LIVE, LiveState.ENDED),
            None,
            "Ce live n'a pas été enregistré.",
        ),
    ]
    for case, states, recording_status, expected in cases:
        live_id = schedule_through_form(host, unique_title(f"Replay {case}"))
        await move_live(database, live_id, *states)
        if recording_status is not None:
            reason = failure if recording_status is RecordingStatus.FAILED else None
            await add_recording(database, live_id, recording_status, reason)

        response = colleague.get(f"/lives/{live_id}/replay")
        assert response.status_code == 200, case
        status_line = re.search(r"<p [^>]*data-replay-status[^>]*>(.*?)</p>", page_text(response))
        assert status_line is not None, case
        assert status_line.group(1).strip() == expected, case
        assert "Chargement de la discussion" not in page_text(response), case

        api = colleague.get(f"/api/lives/{live_id}/replay")
        if recording_status is None:
            assert api.status_code == 404, case
        else:
            assert api.json()["live_state"] == states[-1].value, case


# CSRF and log-in


async def test_csrf_rejected_without_token(signed_up: SignUp, database: Database) -> None:
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("Protégé"))

    title = unique_title("Sans jeton")
    response = host.post("/lives/new", data=tomorrow_evening_form(title))
    assert response.status_code == 403
    assert "Le formulaire a expiré." in page_text(response)
    assert await count_lives_titled(database, title) == 0

    for token in (None, "not-the-session-token"):
        data = {} if token is None else {"csrf_token": token}
        response = colleague.post(f"/lives/{live_id}/register", data=data)
        assert response.status_code == 403
    assert await count_registrations(database, live_id) == 0

    response = host.post(f"/lives/{live_id}/cancel", data={})
    assert response.status_code == 403

    feed_before = feed_url_of(host)
    assert host.post("/calendar/revoke", data={}).status_code == 403
    assert feed_url_of(host) == feed_before


async def test_live_pages_huge_id_not_found(signed_up: SignUp, visitor: httpx.Client) -> None:
    """An id above the id column reached the database driver, which raised, and one of
    more than 4,300 digits failed int() while routing: both were a 500 in English."""
    colleague = signed_up(new_account("Paul"))
    page = colleague.get("/")
    token = csrf_from(page.text)
    for live_id in (str(2**31), str(2**63), "9" * 5000):
        for response in (
            visitor.get(f"/lives/{live_id}"),
            colleague.get(f"/lives/{live_id}"),
            colleague.get(f"/lives/{live_id}/edit"),
            colleague.post(f"/lives/{live_id}/register", data={"csrf_token": token}),
            colleague.post(f"/lives/{live_id}/unregister", data={"csrf_token": token}),
            colleague.post(f"/lives/{live_id}/cancel", data={"csrf_token": token}),
        ):
            assert response.status_code == 404, str(response.url)[:80]
            assert "n'existe pas." in page_text(response)


async def test_logged_out_cannot_schedule(visitor: httpx.Client, database: Database) -> None:
    form_page = visitor.get("/lives/new")
    assert form_page.status_code == 303
    assert form_page.headers["location"] == "/login?next=/lives/new"

    title = unique_title("Anonyme")
    response = visitor.post("/lives/new", data=tomorrow_evening_form(title))
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    assert await count_lives_titled(database, title) == 0


async def test_logged_out_cannot_register(
    signed_up: SignUp, visitor: httpx.Client, database: Database
) -> None:
    host = signed_up(new_account("Claire"))
    live_id = schedule_through_form(host, unique_title("Ouvert à tous"))
    response = visitor.post(f"/lives/{live_id}/register", data={})
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=/lives/{live_id}"
    assert await count_registrations(database, live_id) == 0

    assert visitor.get("/my-agenda").headers["location"] == "/login?next=/my-agenda"
    assert visitor.post("/calendar/revoke", data={}).status_code == 303


# agenda pages


async def test_agenda_lists_tonight_first(
    signed_up: SignUp, visitor: httpx.Client, database: Database
) -> None:
    host_account = new_account("Claire")
    signed_up(host_account)
    host_id = await user_id_of(database, host_account)
    now = datetime.now(UTC)
    titles = [
        unique_title("Sur les ondes"),
        unique_title("Après-demain"),
        unique_title("Plus tard"),
    ]

    async with database.session() as session:
        lives = []
        for title, days_ahead in zip(titles, (0, 2, 6), strict=True):
            start = to_local(now + timedelta(days=days_ahead, minutes=30), "Europe/Paris")
            details = LiveDetails(
                title=title,
                description="",
                start_day=start.date(),
                start_time=start.time().replace(second=0, microsecond=0, tzinfo=None),
                time_zone="Europe/Paris",
                duration_minutes=60,
            )
            lives.append(await service.schedule_live(session, host_id, details))
        # The first one is on air, so it belongs to tonight at any time of day.
        await lifecycle.transition(session, lives[0], LiveState.LIVE)

    text = page_text(visitor.get("/"))
    positions = [text.index(title) for title in titles]
    assert positions == sorted(positions)
    first_heading = re.search(r"<h2[^>]*>([^<]+)</h2>", text)
    assert first_heading is not None
    assert first_heading.group(1) == "Ce soir"
    assert text.index("Ce soir") < positions[0]
    assert "En direct" in text
    assert "Horaires à l'heure de France métropolitaine (Paris)." in text
    start_local = to_local(lives[0].starts_at, "Europe/Paris")
    assert f">{start_local:%H:%M}</time>" in text
    assert f'href="/lives/{lives[0].id}"' in text


async def test_agenda_lists_recent_replays(
    signed_up: SignUp, visitor: httpx.Client, database: Database
) -> None:
    host = signed_up(new_account("Claire"))
    coming = unique_title("Bientôt")
    replayed = unique_title("Déjà diffusé")
    preparing = unique_title("En préparation")
    schedule_through_form(host, coming)
    replayed_id = schedule_through_form(host, replayed)
    preparing_id = schedule_through_form(host, preparing)
    for live_id in (replayed_id, preparing_id):
        await move_live(database, live_id, LiveState.LIVE, LiveState.ENDED)
    await add_recording(database, replayed_id, RecordingStatus.READY)
    await add_recording(database, preparing_id, RecordingStatus.PROCESSING)

    for client in (visitor, host):
        text = page_text(client.get("/"))
        assert '<h2 id="replays-title">Replays récents</h2>' in text
        section = text[text.index("Replays récents") :]
        assert f'<a class="live-title" href="/lives/{replayed_id}/replay">{replayed}</a>' in section
        assert preparing not in text
        assert text.index(coming) < text.index("Replays récents")
    assert "Les replays sont réservés aux membres connectés." in page_text(visitor.get("/"))


async def test_agenda_without_lives_offers_replays(tmp_path: Path) -> None:
    """With no coming live, the agenda used to say only that nothing was scheduled,
    which left no path to the replays of past lives."""
    process = ServerProcess(tmp_path / "empty-agenda")
    db = Database(f"sqlite+aiosqlite:///{process.data_dir / 'veillee.sqlite3'}")
    try:
        with httpx.Client(base_url=process.url) as visitor:
            empty = page_text(visitor.get("/"))
            assert "Aucun live n'est programmé pour l'instant.</p>" in empty
            assert "Replays récents" not in empty

            host = sign_up(process.url, new_account("Claire"))
            title = unique_title("Déjà diffusé")
            live_id = schedule_through_form(host, title)
            host.close()
            await move_live(db, live_id, LiveState.LIVE, LiveState.ENDED)
            await add_recording(db, live_id, RecordingStatus.READY)

            text = page_text(visitor.get("/"))
        assert (
            "Aucun live n'est programmé pour l'instant. "
            "Les replays des derniers lives sont à regarder ci-dessous."
        ) in text
        assert f'href="/lives/{live_id}/replay">{title}</a>' in text
    finally:
        await db.dispose()
        process.stop()


async def test_my_agenda_lists_own_lives(signed_up: SignUp) -> None:
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    hosted = unique_title("Je l'anime")
    attended = unique_title("J'y vais")
    elsewhere = unique_title("Pas pour moi")
    schedule_through_form(colleague, hosted)
    live_id = schedule_through_form(host, attended)
    schedule_through_form(host, elsewhere)
    post_with_csrf(colleague, f"/lives/{live_id}", f"/lives/{live_id}/register")

    page = colleague.get("/my-agenda")
    text = page_text(page)
    assert hosted in text
    assert attended in text
    assert elsewhere not in text
    assert "Vous animez" in text
    assert "Révoquer et créer un nouveau lien" in text
    assert re.search(r'<input type="text" readonly value="http://[^"]+\.ics"', text)


def feed_url_of(client: httpx.Client) -> str:
    match = re.search(r'value="(http://[^"]+\.ics)"', client.get("/my-agenda").text)
    assert match is not None
    return match.group(1)


async def test_pages_are_french(signed_up: SignUp, visitor: httpx.Client) -> None:
    host = signed_up(new_account("Claire"))
    colleague = signed_up(new_account("Paul"))
    live_id = schedule_through_form(host, unique_title("En français"))
    post_with_csrf(colleague, f"/lives/{live_id}", f"/lives/{live_id}/register")

    pages = [
        (visitor, "/", 200),
        (visitor, f"/lives/{live_id}", 200),
        (visitor, "/lives/999999", 404),
        (visitor, "/calendar/inconnu.ics", 404),
        (host, "/", 200),
        (host, "/lives/new", 200),
        (host, f"/lives/{live_id}", 200),
        (host, f"/lives/{live_id}/edit", 200),
        (host, "/my-agenda", 200),
        (colleague, f"/lives/{live_id}", 200),
        (colleague, "/my-agenda", 200),
    ]
    for client, path, status in pages:
        response = client.get(path)
        assert response.status_code == status, path
        assert '<html lang="fr">' in response.text, path
        english = ENGLISH_WORDS.findall(visible_text(response))
        assert english == [], f"{path}: {english}"
    assert "Ce live n'existe pas." in page_text(visitor.get("/lives/999999"))
