"""What every socket of a live hears besides media: viewer counts for the host, pings,
the Origin check against the configured site, and the cap on one person's sockets."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from accounts.models import User
from core.settings import DEFAULT_SIGNALING_SOCKETS_PER_PERSON
from signaling.protocol import CLOSE_REASONS, FOREIGN_ORIGIN_REASON, CloseCode
from tests.support.signaling_peers import SignalingClient, running_live

SITE_URL = "https://veillee.example.org"

pytestmark = pytest.mark.slow


async def test_signaling_viewers_count_reaches_host(data_dir: Path) -> None:
    """Guards against a host who never learns how many people are there, or who counts
    one person twice for two open tabs."""
    async with running_live(data_dir) as setting:
        host = await SignalingClient.open(setting.ws_url, setting.live_id, setting.host_cookie)
        assert await host.recv() == {"type": "viewers", "count": 0}

        first = await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
        assert await host.recv() == {"type": "viewers", "count": 1}
        second_tab = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.viewer_cookie
        )
        other = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.second_viewer_cookie
        )
        assert await host.recv() == {"type": "viewers", "count": 2}

        await second_tab.close()
        await other.close()
        assert await host.recv() == {"type": "viewers", "count": 1}

        # viewers are not told the count
        await first.send({"type": "ping", "client_id": "p-1"})
        assert await first.recv() == {"type": "pong"}
        await first.close()
        assert await host.recv() == {"type": "viewers", "count": 0}
        await host.close()


async def test_signaling_origin_checked_against_site(data_dir: Path) -> None:
    """Guards against another site's page opening the socket with a visitor's cookie."""
    async with running_live(data_dir) as setting:
        # Set after the log-ins: with an https site the session cookie is Secure, which
        # an HTTP client on loopback would not send back.
        setting.app.state.settings = replace(setting.app.state.settings, site_url=SITE_URL)

        accepted = await SignalingClient.connect(
            setting.ws_url, setting.live_id, setting.viewer_cookie, origin=SITE_URL
        )
        assert (await accepted.recv())["type"] == "welcome"
        await accepted.close()

        for origin in ("https://ailleurs.example", setting.base_url, "http://veillee.example.org"):
            refused = await SignalingClient.connect(
                setting.ws_url, setting.live_id, setting.viewer_cookie, origin=origin
            )
            assert await refused.close_code() == 4403, origin
            assert refused.close_reason == FOREIGN_ORIGIN_REASON


async def test_signaling_sockets_per_person_capped(data_dir: Path) -> None:
    """Guards against a script that opens signaling sockets in a loop, each of which may
    hold a peer connection, while a person's few tabs still work."""
    async with running_live(data_dir) as setting:
        sockets = setting.app.state.signaling_sockets
        tabs = [
            await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
            for _ in range(DEFAULT_SIGNALING_SOCKETS_PER_PERSON)
        ]
        extra = await SignalingClient.connect(
            setting.ws_url, setting.live_id, setting.viewer_cookie
        )
        assert await extra.close_code() == 4429
        assert extra.close_reason == CLOSE_REASONS[CloseCode.TOO_MANY_SOCKETS]
        # another person is not affected
        other = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.second_viewer_cookie
        )

        await tabs.pop().close()
        async with setting.database.session() as session:
            viewer_id = await session.scalar(
                select(User.id).where(User.email == "spectatrice@example.org")
            )
        key = (setting.live_id, viewer_id)
        # the server releases the closed socket once it reads the close frame
        async with asyncio.timeout(10):
            while sockets.count(key) >= DEFAULT_SIGNALING_SOCKETS_PER_PERSON:
                await asyncio.sleep(0.01)
        replacement = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.viewer_cookie
        )
        for client in [*tabs, replacement, other]:
            await client.close()
