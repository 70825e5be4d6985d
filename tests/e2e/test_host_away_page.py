"""A viewer opens the live page while the host is away, in two real Chromiums against a
real server. The host's page reloads in the middle of the live. The viewer's page,
opened during the gap, must show that the live resumes, then play it once the host
publishes again."""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import FakeMedia, launch_chromium
from tests.e2e.live_page import FRAMES_GROWTH, host_and_viewer, open_page, wait_for_frames
from tests.support.clients import cookie_header
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Negotiation and the first frames take a few seconds on a loaded machine running two
# Chromiums, the server and its encoders on two cores.
MEDIA_TIMEOUT_MS = 60_000
# The server records the host's absence as soon as the host's socket closes, well
# within this.
HOST_AWAY_TIMEOUT_SECS = 15.0
POLL_INTERVAL_SECS = 0.1


def wait_for_host_away(server: ServerProcess, live_id: int) -> None:
    """Wait until the server stored that the live's host is away, so that the viewer's
    page learns it from its welcome rather than from the `host` frame."""
    path = server.data_dir / "veillee.sqlite3"
    deadline = time.monotonic() + HOST_AWAY_TIMEOUT_SECS
    while True:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as database:
            row = database.execute(
                "SELECT host_away_since FROM lives WHERE id = ?", (live_id,)
            ).fetchone()
        if row is not None and row[0] is not None:
            return
        assert time.monotonic() < deadline, f"host of live {live_id} not recorded away"
        time.sleep(POLL_INTERVAL_SECS)


def test_host_away_page_opened_during_gap(
    server: ServerProcess,
    fake_media: FakeMedia,
    console_lines: dict[str, list[str]],
) -> None:
    """Guards against a page opened while the host is away that shows « En direct »
    over an empty video, with no word that the live resumes, until the host is back."""
    host_http, viewer_http, live_id = host_and_viewer(server.url, "Les cartes mentales en classe")

    with (
        sync_playwright() as playwright,
        launch_chromium(playwright, fake_media) as host_context,
        launch_chromium(playwright) as viewer_context,
    ):
        host_page = open_page(
            host_context, cookie_header(host_http), server.url, console_lines["host"]
        )
        viewer_page = open_page(
            viewer_context, cookie_header(viewer_http), server.url, console_lines["viewer"]
        )

        # the host goes on air, then reloads the page: the live waits for the host
        host_page.goto(f"{server.url}/lives/{live_id}")
        host_page.get_by_role("button", name="Démarrer le live").click()
        host_status = host_page.locator("[data-stage-status]")
        expect(host_status).to_have_text("En direct", timeout=MEDIA_TIMEOUT_MS)
        host_page.reload()
        expect(host_page.get_by_role("button", name="Reprendre le live")).to_be_visible()
        wait_for_host_away(server, live_id)

        # the viewer opens the page during the gap
        viewer_page.goto(f"{server.url}/lives/{live_id}")
        viewer_status = viewer_page.locator("[data-stage-status]")
        expect(viewer_status).to_have_text("Le live reprend…")
        expect(viewer_status).to_have_class(re.compile(r"\bresuming\b"))
        expect(viewer_page.locator("[data-stage-error]")).to_be_hidden()

        # the host publishes again: the viewer's page plays the live
        host_page.get_by_role("button", name="Reprendre le live").click()
        expect(viewer_status).to_have_text("En direct", timeout=MEDIA_TIMEOUT_MS)
        wait_for_frames(viewer_page, FRAMES_GROWTH, MEDIA_TIMEOUT_MS)

    host_http.close()
    viewer_http.close()
