"""The server process that carries a live is SIGKILLed while two real Chromiums, the
host's and a viewer's, use it through a TCP proxy that plays the load balancer.

After the kill the proxy forwards to the other process, which shares the Redis and the
SQLite file. The pages must reconnect by themselves: the host's page publishes again,
the viewer's page shows that the live resumes and then plays it. The chat and the
recording of both parts, as one video, must be intact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import FakeMedia, launch_chromium
from tests.e2e.live_page import (
    FRAMES_GROWTH,
    chat_items,
    host_and_viewer,
    open_page,
    say,
    wait_for_frames,
)
from tests.support.clients import (
    cookie_header,
)
from tests.support.processes import ServerProcess, server_pair
from tests.support.replay_checks import is_increasing, read_replay
from tests.support.tcp_proxy import ThreadedTcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.faults, pytest.mark.redis]


# The survivor notices the death within 10 s, the pages retry their offers every 2 s,
# then negotiation and the first frame take a few seconds on a loaded machine.
RESUME_TIMEOUT_MS = 90_000
RECORDING_READY_TIMEOUT_SECS = 120.0
POLL_INTERVAL_SECS = 0.5
# Per part, the recorder starts a little after the first frame and a killed recorder
# loses what its encoder still contained.
MAX_LOST_SECS_PER_PART = 3.0
# The viewer decodes 6 s of picture before the kill, so that the first part keeps
# some of it after those losses.
FIRST_PART_FRAMES = 6 * 20

# Keeps every text of the viewer's status line in window.veilleeStatusTexts, so that a
# state shown for a moment can be checked afterwards.
RECORD_STATUS_TEXTS_JS = """
() => {
  const status = document.querySelector("[data-stage-status]");
  window.veilleeStatusTexts = [status.textContent];
  new MutationObserver(() => window.veilleeStatusTexts.push(status.textContent)).observe(
    status, { childList: true, characterData: true, subtree: true },
  );
}
"""


@pytest.fixture
def servers(data_dir: Path, redis_url: str) -> Iterator[list[ServerProcess]]:
    """Two server processes on one Redis and one SQLite file."""
    with server_pair(data_dir, redis_url) as started:
        yield started


def wait_for_joined_replay(client: httpx.Client, live_id: int, before: datetime) -> dict[str, Any]:
    """Poll the replay data until it is ready and starts before `before`, which only
    the joined video of both parts does once the first part was recorded earlier."""
    deadline = time.monotonic() + RECORDING_READY_TIMEOUT_SECS
    while True:
        body: dict[str, Any] = client.get(f"/api/lives/{live_id}/replay").json()
        assert body["status"] != "failed", body
        if body["status"] == "ready" and parse_utc(body["started_at"]) < before:
            return body
        assert time.monotonic() < deadline, f"replay not joined: {body}"
        time.sleep(POLL_INTERVAL_SECS)


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_failover_killed_pages_resume(
    servers: list[ServerProcess],
    fake_media: FakeMedia,
    console_lines: dict[str, list[str]],
    tmp_path: Path,
) -> None:
    """Guards against pages that stay broken after their server process died, a live
    that does not resume on the other process, and chat or recording lost with it."""
    first, second = servers
    host_http, viewer_http, live_id = host_and_viewer(first.url, "Les cartes mentales en classe")
    proxy = ThreadedTcpProxy(first.port)

    try:
        with (
            sync_playwright() as playwright,
            launch_chromium(playwright, fake_media) as host_context,
            launch_chromium(playwright) as viewer_context,
        ):
            host_page = open_page(
                host_context, cookie_header(host_http), proxy.url, console_lines["host"]
            )
            viewer_page = open_page(
                viewer_context, cookie_header(viewer_http), proxy.url, console_lines["viewer"]
            )

            # both pages reach the first process through the proxy
            host_page.goto(f"{proxy.url}/lives/{live_id}")
            viewer_page.goto(f"{proxy.url}/lives/{live_id}")
            host_page.get_by_role("button", name="Démarrer le live").click()
            viewer_status = viewer_page.locator("[data-stage-status]")
            expect(viewer_status).to_have_text("En direct", timeout=RESUME_TIMEOUT_MS)
            wait_for_frames(viewer_page, FIRST_PART_FRAMES, RESUME_TIMEOUT_MS)
            before = "Bonsoir, je vous vois bien"
            say(viewer_page, before)
            expect(chat_items(host_page, before)).to_have_count(1)
            viewer_page.evaluate(RECORD_STATUS_TEXTS_JS)

            # the first process dies; the proxy sends new connections to the second
            killed_at = datetime.now().astimezone()
            first.kill()
            proxy.retarget(second.port)
            proxy.cut()
            proxy.restore()

            # the pages reconnect by themselves, and the live resumes on the second process
            expect(viewer_status).to_have_text("En direct", timeout=RESUME_TIMEOUT_MS)
            wait_for_frames(viewer_page, FRAMES_GROWTH, RESUME_TIMEOUT_MS)
            back_at = datetime.now().astimezone()
            texts: list[str] = viewer_page.evaluate("window.veilleeStatusTexts")
            print(f"viewer status line: {texts}")
            assert "Le live reprend…" in texts
            expect(viewer_page.locator("[data-stage-error]")).to_be_hidden()

            # the chat goes on, with each message once
            after = "Merci, l'image est revenue"
            say(viewer_page, after)
            for page in (host_page, viewer_page):
                expect(chat_items(page, after)).to_have_count(1)
                expect(chat_items(page, before)).to_have_count(1)

            host_page.once("dialog", lambda dialog: dialog.accept())
            host_page.get_by_role("button", name="Terminer le live").click()
            expect(viewer_page.locator("[data-live-badge]")).to_have_text("Terminé")
            ended_at = datetime.now().astimezone()
    finally:
        proxy.close()

    # the replay joins both parts: it starts before the kill and lasts past the return
    api = httpx.Client(base_url=second.url, headers={"Cookie": cookie_header(viewer_http)})
    replay = wait_for_joined_replay(api, live_id, killed_at)
    started_at = parse_utc(replay["started_at"])
    wall_secs = (ended_at - started_at).total_seconds()
    assert replay["duration_seconds"] >= wall_secs - 2 * MAX_LOST_SECS_PER_PART
    assert [message["text"] for message in replay["messages"]] == [before, after]
    video = api.get(replay["video_url"])
    assert video.status_code == 200
    for client in (api, host_http, viewer_http):
        client.close()
    video_path = tmp_path / "replay.mp4"
    video_path.write_bytes(video.content)

    timeline = read_replay(video_path)
    frame_times = [frame.time_secs for frame in timeline.video]
    kill_offset = (killed_at - started_at).total_seconds()
    back_offset = (back_at - started_at).total_seconds()
    print(
        f"replay {timeline.duration_secs:.1f} s, {len(frame_times)} frames; "
        f"killed at {kill_offset:.1f} s, back by {back_offset:.1f} s"
    )
    assert timeline.video_streams == 1
    assert timeline.audio_streams == 1
    assert is_increasing(frame_times)
    assert is_increasing(timeline.audio_times_secs)
    assert any(time_secs < kill_offset - MAX_LOST_SECS_PER_PART for time_secs in frame_times)
    assert any(time_secs > back_offset for time_secs in frame_times)
    assert timeline.duration_secs <= wall_secs + 1.0
