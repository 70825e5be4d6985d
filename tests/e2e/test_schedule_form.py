"""The schedule form in Debian's Chromium: its counters count characters as the server
does, in code points after NFC normalization, and keep a text over the limit from
being sent."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import launch_chromium, record_console
from tests.support.clients import Account, sign_up
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e]

HOST = Account("claire.dubois@example.org", "cartes-mentales-2026", "Claire Dubois")
PAGE_TIMEOUT_MS = 15_000
TITLE_MAX_CHARS = 120
DESCRIPTION_MAX_CHARS = 5000
# One code point, two UTF-16 code units: a maxlength of 120 would stop at 60 of them.
EMOJI = "\N{SPARKLES}"
# "é" typed as e and a combining acute accent: two code points, one after NFC.
DECOMPOSED_E_ACUTE = "e\N{COMBINING ACUTE ACCENT}"


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


def test_title_counter_counts_code_points(server: ServerProcess, host_client: httpx.Client) -> None:
    """The label promised 120 characters with nothing counting them as the server does."""
    console: list[str] = []
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in host_client.cookies.items()
            ]
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        record_console(page, console)
        page.goto(f"{server.url}/lives/new")

        title = page.locator("input[name=title]")
        title_counter = page.locator("#title-counter")
        description = page.locator("textarea[name=description]")
        description_counter = page.locator("#description-counter")
        expect(title_counter).to_have_text(f"0 / {TITLE_MAX_CHARS}")
        expect(description_counter).to_have_text(f"0 / {DESCRIPTION_MAX_CHARS}")

        # (title typed, expected count)
        for text, count in [
            (EMOJI * TITLE_MAX_CHARS, TITLE_MAX_CHARS),
            (DECOMPOSED_E_ACUTE * TITLE_MAX_CHARS, TITLE_MAX_CHARS),
            (f"  {'a' * 10}  ", 10),
        ]:
            title.fill(text)
            expect(title_counter).to_have_text(f"{count} / {TITLE_MAX_CHARS}")
            expect(title_counter).not_to_have_class(re.compile(r"\bover\b"))
            assert title.evaluate("(input) => input.validity.valid"), text

        title.fill(EMOJI * (TITLE_MAX_CHARS + 1))
        expect(title_counter).to_have_text(f"{TITLE_MAX_CHARS + 1} / {TITLE_MAX_CHARS}")
        expect(title_counter).to_have_class(re.compile(r"\bover\b"))
        message = title.evaluate("(input) => input.validationMessage")
        assert message == "Le titre dépasse 120 caractères (121)."
        # the browser keeps the form, so nothing reaches the server
        page.get_by_role("button", name="Programmer le live").click()
        expect(page).to_have_url(f"{server.url}/lives/new")

        description.fill("b" * (DESCRIPTION_MAX_CHARS + 1))
        expect(description_counter).to_have_text(
            f"{DESCRIPTION_MAX_CHARS + 1} / {DESCRIPTION_MAX_CHARS}"
        )
        message = description.evaluate("(input) => input.validationMessage")
        assert message == "La description dépasse 5000 caractères (5001)."
        description.fill("")

        # the server accepts a title at the limit, as the counter showed
        title.fill(EMOJI * TITLE_MAX_CHARS)
        page.get_by_role("button", name="Programmer le live").click()
        page.wait_for_url(re.compile(r"/lives/\d+$"))
        expect(page.get_by_role("heading", level=1)).to_have_text(EMOJI * TITLE_MAX_CHARS)

    errors = [line for line in console if line.startswith(("error", "pageerror"))]
    assert errors == []
