"""Page layout in Debian's Chromium: the header menu on a phone-sized screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.e2e.browser import launch_chromium
from tests.support.clients import Account, sign_up
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
# The CSS width of a common phone held upright.
PHONE_VIEWPORT = {"width": 390, "height": 844}

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
