"""The live page as a server process renders it in each state of the live and of its
latest recording: the badge, the host's edit and cancel controls, the recording line."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

import recordings.models  # noqa: F401 - registers the recordings table
from core.database import Database
from live import lifecycle, service
from live.models import LiveState
from recordings.models import Recording, RecordingStatus
from tests.support.clients import Account, schedule_live, sign_up
from tests.support.processes import ServerProcess

FAILURE_REASON = "La préparation de la vidéo a échoué à cause d'une erreur du serveur."


@dataclass(frozen=True)
class PageCase:
    """States to move a fresh live through, its recording's status, and what its host reads."""

    states: tuple[LiveState, ...]
    recording: RecordingStatus | None
    badge: str
    recording_line: str
    can_change: bool


CASES = {
    "scheduled": PageCase((), None, "Programmé", "L'enregistrement commencera avec le live.", True),
    "live": PageCase(
        (LiveState.LIVE,), RecordingStatus.RECORDING, "En direct", "Enregistrement en cours.", False
    ),
    "interrupted": PageCase(
        (LiveState.LIVE, LiveState.INTERRUPTED),
        RecordingStatus.RECORDING,
        "Interrompu",
        "L'enregistrement est en pause.",
        False,
    ),
    "interrupted, ready": PageCase(
        (LiveState.LIVE, LiveState.INTERRUPTED),
        RecordingStatus.READY,
        "Interrompu",
        "Le replay est prêt. Voir le replay",
        False,
    ),
    "ended, recorder stopping": PageCase(
        (LiveState.LIVE, LiveState.ENDED),
        RecordingStatus.RECORDING,
        "Terminé",
        "Le replay est en préparation… Page du replay",
        False,
    ),
    "ended, processing": PageCase(
        (LiveState.LIVE, LiveState.ENDED),
        RecordingStatus.PROCESSING,
        "Terminé",
        "Le replay est en préparation… Page du replay",
        False,
    ),
    "ended, ready": PageCase(
        (LiveState.LIVE, LiveState.ENDED),
        RecordingStatus.READY,
        "Terminé",
        "Le replay est prêt. Voir le replay",
        False,
    ),
    "ended, failed": PageCase(
        (LiveState.LIVE, LiveState.ENDED),
        RecordingStatus.FAILED,
        "Terminé",
        f"L'enregistrement a échoué : {FAILURE_REASON} Page du replay",
        False,
    ),
    "ended, not recorded": PageCase(
        (LiveState.LIVE, LiveState.ENDED),
        None,
        "Terminé",
        "Ce live n'a pas été enregistré. Page du replay",
        False,
    ),
    "cancelled": PageCase((LiveState.CANCELLED,), None, "Annulé", "", False),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("live-page-states"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def host(server: ServerProcess) -> Iterator[httpx.Client]:
    account = Account(f"claire-{uuid.uuid4().hex[:8]}@example.org", "cahier de textes", "Claire")
    client = sign_up(server.url, account)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
async def database(server: ServerProcess) -> AsyncIterator[Database]:
    """The server's own SQLite file, opened as a second process would."""
    db = Database(f"sqlite+aiosqlite:///{server.data_dir / 'veillee.sqlite3'}")
    yield db
    await db.dispose()


async def set_up_live(database: Database, live_id: int, case: PageCase) -> None:
    """Move the live through the case's states and give it a recording in its status."""
    async with database.session() as session:
        live = await service.get_live(session, live_id)
        assert live is not None
        for state in case.states:
            await lifecycle.transition(session, live, state)
        if case.recording is not None:
            failed = case.recording is RecordingStatus.FAILED
            session.add(
                Recording(
                    live_id=live_id,
                    status=case.recording,
                    node_name="other-node",
                    failure_reason=FAILURE_REASON if failed else None,
                )
            )
            await session.commit()


def section_text(page: str, attribute: str) -> str:
    """Return the text a person reads in the element carrying `attribute`."""
    match = re.search(rf"<(\w+)[^>]*\b{attribute}\b[^>]*>(.*?)</\1>", page, re.DOTALL)
    assert match is not None, f"no element with {attribute}"
    without_tags = re.sub(r"<[^>]+>", " ", match.group(2))
    return " ".join(html.unescape(without_tags).split())


@pytest.mark.parametrize("name", list(CASES))
async def test_live_page_renders_state(host: httpx.Client, database: Database, name: str) -> None:
    """Guards against a live page that shows a live as programmed, editable or about to
    be recorded after it started, or hides the replay once it is ready."""
    case = CASES[name]
    live_id = schedule_live(host, f"Les cartes mentales {uuid.uuid4().hex[:6]}")
    await set_up_live(database, live_id, case)

    page = host.get(f"/lives/{live_id}")
    assert page.status_code == 200
    assert section_text(page.text, "data-live-badge") == case.badge
    assert section_text(page.text, "data-live-recording") == case.recording_line
    assert ("Modifier le live" in page.text) is case.can_change
    assert ("Annuler ce live" in page.text) is case.can_change
    replay_link = f'href="/lives/{live_id}/replay"'
    ended = LiveState.ENDED in case.states
    assert (replay_link in page.text) is (ended or case.recording is RecordingStatus.READY)
