"""A viewer beyond the WebRTC cap watches the live over HLS, in a real Chromium against a
real server process whose cap is 0: the page says so in French and its <video> keeps
decoding frames of the HLS stream through hls.js."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import FakeMedia, launch_chromium
from tests.e2e.test_evening_live import (
    HOST,
    MEDIA_TIMEOUT_MS,
    VIEWER,
    open_page,
)
from tests.support.clients import register_for_live, schedule_live, sign_up
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIVE_FULL_MESSAGE = "Le direct est très suivi : vous le regardez en léger différé."
# The stream's first segments take a few seconds to appear, and hls.js starts three
# segments (about 6 s) behind the newest: a margin for a loaded two-core machine.
HLS_TIMEOUT_MS = 60_000
# 40 more decoded frames, two seconds of the fake camera at 20 frames per second,
# prove that playback goes on past the first segment.
FRAMES_DECODED_GROWTH = 40
# Frames the <video> element has decoded, whatever feeds it (Media Source Extensions here).
TOTAL_VIDEO_FRAMES_JS = (
    "document.querySelector('[data-stage-video]').getVideoPlaybackQuality().totalVideoFrames"
)


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    """A server process that sends every viewer to HLS; its log is printed on failure."""
    process = ServerProcess(data_dir, extra_args=["--max-webrtc-viewers", "0"])
    try:
        yield process
    finally:
        process.stop()
        print("--- server log ---")
        print(process.log_text())


def test_viewer_beyond_cap_plays_hls(
    server: ServerProcess, fake_media: FakeMedia, console_lines: dict[str, list[str]]
) -> None:
    host_client = sign_up(server.url, HOST)
    viewer_client = sign_up(server.url, VIEWER)
    live_id = schedule_live(host_client, "Gérer le stress avant les examens")
    assert register_for_live(viewer_client, live_id).status_code == 303

    with (
        sync_playwright() as playwright,
        launch_chromium(playwright, fake_media) as host_context,
        launch_chromium(playwright) as viewer_context,
    ):
        host_page = open_page(host_context, host_client, server.url, console_lines["host"])
        viewer_page = open_page(viewer_context, viewer_client, server.url, console_lines["viewer"])

        # the host starts the live from its page
        host_page.goto(f"{server.url}/lives/{live_id}")
        start_button = host_page.get_by_role("button", name="Démarrer le live")
        expect(start_button).to_be_enabled()
        start_button.click()
        expect(host_page.locator("[data-stage-status]")).to_have_text(
            "En direct", timeout=MEDIA_TIMEOUT_MS
        )

        # the viewer finds no WebRTC place: the page says so and plays the HLS stream
        viewer_page.goto(f"{server.url}/lives/{live_id}")
        expect(viewer_page.locator("[data-stage-note]")).to_have_text(
            LIVE_FULL_MESSAGE, timeout=MEDIA_TIMEOUT_MS
        )
        expect(viewer_page.locator("[data-stage-error]")).to_be_hidden()
        viewer_page.wait_for_function(f"{TOTAL_VIDEO_FRAMES_JS} > 0", timeout=HLS_TIMEOUT_MS)
        first_count: int = viewer_page.evaluate(TOTAL_VIDEO_FRAMES_JS)
        viewer_page.wait_for_function(
            f"{TOTAL_VIDEO_FRAMES_JS} > {first_count + FRAMES_DECODED_GROWTH}",
            timeout=HLS_TIMEOUT_MS,
        )

        assert viewer_page.evaluate("window.veillee.peerConnection === null")
        assert viewer_page.evaluate("window.veillee.hlsPlayer.hls !== null")
        assert viewer_page.evaluate("document.querySelector('[data-stage-video]').videoWidth") > 0

    host_client.close()
    viewer_client.close()
