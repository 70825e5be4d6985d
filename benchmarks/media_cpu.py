"""Measure the CPU that one live costs the server process for 0, 1, 5 and 10 viewers.

    .venv/bin/python benchmarks/media_cpu.py [--viewers 0,1,5,10] [--seconds 20]

Starts `server.py` on a free loopback port with a fresh data folder, publishes a
640x360 picture at 20 fps and a 440 Hz tone from an aiortc peer in this process, then
for each viewer count starts a separate process with that many aiortc viewer peers
and measures the server process's CPU seconds per second of live, from
/proc/<pid>/stat (user + system time of all its threads). WebRTC media flows over
this machine's own interface address, since aiortc gathers no loopback candidate;
nothing leaves the machine, and no ICE server is configured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from accounts import service as accounts_service  # noqa: E402
from tests.support.chat_clients import create_live, database_in  # noqa: E402
from tests.support.processes import SOCKETS_PER_SHARED_ACCOUNT, ServerProcess  # noqa: E402
from tests.support.signaling_peers import (  # noqa: E402
    PASSWORD,
    Publisher,
    SignalingClient,
    log_in,
    rtc_configuration,
)

CLOCK_TICKS_PER_SEC = os.sysconf("SC_CLK_TCK")
# Seconds of live before each measurement, for the viewers' encoders and congestion
# control to settle after the peers connect.
WARMUP_SECS = 3.0
# How long the viewer process may take to connect all its peers and decode a frame on each.
VIEWERS_READY_TIMEOUT_SECS = 60.0


def process_cpu_secs(pid: int) -> float:
    """User plus system CPU time of every thread of process `pid`, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields 14 and 15 of stat(5), counted from the pid, are utime and stime
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SEC


def own_cpu_secs() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Measurement:
    viewers: int
    seconds: float
    server_cpu: float
    viewer_process_cpu: float
    publisher_cpu: float
    frames_per_viewer: float


# viewer process


class FrameCounter:
    """Counts the decoded frames of every track it is given."""

    def __init__(self) -> None:
        self.video_frames = 0
        self.tasks: list[asyncio.Future[None]] = []

    def consume(self, track: MediaStreamTrack) -> None:
        self.tasks.append(asyncio.ensure_future(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                if track.kind == "video":
                    self.video_frames += 1


async def run_viewers(ws_url: str, live_id: int, cookie: str, count: int) -> None:
    """Connect `count` viewer peers and print `ready`. Then, until stdin closes, reply
    to each `report` line on stdin with a JSON list of the video frames each viewer
    has decoded so far."""
    clients: list[SignalingClient] = []
    peers: list[RTCPeerConnection] = []
    counters: list[FrameCounter] = []
    for _ in range(count):
        client = await SignalingClient.open(ws_url, live_id, cookie)
        pc = RTCPeerConnection(rtc_configuration())
        counter = FrameCounter()
        pc.on("track", counter.consume)
        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        answer = await client.request_answer("watch", pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        clients.append(client)
        peers.append(pc)
        counters.append(counter)

    deadline = time.monotonic() + VIEWERS_READY_TIMEOUT_SECS
    while any(counter.video_frames == 0 for counter in counters):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"not every viewer decoded a frame in {VIEWERS_READY_TIMEOUT_SECS} s"
            )
        await asyncio.sleep(0.1)
    print("ready", flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        frames = [counter.video_frames for counter in counters]
        print(json.dumps(frames), flush=True)

    for pc in peers:
        await pc.close()
    for client in clients:
        await client.close()


# measuring process


class ViewerProcess:
    """This script run with --viewer-process, talking over stdin and stdout."""

    def __init__(self, ws_url: str, live_id: int, cookie: str, count: int) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--viewer-process",
                "--ws-url",
                ws_url,
                "--live-id",
                str(live_id),
                "--count",
                str(count),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "VEILLEE_BENCHMARK_COOKIE": cookie},
            text=True,
        )

    async def read_line(self, limit_secs: float) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), limit_secs)
        if not line:
            raise RuntimeError(f"viewer process exited with code {self.process.wait()}")
        return line.strip()

    async def report(self) -> list[int]:
        assert self.process.stdin is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        frames: list[int] = json.loads(await self.read_line(10.0))
        return frames

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


async def measure(
    server: ServerProcess, live_id: int, cookie: str, viewers: int, seconds: float
) -> Measurement:
    viewer_process: ViewerProcess | None = None
    if viewers:
        viewer_process = ViewerProcess(server.ws_url, live_id, cookie, viewers)
        ready = await viewer_process.read_line(VIEWERS_READY_TIMEOUT_SECS)
        if ready != "ready":
            raise RuntimeError(f"viewer process printed {ready!r} instead of 'ready'")
    await asyncio.sleep(WARMUP_SECS)

    frames_before = await viewer_process.report() if viewer_process else []
    viewer_cpu_before = process_cpu_secs(viewer_process.process.pid) if viewer_process else 0.0
    server_before = process_cpu_secs(server.process.pid)
    own_before = own_cpu_secs()
    started = time.monotonic()

    await asyncio.sleep(seconds)

    elapsed = time.monotonic() - started
    server_cpu = process_cpu_secs(server.process.pid) - server_before
    own_cpu = own_cpu_secs() - own_before
    frames_after = await viewer_process.report() if viewer_process else []
    viewer_cpu = 0.0
    if viewer_process is not None:
        viewer_cpu = process_cpu_secs(viewer_process.process.pid) - viewer_cpu_before
        viewer_process.stop()

    decoded = [after - before for before, after in zip(frames_before, frames_after, strict=True)]
    return Measurement(
        viewers=viewers,
        seconds=elapsed,
        server_cpu=server_cpu / elapsed,
        viewer_process_cpu=viewer_cpu / elapsed,
        publisher_cpu=own_cpu / elapsed,
        frames_per_viewer=(sum(decoded) / len(decoded) / elapsed) if decoded else 0.0,
    )


async def run_benchmark(viewer_counts: list[int], seconds: float) -> list[Measurement]:
    with tempfile.TemporaryDirectory(prefix="veillee-media-cpu-") as folder:
        data_dir = Path(folder) / "data"
        # every viewer peer uses the same account's cookie
        server = ServerProcess(
            data_dir, extra_env={"SIGNALING_SOCKETS_PER_PERSON": str(SOCKETS_PER_SHARED_ACCOUNT)}
        )
        try:
            database = database_in(data_dir)
            async with database.session() as session:
                host = await accounts_service.create_user(
                    session, email="hote@example.org", display_name="Hôte", password=PASSWORD
                )
                viewer = await accounts_service.create_user(
                    session, email="vue@example.org", display_name="Vue", password=PASSWORD
                )
            live_id = await create_live(database, host.id, [viewer.id])
            await database.dispose()
            host_cookie = await log_in(server.url, "hote@example.org")
            viewer_cookie = await log_in(server.url, "vue@example.org")

            host_client = await SignalingClient.open(server.ws_url, live_id, host_cookie)
            publisher = Publisher()
            answer = await host_client.request_answer("publish", await publisher.offer())
            await publisher.accept(answer)
            await host_client.until("state", state="live")

            results = []
            for count in viewer_counts:
                result = await measure(server, live_id, viewer_cookie, count, seconds)
                print(
                    f"media_cpu: {count} viewers: server {result.server_cpu:.3f} CPU s/s, "
                    f"{result.frames_per_viewer:.1f} fps per viewer",
                    file=sys.stderr,
                )
                results.append(result)

            await host_client.send({"type": "end"})
            await host_client.until("state", state="ended")
            await host_client.close()
            await publisher.close()
            return results
        finally:
            server.stop()


def print_table(results: list[Measurement]) -> None:
    baseline = next((result.server_cpu for result in results if result.viewers == 0), None)
    print(
        "| viewers | server CPU s/s | per viewer above 0 | fps decoded per viewer "
        "| viewer process CPU s/s | publisher CPU s/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for result in results:
        per_viewer = "–"
        if baseline is not None and result.viewers:
            per_viewer = f"{(result.server_cpu - baseline) / result.viewers:.3f}"
        print(
            f"| {result.viewers} | {result.server_cpu:.3f} | {per_viewer} "
            f"| {result.frames_per_viewer:.1f} | {result.viewer_process_cpu:.3f} "
            f"| {result.publisher_cpu:.3f} |"
        )


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--viewers",
        default="0,1,5,10",
        help="comma-separated viewer counts to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="length of each measurement, in seconds of live (default: %(default)s)",
    )
    parser.add_argument("--viewer-process", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ws-url", help=argparse.SUPPRESS)
    parser.add_argument("--live-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    if arguments.viewer_process:
        cookie = os.environ["VEILLEE_BENCHMARK_COOKIE"]
        asyncio.run(run_viewers(arguments.ws_url, arguments.live_id, cookie, arguments.count))
        return 0
    counts = [int(value) for value in arguments.viewers.split(",")]
    print(
        f"media_cpu: {os.cpu_count()} CPUs, one 640x360 20 fps live, "
        f"{arguments.seconds:.0f} s per measurement",
        file=sys.stderr,
    )
    print_table(asyncio.run(run_benchmark(counts, arguments.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
