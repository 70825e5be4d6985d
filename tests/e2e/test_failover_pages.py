"""The live page through network faults, in two real Chromiums against a real server.

The viewer's browser reaches the server through a TCP proxy that the test cuts for 20
seconds. Playwright's offline mode would cut neither WebRTC nor open WebSockets. The
server closes a viewer's peer with its signaling socket, so the viewer's media stops
as well. The page must reconnect by itself, fetch the chat it missed, and play the
video again. Then the host's browser reloads the page in the middle of the live: the
viewer sees the live resume rather than an error, and the replay contains both parts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import FakeMedia, launch_chromium
from tests.e2e.live_page import (
    FRAMES_ABOVE_JS,
    FRAMES_GROWTH,
    chat_items,
    frames_decoded,
    host_and_viewer,
    open_page,
    say,
    wait_for_frames,
)
from tests.support.clients import cookie_header
from tests.support.processes import ServerProcess
from tests.support.replay_checks import is_increasing, read_replay
from tests.support.tcp_proxy import ThreadedTcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults]


# How long the viewer's network stays cut.
DROP_MS = 20_000
# With the backoff of web/static/socket.js (about 0.5 s, doubling, each delay half
# random), each of the page's two sockets tries about five times in 20 s. Retrying
# every half second, without backoff, would make some 80 attempts.
MIN_ATTEMPTS_DURING_DROP = 4
MAX_ATTEMPTS_DURING_DROP = 30
# After the drop, the next attempt may come up to 16 s later (the backoff's sixth
# delay), then negotiation and the first frame take a few seconds.
MEDIA_TIMEOUT_MS = 60_000
RECORDING_READY_TIMEOUT_SECS = 120.0
POLL_INTERVAL_SECS = 0.5
# The recorder starts a little after the first frame and loses what its encoder still
# contains when it stops.
MAX_LOST_SECS = 3.0


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[ThreadedTcpProxy]:
    front = ThreadedTcpProxy(server.port)
    try:
        yield front
    finally:
        front.close()


def wait_for_replay(client: httpx.Client, live_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + RECORDING_READY_TIMEOUT_SECS
    while True:
        body: dict[str, Any] = client.get(f"/api/lives/{live_id}/replay").json()
        assert body["status"] != "failed", body
        if body["status"] == "ready":
            return body
        assert time.monotonic() < deadline, f"recording still {body['status']}"
        time.sleep(POLL_INTERVAL_SECS)


def test_failover_pages_viewer_drop_host_reload(
    server: ServerProcess,
    proxy: ThreadedTcpProxy,
    fake_media: FakeMedia,
    console_lines: dict[str, list[str]],
    tmp_path: Path,
) -> None:
    """Guards against a viewer page that stays disconnected after its network returns,
    misses or repeats chat, or keeps a dead video. Also guards against a host reload
    that shows viewers an error or leaves the replay without the part before it."""
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
            viewer_context, cookie_header(viewer_http), proxy.url, console_lines["viewer"]
        )

        # the host goes on air; the viewer, through the proxy, watches
        host_page.goto(f"{server.url}/lives/{live_id}")
        viewer_page.goto(f"{proxy.url}/lives/{live_id}")
        host_page.get_by_role("button", name="Démarrer le live").click()
        viewer_status = viewer_page.locator("[data-stage-status]")
        expect(viewer_status).to_have_text("En direct", timeout=MEDIA_TIMEOUT_MS)
        wait_for_frames(viewer_page, FRAMES_GROWTH, MEDIA_TIMEOUT_MS)
        say(viewer_page, "Bonsoir, je vous vois bien")
        expect(chat_items(host_page, "Bonsoir, je vous vois bien")).to_have_count(1)

        # the viewer's network drops for 20 s; the host writes meanwhile
        proxy.cut()
        expect(viewer_status).to_have_text("Connexion perdue, reconnexion…")
        missed = ["Premier message pendant la coupure", "Second message pendant la coupure"]
        for text in missed:
            say(host_page, text)
            expect(chat_items(host_page, text)).to_have_count(1)
        frames_before = frames_decoded(viewer_page)
        with pytest.raises(PlaywrightError, match="Timeout"):
            # no picture reaches the viewer while its network is cut
            viewer_page.wait_for_function(FRAMES_ABOVE_JS, arg=frames_before, timeout=DROP_MS)
        attempts = proxy.refused
        print(f"reconnection attempts during the drop: {attempts}")
        assert attempts >= MIN_ATTEMPTS_DURING_DROP
        assert attempts <= MAX_ATTEMPTS_DURING_DROP
        for text in missed:
            expect(chat_items(viewer_page, text)).to_have_count(0)

        # the network is back: the page reconnects by itself
        accepted_before = proxy.accepted
        proxy.restore()
        expect(viewer_status).to_have_text("En direct", timeout=MEDIA_TIMEOUT_MS)
        assert proxy.accepted > accepted_before
        for text in missed:
            expect(chat_items(viewer_page, text)).to_have_count(1, timeout=MEDIA_TIMEOUT_MS)
        expect(chat_items(viewer_page, "Bonsoir, je vous vois bien")).to_have_count(1)
        wait_for_frames(viewer_page, FRAMES_GROWTH, MEDIA_TIMEOUT_MS)

        # the host reloads the page: the viewer sees the live resume, not an error
        reload_at = datetime.now().astimezone()
        host_page.reload()
        expect(viewer_status).to_have_text("Le live reprend…", timeout=MEDIA_TIMEOUT_MS)
        expect(viewer_page.locator("[data-stage-error]")).to_be_hidden()
        host_page.get_by_role("button", name="Reprendre le live").click()
        expect(viewer_status).to_have_text("En direct", timeout=MEDIA_TIMEOUT_MS)
        back_at = datetime.now().astimezone()
        wait_for_frames(viewer_page, FRAMES_GROWTH, MEDIA_TIMEOUT_MS)

        host_page.once("dialog", lambda dialog: dialog.accept())
        host_page.get_by_role("button", name="Terminer le live").click()
        expect(viewer_page.locator("[data-live-badge]")).to_have_text("Terminé")
        ended_at = datetime.now().astimezone()

    # one recording of both parts, before the reload and after it
    replay = wait_for_replay(host_http, live_id)
    video = host_http.get(replay["video_url"])
    assert video.status_code == 200
    host_http.close()
    viewer_http.close()
    video_path = tmp_path / "replay.mp4"
    video_path.write_bytes(video.content)
    timeline = read_replay(video_path)
    started_at = datetime.fromisoformat(replay["started_at"].replace("Z", "+00:00"))
    reload_offset = (reload_at - started_at).total_seconds()
    back_offset = (back_at - started_at).total_seconds()
    frame_times = [frame.time_secs for frame in timeline.video]
    print(
        f"replay {timeline.duration_secs:.1f} s, {len(frame_times)} frames; "
        f"reload at {reload_offset:.1f} s, back by {back_offset:.1f} s"
    )
    assert timeline.video_streams == 1
    assert timeline.audio_streams == 1
    assert is_increasing(frame_times)
    assert is_increasing(timeline.audio_times_secs)
    assert any(time_secs < reload_offset - 1 for time_secs in frame_times)
    assert any(time_secs > back_offset for time_secs in frame_times)
    wall_secs = (ended_at - started_at).total_seconds()
    assert timeline.duration_secs >= wall_secs - MAX_LOST_SECS - 1.0
    assert timeline.duration_secs <= wall_secs + 1.0
