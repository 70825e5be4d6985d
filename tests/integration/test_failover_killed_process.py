"""The server process that carries a recorded live is SIGKILLed. The host, the viewer and
the chat reconnect through the same front to the other process, and the live resumes
there. The replay is one video of both parts, with every chat message.

Two server processes share one Redis and one SQLite file in WAL mode. A TCP proxy
plays the load balancer: it forwards to the live's process, and after the kill to the
other one. The host and the viewer are aiortc peers on signaling sockets, as in
test_media_nodes.py; the browser's own reconnection is covered by the e2e tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.chat_clients import ChatClient
from tests.support.clients import Account, cookie_header, register_for_live, schedule_live, sign_up
from tests.support.processes import ServerProcess
from tests.support.replay_checks import assert_two_parts, is_increasing, read_replay
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    PICTURE_FRAME_RATE,
    Publisher,
    SignalingClient,
    watch_on,
)
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.faults]

PASSWORD = "cahier de textes"
# A dead media node's lives are noticed within 10 s (6 s lease, checks every second);
# the margin covers a loaded machine.
DEAD_NODE_DETECTION_SECS = 20.0
# Each part records this much media, counted in frames the viewer decoded.
PART_SECS = 5
# A killed recorder loses what its encoder and queue held, and each part starts a
# little after its `recording` frame: together well under this, per part.
MAX_LOST_SECS_PER_PART = 3.0
# Finishing and joining a few seconds of video take about a second each here.
READY_TIMEOUT_SECS = 90.0
POLL_INTERVAL_SECS = 0.2


@dataclass
class Front:
    """Two server processes and the proxy in front of them, with a live hosted by
    Claire and attended by Karim."""

    first: ServerProcess
    second: ServerProcess
    proxy: TcpProxy
    live_id: int
    host_cookie: str
    viewer_cookie: str


@contextlib.asynccontextmanager
async def front(data_dir: Path, redis_url: str) -> AsyncIterator[Front]:
    started: list[ServerProcess] = []
    proxy: TcpProxy | None = None
    try:
        started.append(ServerProcess(data_dir, redis_url=redis_url))
        started.append(ServerProcess(data_dir, redis_url=redis_url))
        first, second = started
        # the forms are posted to a process directly: httpx's blocking client would
        # hold the event loop that the proxy runs in
        host_http = sign_up(first.url, Account("claire@example.org", PASSWORD, "Claire"))
        viewer_http = sign_up(first.url, Account("karim@example.org", PASSWORD, "Karim"))
        live_id = schedule_live(host_http, "Les cartes mentales en classe")
        assert register_for_live(viewer_http, live_id).status_code == 303
        host_cookie, viewer_cookie = cookie_header(host_http), cookie_header(viewer_http)
        host_http.close()
        viewer_http.close()
        proxy = TcpProxy(first.port)
        await proxy.start()
        yield Front(first, second, proxy, live_id, host_cookie, viewer_cookie)
    finally:
        if proxy is not None:
            await proxy.close()
        for process in started:
            process.stop()


async def publish(setting: Front) -> tuple[SignalingClient, Publisher]:
    """Publish through the proxy; return once the live is on air and recorded."""
    host = await SignalingClient.open(setting.proxy.ws_url, setting.live_id, setting.host_cookie)
    publisher = Publisher()
    await publisher.accept(await host.request_answer("publish", await publisher.offer()))
    await host.until("state", state="live")
    await host.until("recording", status="recording")
    return host, publisher


async def chat(setting: Front, cookie: str, after: int | None = None) -> ChatClient:
    client = await ChatClient.connect(setting.proxy.ws_url, f"live:{setting.live_id}", cookie)
    await client.open(after)
    return client


async def api_json(url: str, path: str, cookie: str) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=url, headers={"Cookie": cookie}, timeout=EVENT_TIMEOUT_SECS
    ) as api:
        response = await api.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_for_replay(url: str, live_id: int, cookie: str, min_secs: float) -> dict[str, Any]:
    """Poll the replay data until its recording is ready and lasts `min_secs` or more,
    which only the joined video of both parts does."""
    deadline = time.monotonic() + READY_TIMEOUT_SECS
    while True:
        body = await api_json(url, f"/api/lives/{live_id}/replay", cookie)
        assert body["status"] != "failed", body
        if body["status"] == "ready" and body["duration_seconds"] >= min_secs:
            return body
        assert time.monotonic() < deadline, (
            f"replay not joined after {READY_TIMEOUT_SECS} s: {body}"
        )
        await asyncio.sleep(POLL_INTERVAL_SECS)


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_failover_killed_process_resumes_live(
    data_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    """Guards against a live, its chat or its recording lost with the server process
    that carried it, and against a replay that shows only the part after the crash."""
    async with front(data_dir, redis_url) as setting:
        proxy = setting.proxy

        # first part: the host publishes and a viewer watches, both through the front
        host, publisher = await publish(setting)
        part_one_began = time.monotonic()
        watcher = await SignalingClient.open(proxy.ws_url, setting.live_id, setting.viewer_cookie)
        viewer = await watch_on(watcher, publisher)
        host_chat = await chat(setting, setting.host_cookie)
        viewer_chat = await chat(setting, setting.viewer_cookie)
        sent: list[tuple[int, str]] = []
        text = "Bonsoir à toutes et à tous"
        sent.append((await host_chat.say("claire-1", text), text))
        await viewer_chat.events_up_to(sent[-1][0])
        await viewer.wait_for_frame_number(PART_SECS * PICTURE_FRAME_RATE)
        part_one_secs = time.monotonic() - part_one_began

        # crash: the front forwards to the other process from now on
        setting.first.kill()
        killed_at = time.monotonic()
        proxy.retarget(setting.second.port)
        await proxy.cut()
        proxy.restore()
        for socket in (host, watcher, host_chat, viewer_chat):
            await socket.close()
        for peer in (publisher, viewer):
            await peer.close()

        # the viewer's page reconnects and learns that the live is interrupted
        watcher = await SignalingClient.open(proxy.ws_url, setting.live_id, setting.viewer_cookie)
        if watcher.welcome["state"] != "interrupted":
            await asyncio.wait_for(
                watcher.until("state", state="interrupted"), DEAD_NODE_DETECTION_SECS
            )

        # a message written while the viewer's chat was away reaches it once, on resume
        host_chat = await chat(setting, setting.host_cookie, after=sent[-1][0])
        text = "Petite coupure, on reprend dans un instant"
        sent.append((await host_chat.say("claire-2", text), text))
        viewer_chat = await ChatClient.connect(
            proxy.ws_url, f"live:{setting.live_id}", setting.viewer_cookie
        )
        missed = await viewer_chat.open(after=sent[0][0])
        missed_events = [frame for frame in missed if frame["type"] == "event"]
        assert [(event["seq"], event["text"]) for event in missed_events] == [sent[1]]

        # second part: the host publishes again, on the surviving process
        host, publisher = await publish(setting)
        resumed_at = time.monotonic()
        await watcher.until("state", state="live")
        viewer = await watch_on(watcher, publisher)
        text = "Merci, l'image est revenue"
        sent.append((await viewer_chat.say("karim-1", text), text))
        await host_chat.events_up_to(sent[-1][0])
        await viewer.wait_for_frame_number(PART_SECS * PICTURE_FRAME_RATE)
        part_two_secs = time.monotonic() - resumed_at

        await host.send({"type": "end"})
        await host.until("state", state="ended")
        away_secs = resumed_at - killed_at
        for socket in (host, watcher, host_chat, viewer_chat):
            await socket.close()
        for peer in (publisher, viewer):
            await peer.close()

        # every message stored once, in order, and on the replay's timeline
        recorded_secs = part_one_secs + part_two_secs
        replay = await wait_for_replay(
            setting.second.url,
            setting.live_id,
            setting.viewer_cookie,
            recorded_secs + away_secs - 2 * MAX_LOST_SECS_PER_PART,
        )
        assert [(message["seq"], message["text"]) for message in replay["messages"]] == sent
        offsets = [message["offset_seconds"] for message in replay["messages"]]
        assert is_increasing(offsets)
        assert offsets[-1] <= replay["duration_seconds"]
        origin = parse_utc(replay["started_at"])
        for message in replay["messages"]:
            expected = (parse_utc(message["sent_at"]) - origin).total_seconds()
            assert abs(message["offset_seconds"] - max(0.0, expected)) < 0.01

        async with httpx.AsyncClient(
            headers={"Cookie": setting.viewer_cookie}, timeout=EVENT_TIMEOUT_SECS
        ) as api:
            video = await api.get(setting.second.url + replay["video_url"])
        assert video.status_code == 200
        video_path = tmp_path / "replay.mp4"
        video_path.write_bytes(video.content)

    # one video: both parts in order, on one timeline that keeps the time away
    timeline = read_replay(video_path)
    assert_two_parts(timeline, (part_one_secs, part_two_secs), away_secs, MAX_LOST_SECS_PER_PART)
