"""The host's network drops for 20 seconds in the middle of a recorded live. Viewers
receive a `host` frame with status `away`, never an error. The live resumes
when the host publishes again, and the recording contains both parts, in order, as one
video.

The host's signaling socket goes through a TCP proxy that the test cuts. The server
closes the host's peer with its socket, so the host's media stops as well.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from websockets.exceptions import WebSocketException

from recordings.models import Recording
from tests.support.replay_checks import assert_two_parts, read_replay
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    PICTURE_FRAME_RATE,
    Publisher,
    SignalingClient,
    running_live,
    start_watching,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.faults]

# How long the host's network stays cut.
DROP_SECS = 20.0
# Each part records this many frames, counted as the viewer decodes them.
PART_FRAMES = 4 * PICTURE_FRAME_RATE
# Each part starts a little after its first frame reaches the server and loses what
# the encoder still contains at the end: together well under this.
MAX_LOST_SECS_PER_PART = 2.0
# Finishing a recording of about 30 s takes a second or two here.
READY_TIMEOUT_SECS = 90.0
POLL_INTERVAL_SECS = 0.2


async def publish_through(
    proxy: TcpProxy, live_id: int, cookie: str
) -> tuple[SignalingClient, Publisher]:
    host = await SignalingClient.open(proxy.ws_url, live_id, cookie)
    publisher = Publisher()
    await publisher.accept(await host.request_answer("publish", await publisher.offer()))
    return host, publisher


async def wait_for_ready(base_url: str, live_id: int, cookie: str) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT_SECS
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Cookie": cookie}, timeout=EVENT_TIMEOUT_SECS
    ) as api:
        while True:
            body: dict[str, Any] = (await api.get(f"/api/lives/{live_id}/replay")).json()
            assert body["status"] != "failed", body
            if body["status"] == "ready":
                return body
            assert time.monotonic() < deadline, f"recording still {body['status']}"
            await asyncio.sleep(POLL_INTERVAL_SECS)


async def test_failover_host_network_drop_resumes(data_dir: Path, tmp_path: Path) -> None:
    """Guards against a host's network drop that ends the live, shows viewers an error,
    or leaves a replay without the part before the drop."""
    async with running_live(data_dir) as setting:
        port = int(setting.base_url.rsplit(":", 1)[1])
        proxy = TcpProxy(port)
        await proxy.start()
        try:
            # first part
            host, publisher = await publish_through(proxy, setting.live_id, setting.host_cookie)
            await host.until("state", state="live")
            await host.until("recording", status="recording")
            part_one_began = time.monotonic()
            watcher, viewer = await start_watching(setting, setting.viewer_cookie, publisher)
            await viewer.wait_for_frame_number(publisher.video.frames_sent + PART_FRAMES)
            last_before_drop = viewer.frame_numbers[-1]

            # the host's network drops: its socket closes, and new connections are reset
            cut_at = time.monotonic()
            assert await proxy.cut() == 1
            away = await watcher.until("host")
            assert away == {"type": "host", "status": "away"}
            part_one_secs = cut_at - part_one_began
            with pytest.raises((OSError, WebSocketException)):
                await SignalingClient.open(proxy.ws_url, setting.live_id, setting.host_cookie)
            assert proxy.refused == 1
            # no picture reaches the viewer for the whole drop
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(
                    viewer.wait_for_frame_number(last_before_drop + PICTURE_FRAME_RATE), DROP_SECS
                )
            await host.close()
            await publisher.close()

            # the network is back: the host publishes again into the same live
            proxy.restore()
            host, publisher = await publish_through(proxy, setting.live_id, setting.host_cookie)
            resumed_at = time.monotonic()
            assert host.welcome["state"] == "live"
            back = await watcher.until("host")
            assert back == {"type": "host", "status": "back"}
            viewer.follow(publisher.video)
            await viewer.wait_for_frame_number(PART_FRAMES)
            part_two_secs = time.monotonic() - resumed_at
            away_secs = resumed_at - cut_at

            await host.send({"type": "end"})
            await host.until("state", state="ended")
            for socket in (host, watcher):
                await socket.close()
            for peer in (publisher, viewer):
                await peer.close()

            replay = await wait_for_ready(setting.base_url, setting.live_id, setting.viewer_cookie)
            async with setting.database.session() as session:
                recordings = await session.scalar(
                    select(func.count())
                    .select_from(Recording)
                    .where(Recording.live_id == setting.live_id)
                )
            async with httpx.AsyncClient(
                headers={"Cookie": setting.viewer_cookie}, timeout=EVENT_TIMEOUT_SECS
            ) as api:
                video = await api.get(setting.base_url + replay["video_url"])
            assert video.status_code == 200
        finally:
            await proxy.close()

    video_path = tmp_path / "replay.mp4"
    video_path.write_bytes(video.content)
    timeline = read_replay(video_path)
    # one recording, one video: both parts in order, with the time away between them
    assert recordings == 1
    assert_two_parts(timeline, (part_one_secs, part_two_secs), away_secs, MAX_LOST_SECS_PER_PART)
    gap_secs = timeline.parts()[1][0].time_secs - timeline.parts()[0][-1].time_secs
    assert gap_secs >= DROP_SECS - MAX_LOST_SECS_PER_PART
