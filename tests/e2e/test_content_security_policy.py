"""Every main page in a real Chromium under the site's Content Security Policy: no
violation is reported, and the scripts, styles, fetches and WebSockets the pages need
still work."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.e2e.browser import (
    is_csp_console_error,
    launch_chromium,
    make_fake_media,
    record_console,
    record_csp_violations,
)
from tests.support import mentoring_flows as flows
from tests.support.clients import (
    Account,
    register_for_live,
    schedule_live,
    sign_up,
)
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOST = Account("claire.dubois@example.org", "politique-de-securite", "Claire Dubois")
VIEWER = Account("karim.benali@example.org", "politique-de-securite", "Karim Benali")
PAGE_TIMEOUT_MS = 15_000
# Lets the securitypolicyviolation events queued by the page's start run before the
# test reads them: they are dispatched in a task of their own after the blocked load.
FLUSH_EVENTS_JS = "() => new Promise((resolve) => setTimeout(resolve, 0))"
# A script injected the way a stored XSS would add one; the policy must block it.
INJECT_INLINE_SCRIPT_JS = """
() => {
  const script = document.createElement("script");
  script.textContent = "window.injected = true;";
  document.body.append(script);
  return window.injected === true;
}
"""


@dataclass
class Site:
    server: ServerProcess
    host: httpx.Client
    viewer: httpx.Client
    live_id: int
    conversation_id: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = ServerProcess(tmp_path_factory.mktemp("csp"))
    host = sign_up(server.url, HOST)
    viewer = sign_up(server.url, VIEWER)
    try:
        live_id = schedule_live(host, "Les cartes mentales en classe de seconde")
        assert register_for_live(viewer, live_id).status_code == 303
        assert flows.save_offer(host).status_code == 303
        mentor_id = flows.proposed_mentor_ids(viewer, flows.need_form())[0]
        sent = flows.send_request(viewer, flows.need_form(), mentor_id)
        accepted = flows.answer(host, flows.request_id_of(sent), accept=True)
        yield Site(server, host, viewer, live_id, flows.conversation_id_of(accepted))
    finally:
        host.close()
        viewer.close()
        server.stop()


def open_context(context: BrowserContext, site: Site, client: httpx.Client | None) -> Page:
    if client is not None:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": site.server.url}
                for name, value in client.cookies.items()
            ]
        )
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context.pages[0] if context.pages else context.new_page()


def visit(page: Page, url: str) -> None:
    page.goto(url)
    page.wait_for_load_state("load")
    page.evaluate(FLUSH_EVENTS_JS)


def chat_connected(page: Page) -> None:
    """Wait until the chat socket opened and was synced: the input is enabled."""
    expect(page.locator("[data-chat-input]")).to_be_enabled()


def test_csp_blocks_injected_script(site: Site) -> None:
    """Guards against a policy that the test cannot see violated: an inline script
    must be blocked and reported."""
    violations: list[str] = []
    csp_errors: list[str] = []
    with (
        sync_playwright() as playwright,
        launch_chromium(playwright, allow_csp_errors=True) as context,
    ):
        record_csp_violations(context, violations)
        page = open_context(context, site, None)
        page.on(
            "console",
            lambda message: (
                csp_errors.append(message.text) if is_csp_console_error(message) else None
            ),
        )
        visit(page, f"{site.server.url}/login")
        ran = page.evaluate(INJECT_INLINE_SCRIPT_JS)
        page.evaluate(FLUSH_EVENTS_JS)
    assert ran is False
    assert len(violations) == 1
    assert violations[0].startswith("script-src-elem blocked inline")
    # the console line that launch_chromium fails every other browser test on
    assert len(csp_errors) == 1
    assert csp_errors[0].startswith("Executing inline script violates")


def test_csp_pages_without_violation(site: Site, tmp_path: Path) -> None:
    violations: list[str] = []
    console: list[str] = []
    base = site.server.url
    media = make_fake_media(tmp_path / "media")
    with sync_playwright() as playwright:
        # a visitor who is not logged in
        with launch_chromium(playwright) as context:
            record_csp_violations(context, violations)
            page = open_context(context, site, None)
            record_console(page, console)
            for path in (
                "/",
                "/login",
                "/signup",
                "/password/forgot",
                "/password/reset/jeton-inconnu",
                f"/lives/{site.live_id}",
                "/page-inconnue",
            ):
                visit(page, base + path)

        # the host, with a camera, and the mentor of the conversation
        with launch_chromium(playwright, media) as context:
            record_csp_violations(context, violations)
            page = open_context(context, site, site.host)
            record_console(page, console)
            visit(page, f"{base}/lives/{site.live_id}")
            chat_connected(page)
            expect(page.get_by_role("button", name="Démarrer le live")).to_be_enabled()
            for path in (
                "/",
                "/lives/new",
                f"/lives/{site.live_id}/edit",
                f"/lives/{site.live_id}/replay",
                "/my-agenda",
                "/profile",
                "/mentoring",
                "/mentoring/offer",
                "/mentoring/inbox",
            ):
                visit(page, base + path)

        # a registered colleague, also the mentee of the conversation
        with launch_chromium(playwright) as context:
            record_csp_violations(context, violations)
            page = open_context(context, site, site.viewer)
            record_console(page, console)
            visit(page, f"{base}/lives/{site.live_id}")
            chat_connected(page)
            expect(page.locator("[data-stage-status]")).to_have_text("En attente du début du live…")
            visit(page, f"{base}/mentoring/conversations/{site.conversation_id}")
            chat_connected(page)
            for path in ("/mentoring", "/mentoring/request", "/mentoring/notifications"):
                visit(page, base + path)

    assert violations == []
    refused = [line for line in console if "Content Security Policy" in line]
    assert refused == []
