"""The host's moderation tools on the live page, in two real Chromiums against a real
server process: taking and giving back a colleague's right to send, the slow mode,
removing the colleague, and the moderation log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.e2e.browser import (
    launch_chromium,
    make_fake_media,
    record_console,
    record_csp_violations,
)
from tests.support.clients import Account, register_for_live, schedule_live, sign_up
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOST = Account("claire.dubois@example.org", "moderation-claire-2026", "Claire Dubois")
VIEWER = Account("karim.benali@example.org", "moderation-karim-2026", "Karim Benali")
PAGE_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("moderation-e2e"))
    yield process
    process.stop()


def open_live(context: BrowserContext, client: httpx.Client, url: str) -> Page:
    context.add_cookies(
        [{"name": name, "value": value, "url": url} for name, value in client.cookies.items()]
    )
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context.pages[0] if context.pages else context.new_page()


def send_message(page: Page, text: str) -> None:
    page.fill("[data-chat-input]", text)
    page.press("[data-chat-input]", "Enter")


def test_host_moderates_colleague(server: ServerProcess, tmp_path: Path) -> None:
    host_client = sign_up(server.url, HOST)
    viewer_client = sign_up(server.url, VIEWER)
    live_id = schedule_live(host_client, "Les cartes mentales en classe de seconde")
    assert register_for_live(viewer_client, live_id).status_code == 303
    live_url = f"{server.url}/lives/{live_id}"
    media = make_fake_media(tmp_path / "media")
    console: list[str] = []
    violations: list[str] = []

    with (
        sync_playwright() as playwright,
        launch_chromium(playwright, media) as host_context,
        launch_chromium(playwright) as viewer_context,
    ):
        for context in (host_context, viewer_context):
            record_csp_violations(context, violations)
        host = open_live(host_context, host_client, server.url)
        viewer = open_live(viewer_context, viewer_client, server.url)
        record_console(host, console)
        record_console(viewer, console)
        host.goto(live_url)
        viewer.goto(live_url)
        viewer_input = viewer.locator("[data-chat-input]")
        expect(viewer_input).to_be_enabled()
        log = host.locator("[data-moderation-log]")
        expect(log.get_by_text("Aucune action de modération pour l'instant.")).to_be_visible()

        send_message(viewer, "Bonsoir, je peux poser une question ?")
        message = host.locator("[data-chat-messages] li[data-seq]").filter(
            has_text="Bonsoir, je peux poser une question ?"
        )
        expect(message).to_have_count(1)

        # taking the right to send, then giving it back
        message.get_by_role("button", name="Retirer la parole à Karim Benali").click()
        expect(viewer.locator("[data-chat-messages] li.system .text")).to_have_text(
            "Claire Dubois a retiré la parole à Karim Benali."
        )
        expect(viewer_input).to_be_disabled()
        expect(viewer.locator("[data-chat-status]")).to_have_text(
            "La modération vous a retiré la parole dans cette discussion."
        )
        expect(log.locator("li").first).to_contain_text(
            "Claire Dubois a retiré la parole à Karim Benali."
        )
        # each name in its own bidirectional run
        expect(log.locator("li").first.locator("bdi")).to_have_text(
            ["Claire Dubois", "Karim Benali"]
        )
        message.get_by_role("button", name="Rendre la parole à Karim Benali").click()
        expect(viewer_input).to_be_enabled()
        expect(log.locator("li").first).to_contain_text("a rendu la parole à Karim Benali.")

        # the slow mode: one message per 30 seconds for the colleague
        host.locator("[data-chat-slow-mode]").select_option("30")
        expect(viewer.locator("[data-chat-status]")).to_have_text(
            "Mode lent : 30 secondes entre deux messages."
        )
        # the colleague's last message is less than 30 seconds old
        send_message(viewer, "Une autre question, trop tôt")
        expect(viewer.locator("[data-chat-error]")).to_contain_text(
            "Le mode lent est activé : un message toutes les 30 secondes."
        )
        expect(viewer_input).to_have_value("Une autre question, trop tôt")
        # the host moderates, so the slow mode does not apply
        send_message(host, "Je réponds dans un instant.")
        expect(viewer.locator("[data-chat-messages]")).to_contain_text(
            "Je réponds dans un instant."
        )
        expect(log.locator("li").first).to_contain_text(
            "a activé le mode lent : 30 secondes entre deux messages."
        )

        # removing the colleague closes their chat and their live at once
        host.once("dialog", lambda dialog: dialog.accept())
        message.get_by_role("button", name="Retirer Karim Benali du live").click()
        expect(viewer.locator("[data-chat-status]")).to_have_text(
            "La modération vous a retiré de cette discussion."
        )
        expect(viewer.locator("[data-stage-status]")).to_have_text(
            "La personne qui anime ce live vous en a retiré."
        )
        expect(log.locator("li").first).to_contain_text(
            "Claire Dubois a retiré Karim Benali du live."
        )
        viewer.reload()
        expect(viewer.get_by_text("La personne qui anime ce live vous en a retiré")).to_be_visible()
        expect(viewer.locator("[data-live-stage]")).to_have_count(0)

    host_client.close()
    viewer_client.close()
    assert violations == []
    errors = [line for line in console if line.startswith("pageerror")]
    assert errors == []
