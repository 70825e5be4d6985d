"""A viewer whom WebRTC cannot serve watches the live over HLS, in real Chromiums against
a real server process. Two cases: the process has no WebRTC place left (its cap is 0),
or the viewer's peer connection fails before it ever connects. Each time the page shows the
French notice, and its <video> keeps decoding frames of the HLS stream through hls.js."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.e2e.browser import FakeMedia, launch_chromium, wait_for_predicate
from tests.e2e.test_evening_live import HOST, MEDIA_TIMEOUT_MS, VIEWER, open_page
from tests.support.clients import register_for_live, schedule_live, sign_up
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIVE_FULL_MESSAGE = "Le live est très suivi : vous le regardez en léger différé."
UNREACHABLE_MESSAGE = (
    "La connexion vidéo directe n'a pas pu s'établir : vous regardez le live en léger différé."
)
# Changes the DTLS fingerprints of every answer the page applies, as
# a middlebox that breaks the media path would: ICE succeeds, but the DTLS handshake
# fails, so the peer connection fails without ever connecting. Only the page's copy
# changes, so the server's peer is the normal one.
BREAK_DTLS_JS = r"""
const setRemoteDescription = RTCPeerConnection.prototype.setRemoteDescription;
RTCPeerConnection.prototype.setRemoteDescription = function (description) {
  // every fingerprint line (aiortc sends one per hash function) gets another first byte
  const sdp = description.sdp.replace(
    /^(a=fingerprint:\S+ )([0-9A-Fa-f]{2})/gm,
    (_line, start, byte) => start + (byte === "00" ? "11" : "00"),
  );
  return setRemoteDescription.call(this, { type: description.type, sdp });
};
"""
# A failed DTLS handshake takes a few seconds to report, and the page falls back 20 s
# after the answer at the latest: a margin for a loaded machine.
UNREACHABLE_TIMEOUT_MS = 60_000
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
FRAMES_DECODED_ABOVE_JS = f"(minimum) => {TOTAL_VIDEO_FRAMES_JS} > minimum"


def serve(data_dir: Path, extra_args: list[str]) -> Iterator[ServerProcess]:
    process = ServerProcess(data_dir, extra_args=extra_args)
    try:
        yield process
    finally:
        process.stop()
        print("--- server log ---")
        print(process.log_text())


@pytest.fixture
def full_server(data_dir: Path) -> Iterator[ServerProcess]:
    """A server process that sends every viewer to HLS; its log is printed on failure."""
    yield from serve(data_dir, ["--max-webrtc-viewers", "0"])


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    """A server process on its defaults; its log is printed on failure."""
    yield from serve(data_dir, [])


def watch_until_hls_plays(
    server: ServerProcess,
    fake_media: FakeMedia,
    console_lines: dict[str, list[str]],
    viewer_script: str | None,
    notice: str,
    notice_timeout_ms: int,
) -> None:
    """Start a live from the host's page, open it as a registered viewer whose pages run
    `viewer_script` first, and check the `notice` and that the HLS stream plays."""
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
        if viewer_script is not None:
            viewer_page.add_init_script(viewer_script)

        start_live_from_page(host_page, server.url, live_id)

        # the viewer gets no WebRTC media: the page shows why and plays the HLS stream
        viewer_page.goto(f"{server.url}/lives/{live_id}")
        expect(viewer_page.locator("[data-stage-note]")).to_have_text(
            notice, timeout=notice_timeout_ms
        )
        expect(viewer_page.locator("[data-stage-error]")).to_be_hidden()
        assert_video_keeps_decoding(viewer_page)
        assert viewer_page.evaluate("window.veillee.peerConnection === null")
        assert viewer_page.evaluate("window.veillee.hlsPlayer.hls !== null")

    host_client.close()
    viewer_client.close()


def start_live_from_page(host_page: Page, base_url: str, live_id: int) -> None:
    """Start the live from the host's page and wait until it is on air."""
    host_page.goto(f"{base_url}/lives/{live_id}")
    start_button = host_page.get_by_role("button", name="Démarrer le live")
    expect(start_button).to_be_enabled()
    start_button.click()
    expect(host_page.locator("[data-stage-status]")).to_have_text(
        "En direct", timeout=MEDIA_TIMEOUT_MS
    )


def assert_video_keeps_decoding(page: Page) -> None:
    # wait_for_predicate, not wait_for_function: the site's CSP forbids evaluating strings
    wait_for_predicate(page, FRAMES_DECODED_ABOVE_JS, 0, HLS_TIMEOUT_MS)
    first_count: int = page.evaluate(TOTAL_VIDEO_FRAMES_JS)
    wait_for_predicate(
        page, FRAMES_DECODED_ABOVE_JS, first_count + FRAMES_DECODED_GROWTH, HLS_TIMEOUT_MS
    )
    assert page.evaluate("document.querySelector('[data-stage-video]').videoWidth") > 0


def test_viewer_beyond_cap_plays_hls(
    full_server: ServerProcess, fake_media: FakeMedia, console_lines: dict[str, list[str]]
) -> None:
    watch_until_hls_plays(
        full_server, fake_media, console_lines, None, LIVE_FULL_MESSAGE, MEDIA_TIMEOUT_MS
    )


def test_viewer_failing_webrtc_plays_hls(
    server: ServerProcess, fake_media: FakeMedia, console_lines: dict[str, list[str]]
) -> None:
    watch_until_hls_plays(
        server,
        fake_media,
        console_lines,
        BREAK_DTLS_JS,
        UNREACHABLE_MESSAGE,
        UNREACHABLE_TIMEOUT_MS,
    )
