"""The HLS folder of a live whose server process is SIGKILLed goes once the surviving
process recovers the live, and the survivor's own live keeps its folder.

Two server processes share one Redis and one data folder, hence one HLS folder. Each
carries one live, published by an aiortc peer on a signaling socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from signaling.hls_folders import WRITER_FILE
from tests.support.clients import Account, cookie_header, schedule_live, sign_up
from tests.support.processes import ServerProcess, server_pair
from tests.support.signaling_peers import Publisher, SignalingClient

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.faults]

PASSWORD = "cahier de textes"
# The first segments are complete about 2 s after the media arrives; the margin
# covers a loaded machine.
HLS_START_TIMEOUT_SECS = 30.0
# A dead media node's lives are recovered within 10 s (6 s lease, checks every
# second); the margin covers a loaded machine.
RECOVERY_TIMEOUT_SECS = 30.0
POLL_INTERVAL_SECS = 0.2


@dataclass
class OnAir:
    """A live on air through one process, and the host's socket and peer."""

    live_id: int
    host: SignalingClient
    publisher: Publisher

    async def close(self) -> None:
        await self.host.close()
        await self.publisher.close()


async def poll(check: Callable[[], bool], description: str, timeout_secs: float) -> None:
    deadline = time.monotonic() + timeout_secs
    while not check():
        assert time.monotonic() < deadline, f"{description} not seen after {timeout_secs} s"
        await asyncio.sleep(POLL_INTERVAL_SECS)


async def go_on_air(process: ServerProcess, host_cookie: str, live_id: int) -> OnAir:
    host = await SignalingClient.open(process.ws_url, live_id, host_cookie)
    publisher = Publisher()
    await publisher.accept(await host.request_answer("publish", await publisher.offer()))
    await host.until("state", state="live")
    return OnAir(live_id, host, publisher)


@contextlib.contextmanager
def two_processes(data_dir: Path, redis_url: str) -> Iterator[list[ServerProcess]]:
    """Two server processes sharing one data folder; their logs are printed on failure."""
    with server_pair(data_dir, redis_url) as started:
        try:
            yield started
        finally:
            for process in started:
                print(f"--- server log, port {process.port} ---")
                print(process.log_text())


def writer_node(folder: Path) -> str:
    node: str = json.loads((folder / WRITER_FILE).read_text())["node"]
    return node


async def test_killed_process_hls_folder_removed(data_dir: Path, redis_url: str) -> None:
    """Guards against the segments of a killed process's live staying on disk until
    that live streams again, and against a survivor removing its own live's files."""
    with two_processes(data_dir, redis_url) as (first, second):
        host_http = sign_up(first.url, Account("claire@example.org", PASSWORD, "Claire"))
        host_cookie = cookie_header(host_http)
        killed_live = schedule_live(host_http, "Les cartes mentales en classe")
        surviving_live = schedule_live(host_http, "Le conseil de classe expliqué")
        host_http.close()
        hls_dir = data_dir / "hls"
        killed_folder = hls_dir / str(killed_live)
        surviving_folder = hls_dir / str(surviving_live)

        # each process carries one live, whose stream is written to the shared folder
        killed_air = await go_on_air(first, host_cookie, killed_live)
        surviving_air = await go_on_air(second, host_cookie, surviving_live)
        for folder in (killed_folder, surviving_folder):
            await poll(
                (folder / "master.m3u8").exists, f"{folder}/master.m3u8", HLS_START_TIMEOUT_SECS
            )
        assert writer_node(killed_folder) != writer_node(surviving_folder)

        # the first process dies; the survivor interrupts its live and removes its folder
        first.kill()
        await killed_air.host.close()
        await killed_air.publisher.close()
        watcher = await SignalingClient.open(second.ws_url, killed_live, host_cookie)
        if watcher.welcome["state"] != "interrupted":
            await asyncio.wait_for(
                watcher.until("state", state="interrupted"), RECOVERY_TIMEOUT_SECS
            )
        await poll(
            lambda: not killed_folder.exists(), f"removal of {killed_folder}", RECOVERY_TIMEOUT_SECS
        )
        await watcher.close()

        # the survivor's own live streams on, in its folder
        assert (surviving_folder / "master.m3u8").exists()
        assert (surviving_folder / WRITER_FILE).exists()
        playlist = surviving_folder / "high.m3u8"
        before = playlist.read_text()
        await poll(
            lambda: playlist.read_text() != before, f"{playlist} update", HLS_START_TIMEOUT_SECS
        )

        await surviving_air.close()
