"""Page layout in Debian's Chromium: the header menu on a phone-sized screen, and the
spacing of "Mon agenda"."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, ViewportSize, sync_playwright

from core.database import Database
from live import lifecycle, service
from live.models import LiveState
from tests.e2e.browser import launch_chromium
from tests.support.clients import Account, schedule_live, sign_up
from tests.support.processes import PROJECT_DIR, ServerProcess

pytestmark = [pytest.mark.e2e]

ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts" / "page-layout"
# A display name of 73 characters, close to the sign-up form's maximum of 80.
HOST = Account(
    "claire.dubois@example.org",
    "cartes-mentales-2026",
    "Claire-Marie Dubois-Lefèvre de la Tour d'Auvergne, professeure de lettres",
)
PAGE_TIMEOUT_MS = 15_000
# Minimum vertical gap, in CSS pixels, between a list of "Mon agenda" and what follows it.
MIN_SECTION_GAP_PX = 16
# The CSS width of a common phone held upright.
PHONE_VIEWPORT: ViewportSize = {"width": 390, "height": 844}

# Returns, for each entry of the header menu, its text and the number of lines its
# text takes, from the distinct tops of the text's line boxes.
MENU_ENTRY_LINES_JS = """
() => [...document.querySelectorAll(".site-header nav > *")].map((entry) => {
  const range = document.createRange();
  range.selectNodeContents(entry);
  const tops = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
  return { text: entry.textContent.trim(), lines: tops.size };
})
"""


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


def save_screenshot(page: Page, name: str) -> None:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS_DIR / name), full_page=True)


def test_header_menu_on_phone(server: ServerProcess, host_client: httpx.Client) -> None:
    """At 390 px the menu used to squeeze beside the brand, each entry broken over
    lines of its own."""
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in host_client.cookies.items()
            ]
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        page.set_viewport_size(PHONE_VIEWPORT)
        for path in ("/", "/lives/new", "/my-agenda"):
            page.goto(f"{server.url}{path}")
            save_screenshot(page, f"phone{path.replace('/', '-')}.png")

            page_width = page.evaluate("document.documentElement.scrollWidth")
            assert page_width <= PHONE_VIEWPORT["width"], path
            entries = page.evaluate(MENU_ENTRY_LINES_JS)
            assert entries[0]["text"] == "Agenda", path
            broken = [entry["text"] for entry in entries if entry["lines"] != 1]
            assert broken == [], path

            brand = page.locator(".site-header .brand").bounding_box()
            menu = page.locator(".site-header nav").bounding_box()
            assert brand is not None
            assert menu is not None
            # the menu starts under the brand, at the header's left edge
            assert menu["y"] >= brand["y"] + brand["height"], path
            assert menu["x"] == brand["x"], path


async def end_live(data_dir: Path, live_id: int) -> None:
    database = Database(f"sqlite+aiosqlite:///{data_dir / 'veillee.sqlite3'}")
    try:
        async with database.session() as session:
            live = await service.get_live(session, live_id)
            assert live is not None
            await lifecycle.transition(session, live, LiveState.LIVE)
            await lifecycle.transition(session, live, LiveState.ENDED)
    finally:
        await database.dispose()


def test_my_agenda_lists_spaced_from_card(server: ServerProcess, host_client: httpx.Client) -> None:
    """The last row of "Terminés" used to touch the calendar feed's box below it."""
    schedule_live(host_client, "Les cartes mentales en classe de seconde")
    ended_id = schedule_live(host_client, "La dictée négociée en CM2")
    asyncio.run(end_live(server.data_dir, ended_id))
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in host_client.cookies.items()
            ]
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(f"{server.url}/my-agenda")
        save_screenshot(page, "my-agenda.png")

        coming = page.locator(
            "section[aria-labelledby=coming-title] .live-item"
        ).last.bounding_box()
        past = page.locator("section[aria-labelledby=past-title]").bounding_box()
        last_ended = page.locator(
            "section[aria-labelledby=past-title] .live-item"
        ).last.bounding_box()
        card = page.locator("section.card").bounding_box()
        assert coming is not None
        assert past is not None
        assert last_ended is not None
        assert card is not None
        assert past["y"] - (coming["y"] + coming["height"]) >= MIN_SECTION_GAP_PX
        assert card["y"] - (last_ended["y"] + last_ended["height"]) >= MIN_SECTION_GAP_PX
