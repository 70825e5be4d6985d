"""Two applications in this event loop, sharing one SQLite file and one Redis, as two
server processes would: the signaling frames that one passes on to the other, and what
a Redis restart does to them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from core.settings import DEFAULT_MAX_WEBRTC_VIEWERS, Settings
from signaling.forwarding import inbox_channel
from signaling.nodes import KEY_PREFIX, live_node_key
from signaling.protocol import ERROR_MESSAGES, ErrorCode
from tests.support.processes import RedisServer, free_port
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    LiveSetting,
    Publisher,
    SignalingClient,
    Viewer,
    create_live_setting,
    serving,
    start_publishing,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

# How often a wait for Redis state looks again.
POLL_INTERVAL_SECS = 0.1


@contextlib.asynccontextmanager
async def two_processes(
    data_dir: Path, redis_url: str, max_webrtc_viewers_a: int = DEFAULT_MAX_WEBRTC_VIEWERS
) -> AsyncIterator[tuple[LiveSetting, LiveSetting]]:
    """Serve nodes `node-a` and `node-b`; yield the live setting as seen through each.
    `max_webrtc_viewers_a` is the viewer cap of `node-a`."""

    def settings(node_name: str, max_webrtc_viewers: int) -> Settings:
        return Settings(
            port=free_port(),
            data_dir=data_dir,
            secret_key="test-secret",
            redis_url=redis_url,
            node_name=node_name,
            max_webrtc_viewers=max_webrtc_viewers,
        )

    settings_a = settings("node-a", max_webrtc_viewers_a)
    settings_b = settings("node-b", DEFAULT_MAX_WEBRTC_VIEWERS)
    async with serving(settings_a) as app_a, serving(settings_b) as app_b:
        through_a = await create_live_setting(app_a, settings_a.port)
        through_b = dataclasses.replace(
            through_a,
            app=app_b,
            database=app_b.state.database,
            base_url=f"http://127.0.0.1:{settings_b.port}",
            ws_url=f"ws://127.0.0.1:{settings_b.port}",
        )
        yield through_a, through_b


async def watch_through(
    stack: contextlib.AsyncExitStack, setting: LiveSetting, publisher: Publisher
) -> tuple[SignalingClient, Viewer]:
    """Watch through `setting`'s process until the first frame; `stack` closes the
    socket and the peer."""
    client = await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
    stack.push_async_callback(client.close)
    viewer = Viewer(publisher.video)
    stack.push_async_callback(viewer.close)
    await viewer.accept(await client.request_answer("watch", await viewer.offer()))
    await wait_for_first_frame(viewer, publisher)
    return client, viewer


async def wait_for_first_frame(viewer: Viewer, publisher: Publisher) -> None:
    """Wait for the viewer's first decoded frame. On timeout, fail with the state of
    both peers and the count of frames sent, which show where the media stopped."""
    try:
        await asyncio.wait_for(viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)
    except TimeoutError:
        raise AssertionError(
            f"no frame decoded within {EVENT_TIMEOUT_SECS} s: viewer peer "
            f"{viewer.pc.connectionState}, ICE {viewer.pc.iceConnectionState}, "
            f"publisher peer {publisher.pc.connectionState}, "
            f"{publisher.video.frames_sent} frames sent"
        ) from None


async def publish_through(
    stack: contextlib.AsyncExitStack, setting: LiveSetting
) -> tuple[SignalingClient, Publisher]:
    """Publish through `setting`'s process; `stack` closes the socket and the peer."""
    host, publisher = await start_publishing(setting)
    stack.push_async_callback(publisher.close)
    stack.push_async_callback(host.close)
    return host, publisher


async def test_media_forwarding_errors_and_end(data_dir: Path, redis_url: str) -> None:
    """Guards against errors of the media process that never reach a socket of another
    process, and an `end` that leaves some process's sockets thinking the live is on."""
    async with contextlib.AsyncExitStack() as stack:
        through_a, through_b = await stack.enter_async_context(two_processes(data_dir, redis_url))
        host, publisher = await publish_through(stack, through_a)
        watcher, _ = await watch_through(stack, through_b, publisher)
        second_tab = await SignalingClient.open(
            through_b.ws_url, through_b.live_id, through_b.host_cookie
        )
        stack.push_async_callback(second_tab.close)

        # the media process's refusals come back with their code, message and ref
        second_publisher = Publisher()
        stack.push_async_callback(second_publisher.close)
        await second_tab.send(
            {"type": "publish", "sdp": await second_publisher.offer(), "client_id": "p-2"}
        )
        refused = await second_tab.recv_type("error")
        assert refused["code"] == "already_publishing"
        assert refused["message"] == ERROR_MESSAGES[ErrorCode.ALREADY_PUBLISHING]
        assert refused["ref"] == "p-2"

        await watcher.send({"type": "watch", "sdp": "v=0\r\n", "client_id": "w-2"})
        invalid = await watcher.recv_type("error")
        assert invalid["code"] == "invalid_sdp"
        assert invalid["message"]
        assert invalid["ref"] == "w-2"

        # `end` from the other process ends the live for the sockets of both
        await second_tab.send({"type": "end"})
        for socket in (host, watcher, second_tab):
            ended = await socket.until("state", state="ended")
            assert ended["ended_at"] is not None
        await watcher.until("recording", status="ready")
        assert through_a.app.state.media.sessions == {}
        assert through_b.app.state.media.sessions == {}


async def test_media_forwarding_live_full_to_hls(data_dir: Path, redis_url: str) -> None:
    """Guards against a viewer cap that another process than the live's media process
    does not apply, and an HLS stream that only the media process serves."""
    async with contextlib.AsyncExitStack() as stack:
        through_a, through_b = await stack.enter_async_context(
            two_processes(data_dir, redis_url, max_webrtc_viewers_a=0)
        )
        _, publisher = await publish_through(stack, through_a)
        watcher = await SignalingClient.open(
            through_b.ws_url, through_b.live_id, through_b.viewer_cookie
        )
        stack.push_async_callback(watcher.close)
        viewer = Viewer(publisher.video)
        stack.push_async_callback(viewer.close)
        await watcher.send({"type": "watch", "sdp": await viewer.offer(), "client_id": "w-1"})
        rejected = await watcher.recv_type("error")

        assert rejected["code"] == "live_full"
        assert rejected["message"] == ERROR_MESSAGES[ErrorCode.LIVE_FULL]
        assert rejected["ref"] == "w-1"
        assert not through_a.app.state.media.sessions[through_a.live_id].viewers

        # node-b hands out the link and serves the playlist that node-a writes
        headers = {"Cookie": through_b.viewer_cookie}
        client = httpx.AsyncClient(
            base_url=through_b.base_url, headers=headers, timeout=EVENT_TIMEOUT_SECS
        )
        stack.push_async_callback(client.aclose)
        deadline = time.monotonic() + EVENT_TIMEOUT_SECS
        while True:
            response = await client.get(f"/api/lives/{through_b.live_id}/hls")
            assert response.status_code == 200, response.text
            link = response.json()
            if link["ready"]:
                break
            assert time.monotonic() < deadline, "the master playlist never appeared"
            await asyncio.sleep(POLL_INTERVAL_SECS)
        master = await client.get(link["master_url"])

        assert master.status_code == 200
        assert "high.m3u8" in master.text
        assert "low.m3u8" in master.text


async def wait_for_owner(client: redis.asyncio.Redis, live_id: int, owner: str) -> None:
    async with asyncio.timeout(EVENT_TIMEOUT_SECS):
        while True:
            with contextlib.suppress(redis.RedisError):
                if await client.get(live_node_key(live_id)) == owner.encode():
                    return
            await asyncio.sleep(POLL_INTERVAL_SECS)


async def wait_for_inbox(client: redis.asyncio.Redis, node: str) -> None:
    """Return once the node listens to its inbox channel again."""
    channel = KEY_PREFIX + inbox_channel(node)
    async with asyncio.timeout(EVENT_TIMEOUT_SECS):
        while True:
            with contextlib.suppress(redis.RedisError):
                [(_, listeners)] = await client.pubsub_numsub(channel)
                if listeners:
                    return
            await asyncio.sleep(POLL_INTERVAL_SECS)


async def test_media_forwarding_after_redis_restart(data_dir: Path, own_redis: RedisServer) -> None:
    """Guards against a Redis restart, which empties it, that leaves a live without its
    media node or sockets that miss the live's state."""
    async with contextlib.AsyncExitStack() as stack:
        client = redis.asyncio.Redis.from_url(own_redis.url)
        stack.push_async_callback(client.aclose)
        through_a, through_b = await stack.enter_async_context(
            two_processes(data_dir, own_redis.url)
        )
        _, publisher = await publish_through(stack, through_a)
        waiting = await SignalingClient.open(
            through_b.ws_url, through_b.live_id, through_b.viewer_cookie
        )
        stack.push_async_callback(waiting.close)
        assert waiting.welcome["state"] == "live"
        await wait_for_owner(client, through_a.live_id, "node-a")

        # in a thread: both processes and every peer run on this event loop, which
        # must not stop while redis-server stops and starts
        await asyncio.to_thread(own_redis.restart)
        await wait_for_owner(client, through_a.live_id, "node-a")
        await wait_for_inbox(client, "node-a")
        # frames broadcast while Redis was away may be lost: the state comes again
        await waiting.until("state", state="live")

        viewer = Viewer(publisher.video)
        stack.push_async_callback(viewer.close)
        await viewer.accept(await waiting.request_answer("watch", await viewer.offer()))
        await wait_for_first_frame(viewer, publisher)
