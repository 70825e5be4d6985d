"""A server process SIGKILLed during a recorded live, then started again on the same
data folder and port: its recording becomes a replay and its live shows as interrupted.

Everything goes through the real endpoints: accounts and the live come from the forms,
media from an aiortc publisher through the signaling socket, the replay from the
recording API and its signed video link.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from recordings.service import RAW_FILE_NAME
from tests.support.clients import (
    Account,
    cookie_header,
    register_for_live,
    schedule_live,
    sign_up,
)
from tests.support.processes import ServerProcess, free_port
from tests.support.signaling_peers import (
    PICTURE_FRAME_RATE,
    Publisher,
    SignalingClient,
    Viewer,
)

PASSWORD = "cahier de textes"
# The viewer must decode the frame sent this long after the recording began before the
# kill, so that the recording contains several seconds of media.
RECORDED_BEFORE_KILL_SECS = 6
# A killed recorder loses what its encoders and queue still held (x264's lookahead and
# the frames not yet encoded), and recording starts a little after the `recording`
# frame: together well under this.
MAX_LOST_SECS = 3.0
# Finishing a few seconds of video takes about a second here, and a loaded CI machine
# may need far more.
READY_TIMEOUT_SECS = 60.0
PEER_TIMEOUT_SECS = 20.0
POLL_INTERVAL_SECS = 0.2

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def server_processes() -> Iterator[list[ServerProcess]]:
    """Collect the server processes a test starts, and stop each at the end."""
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


async def recording_json(client: httpx.AsyncClient, live_id: int) -> dict[str, Any]:
    response = await client.get(f"/api/lives/{live_id}/recording")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_recording_status(
    client: httpx.AsyncClient, live_id: int, status: str, timeout: float
) -> dict[str, Any]:
    """Poll the recording API until the live's latest recording has `status`."""
    deadline = time.monotonic() + timeout
    while True:
        body = await recording_json(client, live_id)
        if body["status"] == status:
            return body
        assert body["status"] != "failed", body
        assert time.monotonic() < deadline, f"recording still {body['status']} after {timeout} s"
        await asyncio.sleep(POLL_INTERVAL_SECS)


async def test_killed_server_recording_becomes_replay(data_dir: Path, tmp_path: Path) -> None:
    """Guards against losing the recording of a live whose server process is killed,
    and against a live shown on air forever after its server died."""
    port = free_port()
    with server_processes() as servers:
        first = ServerProcess(data_dir, port=port)
        servers.append(first)

        # a host schedules a live, a colleague registers, both through the forms
        host_http = sign_up(first.url, Account("claire@example.org", PASSWORD, "Claire"))
        viewer_http = sign_up(first.url, Account("karim@example.org", PASSWORD, "Karim"))
        live_id = schedule_live(host_http, "Les cartes mentales en classe")
        assert register_for_live(viewer_http, live_id).status_code == 303
        host_cookie = cookie_header(host_http)
        viewer_cookie = cookie_header(viewer_http)
        host_http.close()
        viewer_http.close()

        # the host publishes; the live goes on air and its recording begins
        host = await SignalingClient.open(first.ws_url, live_id, host_cookie)
        publisher = Publisher()
        await publisher.accept(await host.request_answer("publish", await publisher.offer()))
        await host.until("state", state="live")
        await host.until("recording", status="recording")
        recording_began_frame = publisher.video.frames_sent

        # a registered viewer watches, and decodes several seconds of recorded media
        watcher = await SignalingClient.open(first.ws_url, live_id, viewer_cookie)
        viewer = Viewer(publisher.video)
        await viewer.accept(await watcher.request_answer("watch", await viewer.offer()))
        await asyncio.wait_for(viewer.connected.wait(), PEER_TIMEOUT_SECS)
        await viewer.wait_for_frame_number(
            recording_began_frame + RECORDED_BEFORE_KILL_SECS * PICTURE_FRAME_RATE
        )

        async with httpx.AsyncClient(base_url=first.url, headers={"Cookie": viewer_cookie}) as api:
            recording = await recording_json(api, live_id)
        assert recording["status"] == "recording"
        raw_path = data_dir / "recordings" / str(recording["recording_id"]) / RAW_FILE_NAME
        assert raw_path.stat().st_size > 0

        # crash
        killed_frame = publisher.video.frames_sent
        first.kill()
        recorded_secs = (killed_frame - recording_began_frame) / PICTURE_FRAME_RATE
        for socket in (host, watcher):
            await socket.close()
        for peer in (publisher, viewer):
            await peer.close()

        # the same node starts again and finishes what it was recording
        second = ServerProcess(data_dir, port=port)
        servers.append(second)
        async with httpx.AsyncClient(
            base_url=second.url, headers={"Cookie": viewer_cookie}, timeout=PEER_TIMEOUT_SECS
        ) as api:
            ready = await wait_for_recording_status(api, live_id, "ready", READY_TIMEOUT_SECS)
            assert ready["recording_id"] == recording["recording_id"]
            video = await api.get(ready["video_url"])
            assert video.status_code == 200
            live_page = await api.get(f"/lives/{live_id}")
        video_path = tmp_path / "replay.mp4"
        video_path.write_bytes(video.content)

        # the replay: one video and one audio stream, about as long as what was recorded
        with av.open(str(video_path)) as container:
            assert len(container.streams.video) == 1
            assert len(container.streams.audio) == 1
            assert container.duration is not None
            container_secs = container.duration / av.time_base
            decoded_video = sum(1 for _ in container.decode(video=0))
        with av.open(str(video_path)) as container:
            decoded_audio = sum(1 for _ in container.decode(audio=0))
        print(
            f"recorded before the kill: {recorded_secs:.2f} s; recovered: "
            f"{ready['duration_seconds']:.2f} s (container {container_secs:.2f} s), "
            f"{decoded_video} video and {decoded_audio} audio frames decoded"
        )
        assert ready["duration_seconds"] >= recorded_secs - MAX_LOST_SECS
        assert ready["duration_seconds"] <= recorded_secs + 1.0
        assert container_secs >= recorded_secs - MAX_LOST_SECS
        assert decoded_video >= (recorded_secs - MAX_LOST_SECS) * PICTURE_FRAME_RATE / 2
        assert decoded_audio > 0

        # the live shows as interrupted on its page and on a new signaling socket
        assert live_page.status_code == 200
        assert 'class="badge state-interrupted"' in live_page.text
        assert ">Interrompu<" in live_page.text
        late = await SignalingClient.open(second.ws_url, live_id, viewer_cookie)
        assert late.welcome["state"] == "interrupted"
        assert late.welcome["recording"] == {"status": "ready", "reason": None}
        await late.close()
