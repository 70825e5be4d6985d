"""A viewer sent to the HLS stream because the live was full moves back to WebRTC by
itself once a place frees, in real Chromiums against a real server process whose cap
is one WebRTC viewer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import FakeMedia, launch_chromium, wait_for_predicate
from tests.e2e.test_evening_live import HOST, MEDIA_TIMEOUT_MS, VIEWER, open_page
from tests.e2e.test_hls_fallback import (
    FRAMES_DECODED_ABOVE_JS,
    HLS_TIMEOUT_MS,
    LIVE_FULL_MESSAGE,
    assert_video_keeps_decoding,
    serve,
    start_live_from_page,
)
from tests.support.clients import Account, register_for_live, schedule_live, sign_up
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECOND_VIEWER = Account("lucas.bernard@example.org", "classe-inversee-2026", "Lucas Bernard")
RETURNED_MESSAGE = "Vous regardez de nouveau le live en direct."
# The page tries WebRTC again 5 to 10 s after landing on HLS, then after delays that
# double up to a maximum of 30 to 60 s (web/static/signaling.js). Once the first viewer
# has left, the next try comes within 60 s, then negotiating and the first frame take a
# few seconds: a margin for a loaded two-core machine.
RETURN_TIMEOUT_MS = 120_000
WEBRTC_CONNECTED_JS = "() => window.veillee.peerConnection?.connectionState === 'connected'"
FAILED_RETURNS_ABOVE_JS = "(minimum) => window.veillee.signaling.failedReturns > minimum"
BACK_ON_WEBRTC_JS = (
    "() => !window.veillee.signaling.watchingHls && window.veillee.hlsPlayer.hls === null"
)


@pytest.fixture
def one_place_server(data_dir: Path) -> Iterator[ServerProcess]:
    """A server process with a single WebRTC place; its log is printed on failure."""
    yield from serve(data_dir, ["--max-webrtc-viewers", "1"])


def test_hls_viewer_returns_to_webrtc(
    one_place_server: ServerProcess,
    fake_media: FakeMedia,
    console_lines: dict[str, list[str]],
) -> None:
    server = one_place_server
    host_client = sign_up(server.url, HOST)
    first_client = sign_up(server.url, VIEWER)
    second_client = sign_up(server.url, SECOND_VIEWER)
    live_id = schedule_live(host_client, "Les débats réglés en classe de quatrième")
    for client in (first_client, second_client):
        assert register_for_live(client, live_id).status_code == 303
    console_lines["second viewer"] = []

    with (
        sync_playwright() as playwright,
        launch_chromium(playwright, fake_media) as host_context,
        launch_chromium(playwright) as first_context,
        launch_chromium(playwright) as second_context,
    ):
        host_page = open_page(host_context, host_client, server.url, console_lines["host"])
        first_page = open_page(first_context, first_client, server.url, console_lines["viewer"])
        second_page = open_page(
            second_context, second_client, server.url, console_lines["second viewer"]
        )

        start_live_from_page(host_page, server.url, live_id)

        # the first viewer takes the only WebRTC place
        first_page.goto(f"{server.url}/lives/{live_id}")
        wait_for_predicate(first_page, WEBRTC_CONNECTED_JS, None, MEDIA_TIMEOUT_MS)
        wait_for_predicate(first_page, FRAMES_DECODED_ABOVE_JS, 0, MEDIA_TIMEOUT_MS)

        # the second one lands on HLS, and stays there through a try that gets live_full
        second_page.goto(f"{server.url}/lives/{live_id}")
        note = second_page.locator("[data-stage-note]")
        expect(note).to_have_text(LIVE_FULL_MESSAGE, timeout=MEDIA_TIMEOUT_MS)
        assert_video_keeps_decoding(second_page)
        wait_for_predicate(second_page, FAILED_RETURNS_ABOVE_JS, 0, HLS_TIMEOUT_MS)
        assert second_page.evaluate("window.veillee.signaling.watchingHls")
        assert second_page.evaluate("window.veillee.hlsPlayer.hls !== null")
        expect(note).to_have_text(LIVE_FULL_MESSAGE)
        expect(second_page.locator("[data-stage-status]")).to_have_text("En direct")
        assert_video_keeps_decoding(second_page)

        # the first viewer leaves: the second moves to WebRTC by itself
        first_page.close()
        wait_for_predicate(second_page, BACK_ON_WEBRTC_JS, None, RETURN_TIMEOUT_MS)
        expect(note).to_have_text(RETURNED_MESSAGE)
        expect(second_page.locator("[data-stage-error]")).to_be_hidden()
        expect(second_page.locator("[data-stage-status]")).to_have_text("En direct")
        assert second_page.evaluate("window.veillee.peerConnection.connectionState") == (
            "connected"
        )
        assert second_page.evaluate(
            "document.querySelector('[data-stage-video]').srcObject instanceof MediaStream"
        )
        assert_video_keeps_decoding(second_page)
        # the note hides itself a few seconds later
        expect(note).to_be_hidden(timeout=HLS_TIMEOUT_MS)

    for client in (host_client, first_client, second_client):
        client.close()
