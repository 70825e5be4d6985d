"""Two server processes sharing one Redis and one PostgreSQL database: a live hosted
through one is watched through the other, and its chat works across both, when the
other process stops, and when the live's media process is killed.

Every step goes through the real endpoints: accounts and the live come from the forms,
media from aiortc peers through the signaling sockets, chat from the chat sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.database import Database
from live.models import Live
from tests.support.chat_clients import ChatClient
from tests.support.clients import (
    Account,
    cookie_header,
    register_for_live,
    schedule_live,
    sign_up,
)
from tests.support.postgres import PostgresServer
from tests.support.processes import ServerProcess
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    MIN_DECODED_SHARE,
    WINDOW_FRAMES,
    Publisher,
    SignalingClient,
    count_window,
    watch_on,
)

PASSWORD = "cahier de textes"
# The service promises to notice a dead media node's lives within this time: the node
# lease lasts 6 s, and survivors look for expired leases every second.
DEAD_NODE_DETECTION_SECS = 10.0

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@dataclass
class Deployment:
    """Processes `media` and `other` on one Redis and one database, with a scheduled
    live hosted by Claire and attended by Karim."""

    media: ServerProcess
    other: ServerProcess
    live_id: int
    host_cookie: str
    viewer_cookie: str


@contextlib.contextmanager
def deployment(data_dir: Path, redis_url: str, database_url: str) -> Iterator[Deployment]:
    env = {"DATABASE_URL": database_url}
    started: list[ServerProcess] = []
    try:
        started.append(ServerProcess(data_dir, redis_url=redis_url, extra_env=env))
        started.append(ServerProcess(data_dir, redis_url=redis_url, extra_env=env))
        media, other = started
        host_http = sign_up(media.url, Account("claire@example.org", PASSWORD, "Claire"))
        viewer_http = sign_up(other.url, Account("karim@example.org", PASSWORD, "Karim"))
        live_id = schedule_live(host_http, "Les cartes mentales en classe")
        assert register_for_live(viewer_http, live_id).status_code == 303
        yield Deployment(
            media, other, live_id, cookie_header(host_http), cookie_header(viewer_http)
        )
        host_http.close()
        viewer_http.close()
    finally:
        for process in started:
            process.stop()


async def publish(server: ServerProcess, setting: Deployment) -> tuple[SignalingClient, Publisher]:
    """Publish as the host through `server`; return once the live is `live`."""
    host = await SignalingClient.open(server.ws_url, setting.live_id, setting.host_cookie)
    publisher = Publisher()
    await publisher.accept(await host.request_answer("publish", await publisher.offer()))
    if host.welcome["state"] != "live":
        await host.until("state", state="live")
    return host, publisher


def history(server: ServerProcess, live_id: int, cookie: str) -> list[tuple[int, str]]:
    """Return the (seq, text) of every message stored on the live's channel."""
    response = httpx.get(
        f"{server.url}/api/chat/live:{live_id}/events",
        params={"after": 0},
        headers={"Cookie": cookie},
        timeout=EVENT_TIMEOUT_SECS,
    )
    assert response.status_code == 200, response.text
    return [
        (event["seq"], event["text"])
        for event in response.json()["events"]
        if event["kind"] == "message"
    ]


async def chat_both_ways(
    setting: Deployment, host_chat: ChatClient, viewer_chat: ChatClient, round_name: str
) -> list[tuple[int, str]]:
    """Send one message through each process, check that the other side receives it,
    and return the (seq, text) of both."""
    host_text = f"Bonsoir, {round_name} côté animatrice"
    client_suffix = round_name.replace(" ", "-").replace("è", "e")
    host_seq = await host_chat.say(f"claire-{client_suffix}", host_text)
    received = (await viewer_chat.events_up_to(host_seq))[-1]
    assert received["text"] == host_text

    viewer_text = f"Merci ! {round_name} côté participant"
    viewer_seq = await viewer_chat.say(f"karim-{client_suffix}", viewer_text)
    received = (await host_chat.events_up_to(viewer_seq))[-1]
    assert received["text"] == viewer_text
    return [(host_seq, host_text), (viewer_seq, viewer_text)]


async def test_media_nodes_watch_through_other_process(
    data_dir: Path, redis_url: str, postgres_server: PostgresServer
) -> None:
    """Guards against a viewer who reaches another process than the host's and gets no
    media, a host who never hears of that viewer, and a stopped process that loses
    chat messages."""
    with deployment(data_dir, redis_url, postgres_server.create_database()) as setting:
        media, other = setting.media, setting.other
        host, publisher = await publish(media, setting)

        # the viewer's socket reaches the other process, its peer the media process
        watcher = await SignalingClient.open(other.ws_url, setting.live_id, setting.viewer_cookie)
        assert watcher.welcome["state"] == "live"
        viewer = await watch_on(watcher, publisher)
        decoded, _, _ = await count_window(viewer, publisher)
        assert decoded >= MIN_DECODED_SHARE * WINDOW_FRAMES
        # audio is counted over a second window: the first may begin before audio flows
        decoded, audio_sent, audio_received = await count_window(viewer, publisher)
        assert decoded >= MIN_DECODED_SHARE * WINDOW_FRAMES
        assert audio_received >= MIN_DECODED_SHARE * audio_sent
        await host.until("viewers", count=1)

        # chat across both processes
        host_chat = await ChatClient.connect(
            media.ws_url, f"live:{setting.live_id}", setting.host_cookie
        )
        viewer_chat = await ChatClient.connect(
            other.ws_url, f"live:{setting.live_id}", setting.viewer_cookie
        )
        await host_chat.open()
        await viewer_chat.open()
        sent = await chat_both_ways(setting, host_chat, viewer_chat, "premier tour")
        for server in (media, other):
            health = httpx.get(f"{server.url}/health", timeout=EVENT_TIMEOUT_SECS).json()
            assert health["media_nodes"] == "ok"

        # the other process stops: its sockets close, and the host's viewer count drops
        other.stop()
        assert await watcher.close_code() == 1012
        await host.until("viewers", count=0)
        after_stop = await host_chat.say("claire-apres", "Karim nous a quittés")
        sent.append((after_stop, "Karim nous a quittés"))

        assert history(media, setting.live_id, setting.host_cookie) == sorted(sent)
        for socket in (host, host_chat, viewer_chat, watcher):
            await socket.close()
        for peer in (publisher, viewer):
            await peer.close()


async def test_media_nodes_killed_media_process(
    data_dir: Path, redis_url: str, postgres_server: PostgresServer
) -> None:
    """Guards against a live shown on air after its media process died, chat messages
    lost with that process, and a host who cannot resume through another process."""
    with deployment(data_dir, redis_url, postgres_server.create_database()) as setting:
        media, other = setting.media, setting.other
        host, publisher = await publish(media, setting)
        watcher = await SignalingClient.open(other.ws_url, setting.live_id, setting.viewer_cookie)
        viewer = await watch_on(watcher, publisher)
        decoded, _, _ = await count_window(viewer, publisher)
        assert decoded >= MIN_DECODED_SHARE * WINDOW_FRAMES

        viewer_chat = await ChatClient.connect(
            other.ws_url, f"live:{setting.live_id}", setting.viewer_cookie
        )
        host_chat = await ChatClient.connect(
            media.ws_url, f"live:{setting.live_id}", setting.host_cookie
        )
        await viewer_chat.open()
        await host_chat.open()
        sent = await chat_both_ways(setting, host_chat, viewer_chat, "avant la panne")

        # the media process dies; the viewer's process notices its lease expire
        media.kill()
        interrupted = await asyncio.wait_for(
            watcher.until("state", state="interrupted"), DEAD_NODE_DETECTION_SECS
        )
        assert interrupted["ended_at"] is not None
        assert history(other, setting.live_id, setting.viewer_cookie) == sorted(sent)
        for socket in (host, host_chat):
            await socket.close()
        await publisher.close()
        await viewer.close()

        # the host resumes through the surviving process, which now carries the media
        host, publisher = await publish(other, setting)
        assert host.welcome["state"] == "interrupted"
        await watcher.until("state", state="live")
        viewer = await watch_on(watcher, publisher)
        decoded, _, _ = await count_window(viewer, publisher)
        assert decoded >= MIN_DECODED_SHARE * WINDOW_FRAMES

        # the chat goes on through the surviving process
        host_chat = await ChatClient.connect(
            other.ws_url, f"live:{setting.live_id}", setting.host_cookie
        )
        await host_chat.open(after=max(seq for seq, _ in sent))
        sent += await chat_both_ways(setting, host_chat, viewer_chat, "après la reprise")
        assert history(other, setting.live_id, setting.viewer_cookie) == sorted(sent)

        for socket in (host, host_chat, viewer_chat, watcher):
            await socket.close()
        for peer in (publisher, viewer):
            await peer.close()


async def test_media_nodes_host_away_welcome(
    data_dir: Path, redis_url: str, postgres_server: PostgresServer
) -> None:
    """Guards against a welcome that reports the host's absence only on the live's
    media process, and against an absence still reported after the host came back or
    after a surviving process interrupted the live of a dead media process."""
    database_url = postgres_server.create_database()
    with deployment(data_dir, redis_url, database_url) as setting:
        media, other = setting.media, setting.other
        host, publisher = await publish(media, setting)
        early = await SignalingClient.open(other.ws_url, setting.live_id, setting.viewer_cookie)
        assert early.welcome["host"] == "present"

        # the host leaves the media process, and a socket on the other one reads it in
        # its welcome
        await host.close()
        await publisher.close()
        await early.until("host", status="away")
        late = await SignalingClient.open(other.ws_url, setting.live_id, setting.viewer_cookie)
        assert late.welcome["state"] == "live"
        assert late.welcome["host"] == "away"

        # the host publishes again through the other process, which forwards it
        host, publisher = await publish(other, setting)
        assert host.welcome["host"] == "away"
        await late.until("host", status="back")
        back = await SignalingClient.open(other.ws_url, setting.live_id, setting.viewer_cookie)
        assert back.welcome["host"] == "present"
        await back.close()

        # away again, then the media process dies: the survivor's interruption ends the
        # absence along with the live's stretch on air
        await host.close()
        await publisher.close()
        await late.until("host", status="away")
        media.kill()
        await asyncio.wait_for(late.until("state", state="interrupted"), DEAD_NODE_DETECTION_SECS)
        after = await SignalingClient.open(other.ws_url, setting.live_id, setting.viewer_cookie)
        assert after.welcome["state"] == "interrupted"
        assert after.welcome["host"] == "present"
        database = Database(database_url)
        try:
            async with database.session() as session:
                live = await session.get(Live, setting.live_id)
        finally:
            await database.dispose()
        assert live is not None
        assert live.host_away_since is None

        for socket in (early, late, after):
            await socket.close()
