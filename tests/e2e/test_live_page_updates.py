"""The live page in Debian's Chromium keeps up with the live without a reload: badge,
edit and cancel controls, status line, end card, recording line and replay link."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from core.database import Database
from live import lifecycle, service
from live.models import LiveState
from recordings.models import Recording, RecordingStatus
from tests.e2e.browser import FakeMedia, launch_chromium, make_fake_media, record_console
from tests.support.clients import Account, register_for_live, schedule_live, sign_up
from tests.support.processes import PROJECT_DIR, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts" / "live-page-updates"
HOST = Account("claire.dubois@example.org", "cartes-mentales-2026", "Claire Dubois")
ATTENDEE = Account("ines.martin@example.org", "bonsoir-a-toutes-2026", "Inès Martin")
PAGE_TIMEOUT_MS = 15_000
# Negotiation, ICE checks and the first frame at the server take a few seconds.
MEDIA_TIMEOUT_MS = 45_000
# Finishing a few seconds of recording into an MP4 with its poster.
READY_TIMEOUT_MS = 120_000


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(data_dir)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def host_client(server: ServerProcess) -> Iterator[httpx.Client]:
    client = sign_up(server.url, HOST)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def attendee_client(server: ServerProcess) -> Iterator[httpx.Client]:
    client = sign_up(server.url, ATTENDEE)
    try:
        yield client
    finally:
        client.close()


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_host_page_follows_live(
    server: ServerProcess, host_client: httpx.Client, tmp_path: Path
) -> None:
    """Guards against a host page that still shows Programmé and offers to edit or
    cancel the live while it is on air, or never shows the replay once it is ready."""
    media: FakeMedia = make_fake_media(tmp_path / "media")
    live_id = schedule_live(host_client, "Les cartes mentales en classe de seconde")
    console: list[str] = []
    with sync_playwright() as playwright, launch_chromium(playwright, media) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in host_client.cookies.items()
            ]
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        record_console(page, console)
        page.goto(f"{server.url}/lives/{live_id}")

        badge = page.locator("[data-live-badge] .badge")
        recording_line = page.locator("[data-live-recording]")
        edit_link = page.get_by_role("link", name="Modifier le live")
        cancel_summary = page.get_by_text("Annuler ce live")

        # before the start, as rendered by the server
        expect(badge).to_have_text("Programmé")
        expect(edit_link).to_be_visible()
        expect(cancel_summary).to_be_visible()
        expect(recording_line).to_have_text("L'enregistrement commencera avec le live.")

        # on air
        start_button = page.get_by_role("button", name="Démarrer le live")
        expect(start_button).to_be_enabled()
        start_button.click()
        expect(badge).to_have_text("En direct", timeout=MEDIA_TIMEOUT_MS)
        expect(badge).to_have_class(re.compile(r"\bstate-live\b"))
        expect(edit_link).to_be_hidden()
        expect(cancel_summary).to_be_hidden()
        expect(recording_line).to_have_text("Enregistrement en cours.", timeout=MEDIA_TIMEOUT_MS)
        save_screenshot(page, "host-live.png")

        # ended, then its replay ready
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Terminer le live").click()
        expect(badge).to_have_text("Terminé", timeout=MEDIA_TIMEOUT_MS)
        replay_link = recording_line.get_by_role("link", name="Voir le replay")
        expect(replay_link).to_be_visible(timeout=READY_TIMEOUT_MS)
        expect(recording_line).to_have_text("Le replay est prêt. Voir le replay")
        expect(replay_link).to_have_attribute("href", f"/lives/{live_id}/replay")
        save_screenshot(page, "host-ended.png")

        # a reload renders the same from the server
        page.reload()
        expect(badge).to_have_text("Terminé")
        expect(recording_line).to_have_text("Le replay est prêt. Voir le replay")

    errors = [line for line in console if line.startswith(("error", "pageerror"))]
    assert errors == []


def test_ended_page_follows_recording_frames(
    server: ServerProcess, host_client: httpx.Client, attendee_client: httpx.Client
) -> None:
    """Guards against an ended live whose status line kept promising a replay that
    failed or was never recorded. The server sends these frames when a recording
    changes status (docs/protocol.md). Here the test passes them to the page's own
    frame handler, because a real failure would need a broken recorder."""
    live_id = schedule_live(host_client, "Les cartes mentales en classe de seconde")
    assert register_for_live(attendee_client, live_id).status_code == 303
    console: list[str] = []
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in attendee_client.cookies.items()
            ]
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        record_console(page, console)
        page.goto(f"{server.url}/lives/{live_id}")

        status = page.locator("[data-stage-status]")
        end_card = page.locator("[data-stage-end-card]")
        replay_link = end_card.get_by_role("link", name="Voir le replay")
        expect(status).to_have_text("En attente du début du live…")
        expect(page.locator("[data-chat-form]")).to_be_visible()
        expect(end_card).to_be_hidden()

        def receive(frame: dict[str, object]) -> None:
            page.evaluate("(frame) => window.veillee.signaling.handleFrame(frame)", frame)

        receive({"type": "recording", "status": "processing", "reason": None})
        receive({"type": "state", "state": "ended"})
        expect(status).to_have_text("Le live est terminé. Le replay est en préparation…")
        expect(page.locator("[data-stage-video]")).to_be_hidden()
        expect(end_card).to_be_visible()
        expect(end_card).to_contain_text("Le live est terminé")
        expect(replay_link).to_be_hidden()
        expect(page.locator("[data-chat-form]")).to_be_hidden()
        expect(page.locator("[data-chat-status]")).to_have_text(
            "La discussion est close : elle n'accepte plus de messages."
        )

        reason = "La vidéo enregistrée est illisible."
        receive({"type": "recording", "status": "failed", "reason": reason})
        expect(status).to_have_text(f"Le live est terminé. L'enregistrement a échoué : {reason}")
        expect(replay_link).to_be_hidden()
        expect(page.locator("[data-live-recording]")).to_have_text(
            f"L'enregistrement a échoué : {reason} Page du replay"
        )

        receive({"type": "recording", "status": None, "reason": None})
        expect(status).to_have_text("Le live est terminé. Ce live n'a pas été enregistré.")

        receive({"type": "recording", "status": "ready", "reason": None})
        expect(status).to_have_text("Le live est terminé. Le replay est prêt.")
        expect(replay_link).to_be_visible()
        expect(replay_link).to_have_attribute("href", f"/lives/{live_id}/replay")
        save_screenshot(page, "attendee-ended.png")

    errors = [line for line in console if line.startswith(("error", "pageerror"))]
    assert errors == []


async def end_with_unfinished_recording(data_dir: Path, live_id: int) -> None:
    """End the live with a recording still in status recording, as between the end
    and the moment the recorder's node starts finishing it."""
    database = Database(f"sqlite+aiosqlite:///{data_dir / 'veillee.sqlite3'}")
    try:
        async with database.session() as session:
            live = await service.get_live(session, live_id)
            assert live is not None
            await lifecycle.transition(session, live, LiveState.LIVE)
            await lifecycle.transition(session, live, LiveState.ENDED)
            session.add(
                Recording(live_id=live_id, status=RecordingStatus.RECORDING, node_name="test")
            )
            await session.commit()
    finally:
        await database.dispose()


def test_replay_page_of_finishing_recording(
    server: ServerProcess, host_client: httpx.Client, attendee_client: httpx.Client
) -> None:
    """Guards against replay.js replacing the server's "en préparation" with "Le live
    est en cours" for an ended live whose recording is not yet being finished."""
    live_id = schedule_live(host_client, "Les cartes mentales en classe de seconde")
    asyncio.run(end_with_unfinished_recording(server.data_dir, live_id))
    console: list[str] = []
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in attendee_client.cookies.items()
            ]
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        record_console(page, console)
        with page.expect_response(f"**/api/lives/{live_id}/replay"):
            page.goto(f"{server.url}/lives/{live_id}/replay")

        expect(page.locator("[data-replay-chat-status]")).to_have_text(
            "La discussion s'affichera avec la vidéo."
        )
        expect(page.locator("[data-replay-status]")).to_have_text(
            "Le replay est en préparation. Cette page l'affichera dès qu'il sera prêt."
        )
        expect(page.locator("[data-replay-video]")).to_be_hidden()

    errors = [line for line in console if line.startswith(("error", "pageerror"))]
    assert errors == []
