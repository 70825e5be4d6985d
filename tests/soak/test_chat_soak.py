"""Soak: one live for a long time across two server processes, with a busy chat and
viewers of its media. Run it with `bash dev.sh test -m soak`; the default run leaves it
out.

Two `server.py` processes share one Redis and one database (a SQLite file in WAL mode,
or PostgreSQL with SOAK_DATABASE=postgresql). The chat participants connect to both
processes in turn from the chat benchmark's client worker processes
(benchmarks/fanout_clients.py) and send the messages themselves. The host publishes
the live from an aiortc peer in this process to the first server, and the media
viewers watch it through the second server from processes of light aiortc peers that
count complete frames without decoding them (benchmarks/media_viewers.py). Everything
binds to 127.0.0.1, except WebRTC media, which uses this machine's own interface
address with no ICE server.

Environment variables set the size, so that a short run fits a development machine:

    SOAK_SECONDS          seconds of chat after the warm-up (default 600)
    SOAK_PARTICIPANTS     chat participants, the host included (default 2000)
    SOAK_MEDIA_VIEWERS    participants who also receive the media (default 100)
    SOAK_RATE             chat messages a second (default 20)
    SOAK_WARMUP_SECONDS   seconds after which server memory must stop growing (default 60)
    SOAK_DATABASE         sqlite or postgresql (default sqlite)
    SOAK_REPORT           path of a JSON file to write the figures to (default: none)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import PostgresServer
from tests.support.processes import RedisServer
from tests.support.signaling_peers import Publisher, SignalingClient

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS_DIR) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS_DIR))

from chat_fanout import Load, percentile  # noqa: E402
from chat_setup import OursCluster, WorkerPool, process_rss_bytes  # noqa: E402
from media_viewers import ViewerProcess  # noqa: E402

pytestmark = [pytest.mark.soak, pytest.mark.redis]

# Chat is sent in steps of this many seconds. Server memory is sampled after each step.
STEP_SECS = 10.0
# Server memory may grow this much after the warm-up: allocator arenas and the
# database driver's caches settle in steps of a few MiB.
# NOTE: a judgment, not a measured bound. A leak of one event or one frame per
# delivery would pass it only in a run much shorter than the default.
MEMORY_GROWTH_MAX_FRACTION = 0.05
MEMORY_GROWTH_SLACK_BYTES = 16 * 2**20
# p99 of chat delivery that the soak reports against.
P99_TARGET_MS = 100.0
CLIENT_WORKERS = 2
# Light viewers per process, and how long a process may take to connect them all.
VIEWERS_PER_PROCESS = 50
VIEWERS_READY_TIMEOUT_SECS = 240.0
# The share of the frames the host sent that every media viewer must receive complete.
# The light viewers ask for no retransmission, so a lost packet loses its frame.
MIN_FRAMES_RATIO = 0.9


def setting(name: str, default: int) -> int:
    value = int(os.environ.get(name, default))
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}")
    return value


@contextlib.asynccontextmanager
async def cluster(participants: int, redis_url: str) -> AsyncIterator[OursCluster]:
    """Start the two server processes and the accounts, in a thread because
    OursCluster.start runs its own event loop."""
    postgres: PostgresServer | None = None
    database_url = None
    if os.environ.get("SOAK_DATABASE", "sqlite") == "postgresql":
        postgres = PostgresServer()
        database_url = postgres.create_database()
    try:
        started = await asyncio.to_thread(
            OursCluster.start, 2, participants, redis_url, database_url
        )
        try:
            yield started
        finally:
            started.stop()
    finally:
        if postgres is not None:
            postgres.stop()


async def drain(client: SignalingClient) -> None:
    """Read the host's signaling frames, so that the server never waits on them."""
    with contextlib.suppress(Exception):
        while True:
            await client.connection.recv()


async def test_chat_and_media_soak() -> None:
    seconds = setting("SOAK_SECONDS", 600)
    participants = setting("SOAK_PARTICIPANTS", 2000)
    media_viewers = setting("SOAK_MEDIA_VIEWERS", 100)
    rate = float(setting("SOAK_RATE", 20))
    warmup_secs = setting("SOAK_WARMUP_SECONDS", 60)
    redis = RedisServer()
    viewers: list[ViewerProcess] = []
    workers: WorkerPool | None = None
    try:
        async with cluster(participants, redis.url) as servers:
            live_id = int(servers.channel.removeprefix("live:"))
            first, second = servers.servers

            # the host publishes the live; the first participant is the host
            host = await SignalingClient.open(first.ws_url, live_id, servers.cookies[0])
            publisher = Publisher()
            await publisher.accept(await host.request_answer("publish", await publisher.offer()))
            await host.until("state", state="live")
            host_reader = asyncio.create_task(drain(host))

            for start in range(0, media_viewers, VIEWERS_PER_PROCESS):
                count = min(VIEWERS_PER_PROCESS, media_viewers - start)
                viewers.append(ViewerProcess(second.ws_url, live_id, servers.cookies[1], count))
            for viewer_process in viewers:
                ready = await viewer_process.read_line(VIEWERS_READY_TIMEOUT_SECS)
                assert ready == "ready"
            frames_before = await frames_of(viewers)
            host_frames_before = publisher.video.frames_sent

            workers = await asyncio.to_thread(WorkerPool.start, servers.endpoints(), CLIENT_WORKERS)
            await asyncio.to_thread(workers.call, "connect")
            load = Load(workers, participants, servers.pids, redis.process.pid)

            steps: list[dict[str, Any]] = []
            latencies: list[float] = []
            memory: list[tuple[float, list[int]]] = []
            started = time.monotonic()
            total_secs = warmup_secs + seconds
            while time.monotonic() - started < total_secs:
                step = await asyncio.to_thread(load.run, rate, STEP_SECS)
                elapsed = time.monotonic() - started
                memory.append((elapsed, [process_rss_bytes(pid) for pid in servers.pids]))
                steps.append({"at_secs": round(elapsed), **step_figures(step)})
                if elapsed > warmup_secs:
                    latencies.extend(load.latencies_ms)

            seqs = await asyncio.to_thread(workers.call, "seqs")
            frames_after = await frames_of(viewers)
            host_frames = publisher.video.frames_sent - host_frames_before
            host_reader.cancel()
            await host.close()
            await publisher.close()
    finally:
        if workers is not None:
            workers.stop()
        for viewer_process in viewers:
            viewer_process.stop()
        redis.stop()

    latencies.sort()
    sent = sum(step["sent"] for step in steps)
    report = {
        "seconds": seconds,
        "warmup_secs": warmup_secs,
        "participants": participants,
        "media_viewers": media_viewers,
        "rate": rate,
        "database": os.environ.get("SOAK_DATABASE", "sqlite"),
        "messages_sent": sent,
        "deliveries_measured": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "p99_target_ms": P99_TARGET_MS,
        "seq_errors": sum(item["seq_errors"] for item in seqs),
        "last_seq_per_connection": [
            min(item["min_last_seq"] for item in seqs),
            max(item["max_last_seq"] for item in seqs),
        ],
        "host_video_frames": host_frames,
        "video_frames_per_viewer": [
            after - before for before, after in zip(frames_before, frames_after, strict=True)
        ],
        "server_rss_mib": [
            {"at_secs": round(at), "mib": [round(size / 2**20, 1) for size in sizes]}
            for at, sizes in memory
        ],
        "steps": steps,
    }
    print(json.dumps({key: value for key, value in report.items() if key != "steps"}, indent=1))
    if os.environ.get("SOAK_REPORT"):
        Path(os.environ["SOAK_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")

    # every message stored once and delivered once, in order, to every participant
    assert all(step["received"] == step["expected"] for step in steps), steps
    assert all(step["closed"] == 0 for step in steps), steps
    assert report["seq_errors"] == 0
    assert report["last_seq_per_connection"] == [sent, sent]

    # the media kept flowing to every viewer
    minimum_frames = host_frames * MIN_FRAMES_RATIO
    assert all(frames >= minimum_frames for frames in report["video_frames_per_viewer"]), (
        host_frames,
        sorted(report["video_frames_per_viewer"])[:10],
    )

    # server memory stopped growing after the warm-up
    after_warmup = next(sizes for at, sizes in memory if at >= warmup_secs)
    for before, final in zip(after_warmup, memory[-1][1], strict=True):
        allowed = before * MEMORY_GROWTH_MAX_FRACTION + MEMORY_GROWTH_SLACK_BYTES
        assert final - before <= allowed, report["server_rss_mib"]


async def frames_of(viewers: list[ViewerProcess]) -> list[int]:
    """Return the complete video frames each light viewer has received so far."""
    frames: list[int] = []
    for viewer_process in viewers:
        frames.extend((await viewer_process.report())["frames"])
    return frames


def step_figures(step: Any) -> dict[str, Any]:
    return {
        "sent": step.sent,
        "expected": step.expected,
        "received": step.received,
        "closed": step.closed,
        "p99_ms": round(step.p99_ms, 2) if step.p99_ms != float("inf") else None,
        "server_cpu_secs": round(step.server_cpu_secs, 2),
    }
