"""`--host-reconnect-grace` reaches the media sessions of a real server process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.clients import (
    Account,
    cookie_header,
    register_for_live,
    schedule_live,
    sign_up,
)
from tests.support.processes import ServerProcess
from tests.support.signaling_peers import Publisher, SignalingClient

PASSWORD = "cahier de textes"
GRACE_SECS = 1.0
# The default grace is 60 s, so ending within this shows the option was applied.
ENDED_WITHIN_SECS = 20.0

pytestmark = pytest.mark.slow


async def test_host_grace_option_ends_live(data_dir: Path) -> None:
    """Guards against an option that is parsed but never reaches the media sessions."""
    server = ServerProcess(data_dir, extra_args=["--host-reconnect-grace", str(GRACE_SECS)])
    try:
        with (
            sign_up(server.url, Account("claire@example.org", PASSWORD, "Claire")) as claire,
            sign_up(server.url, Account("karim@example.org", PASSWORD, "Karim")) as karim,
        ):
            live_id = schedule_live(claire, "Les cartes mentales en classe")
            assert register_for_live(karim, live_id).status_code == 303
            host_cookie = cookie_header(claire)
            viewer_cookie = cookie_header(karim)

        host = await SignalingClient.open(server.ws_url, live_id, host_cookie)
        publisher = Publisher()
        await publisher.accept(await host.request_answer("publish", await publisher.offer()))
        await host.until("state", state="live")
        watcher = await SignalingClient.open(server.ws_url, live_id, viewer_cookie)

        # the host leaves without ending; the live ends once the grace runs out
        await host.close()
        await publisher.close()
        left = time.monotonic()
        ended = await watcher.until("state", state="ended")
        assert ended["ended_at"] is not None
        assert time.monotonic() - left < ENDED_WITHIN_SECS
        await watcher.close()
    finally:
        server.stop()
