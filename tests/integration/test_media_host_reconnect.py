"""What happens to a live when its host's connection drops: the live waits for the host
during a grace period, viewers keep their peers, and the live ends when it runs out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from core.database import Database
from live.models import Live, LiveState
from recordings.models import Recording, RecordingStatus
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    PICTURE_FRAME_RATE,
    SignalingClient,
    running_live,
    start_publishing,
    start_watching,
)

# Frames a viewer must decode from the host's new peer: two seconds of picture.
FRAMES_AFTER_RECONNECTION = 2 * PICTURE_FRAME_RATE

pytestmark = pytest.mark.slow


async def test_media_host_reconnect_keeps_viewers(data_dir: Path) -> None:
    """Guards against a page reload by the host that ends the live, drops the viewers'
    peers, or makes the viewers' timeline jump backwards."""
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        client, viewer = await start_watching(setting, setting.viewer_cookie, publisher)
        await viewer.wait_for_frame_number(publisher.video.frames_sent + PICTURE_FRAME_RATE)
        last_pts_before = viewer.frame_pts[-1]

        # the host's page goes away with its socket and its peer
        await host.close()
        await publisher.close()

        host, publisher = await start_publishing(setting)
        viewer.follow(publisher.video)
        await viewer.wait_for_frame_number(FRAMES_AFTER_RECONNECTION)
        assert viewer.frame_pts[-1] > last_pts_before
        assert viewer.frame_numbers == sorted(viewer.frame_numbers)

        await client.send({"type": "ping"})
        # no `state` frame came in between, only the host's absence: the live stayed live
        assert (await client.recv()) == {"type": "host", "status": "away"}
        assert (await client.recv()) == {"type": "host", "status": "back"}
        assert (await client.recv()) == {"type": "pong"}
        async with setting.database.session() as session:
            live = await session.get(Live, setting.live_id)
            assert live is not None
            assert live.state is LiveState.LIVE

        for socket in (host, client):
            await socket.close()
        await publisher.close()
        await viewer.close()


async def test_media_host_away_in_welcome(data_dir: Path) -> None:
    """Guards against a welcome that does not report the host away. The page of a
    viewer who opens it during the gap then shows a live without a picture, and
    without a word, until the host comes back."""
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        assert host.welcome["host"] == "present"
        early = await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
        assert early.welcome["state"] == "live"
        assert early.welcome["host"] == "present"

        # the media process records the absence before it broadcasts `away`, so a socket
        # opened after the broadcast reached `early` reads it
        await host.close()
        await publisher.close()
        assert (await early.recv_type("host")) == {"type": "host", "status": "away"}
        late = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.second_viewer_cookie
        )
        assert late.welcome["state"] == "live"
        assert late.welcome["host"] == "away"

        host, publisher = await start_publishing(setting)
        assert host.welcome["host"] == "away"
        assert (await late.recv_type("host")) == {"type": "host", "status": "back"}
        after_back = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.viewer_cookie
        )
        assert after_back.welcome["host"] == "present"
        async with setting.database.session() as session:
            live = await session.get(Live, setting.live_id)
            assert live is not None
            assert live.host_away_since is None

        for socket in (host, early, late, after_back):
            await socket.close()
        await publisher.close()


async def test_media_host_gone_ends_after_grace(data_dir: Path) -> None:
    """Guards against a live that stays on forever after its host left without `end`."""
    async with running_live(data_dir, host_reconnect_grace_secs=0.5) as setting:
        host, publisher = await start_publishing(setting)
        client, viewer = await start_watching(setting, setting.viewer_cookie, publisher)
        await asyncio.wait_for(viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)

        await publisher.close()
        await host.close()

        await client.until("state", state="ended")
        await client.until("recording", status="ready")
        assert setting.app.state.media.sessions == {}
        late = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.second_viewer_cookie
        )
        assert late.welcome["state"] == "ended"
        assert late.welcome["host"] == "present"
        await late.close()
        async with setting.database.session() as session:
            live = await session.get(Live, setting.live_id)
            assert live is not None
            assert live.host_away_since is None
        await client.close()
        await viewer.close()


async def test_media_shutdown_interrupts_live(data_dir: Path) -> None:
    """Guards against a server stop that leaves peers or tasks running, or leaves the
    live marked live with no process carrying it."""
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        client, viewer = await start_watching(setting, setting.viewer_cookie, publisher)
        await asyncio.wait_for(viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)
        live_id = setting.live_id
        media = setting.app.state.media

    assert media.sessions == {}
    await viewer.close()
    await publisher.close()
    for socket in (host, client):
        await socket.close()
    left_running = [
        task.get_coro()
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task() and not task.done()
    ]
    assert left_running == []

    database = Database(f"sqlite+aiosqlite:///{(data_dir / 'veillee.sqlite3').resolve()}")
    async with database.session() as session:
        live = await session.get(Live, live_id)
        assert live is not None
        assert live.state is LiveState.INTERRUPTED
        recordings = (await session.scalars(select(Recording))).all()
        assert [row.status for row in recordings] == [RecordingStatus.RECORDING]
    await database.dispose()
