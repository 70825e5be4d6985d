"""The test Chromium speaks French: its own texts, which pages and screenshots show,
and the language it reports to pages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.browser import INSTALL_HINT, launch_chromium
from tests.support.clients import Account, sign_up
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e]

HOST = Account("claire.dubois@example.org", "cartes-mentales-2026", "Claire Dubois")
PAGE_TIMEOUT_MS = 15_000


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


def test_browser_texts_in_french(server: ServerProcess, host_client: httpx.Client) -> None:
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in host_client.cookies.items()
            ]
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(f"{server.url}/lives/new")

        languages = page.evaluate("navigator.languages")
        assert languages[0] == "fr-FR"
        # the browser's own message for the empty required title
        message = page.locator("input[name=title]").evaluate("(input) => input.validationMessage")
        assert message == "Veuillez renseigner ce champ.", (
            f"Chromium's texts are not French ({message!r}): {INSTALL_HINT}"
        )
