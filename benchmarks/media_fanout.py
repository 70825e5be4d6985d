"""Media fan-out: the server CPU that each viewer of one live costs, on the encode-once
path and on aiortc's MediaRelay path, from 10 viewers up to where delivery breaks.

    .venv/bin/python benchmarks/media_fanout.py [--viewers 10,50,100,...] [--seconds 15]

For each path, starts `server.py --media-path <path>` on a free loopback port with a
fresh data folder, and publishes one live from an aiortc peer in this process. The
picture is 640x360 at 30 frames per second: a texture panning 2 pixels a frame, which
fills the shared encoder's 506 kbit/s. The sound is a 440 Hz tone. Viewers
are light receivers (benchmarks/media_viewers.py) in processes of at most 50: real peer
connections whose packets are counted, not decoded. Once every viewer has a complete
frame and 3 s have passed, each step measures for `--seconds`:

- server CPU seconds per second of live, user plus system time of all the server's
  threads from /proc/<pid>/stat;
- the share of the frames sent by the publisher that each viewer received complete,
  averaged over the viewers;
- the CPU of the viewer processes and of this process, how busy each core was
  (/proc/stat), and how long the server's threads waited for their core while ready to
  run (/proc/<pid>/task/*/schedstat), to tell when the receivers rather than the server
  ran out of CPU.

The CPU per viewer of a path is the least-squares slope of the server CPU above the
0-viewer step against served viewers: viewers times the share of frames they received.

The server runs on core 0 alone; this process, the publisher and the viewer processes
share core 1, so that the server's figures are those of one core. Other programs on the
machine are not moved: the load average is recorded with each step. On a machine with
fewer than 2 cores nothing is pinned, and the results say so.

A path stops growing at the first step below 99 % of frames delivered, or whose
viewers do not all receive a frame, or once its share of `--max-minutes` has passed.
A step below 99 % goes on to the next count, though, while neither the server nor the
receivers used most of their core and at least 30 % of frames arrived: other programs
took the cores, and more steps still measure the CPU that each viewer costs.
Results go to benchmarks/results/fanout.json and the plot to
docs/images/media_fanout_cpu.png. WebRTC flows over this machine's own interface
address (aiortc gathers no loopback candidate) and no ICE server is configured, so
nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

import aiortc  # noqa: E402
import av  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
from aiortc.mediastreams import MediaStreamError, VideoStreamTrack  # noqa: E402
from av.video.frame import VideoFrame  # noqa: E402
from media_viewers import ViewerProcess  # noqa: E402

from accounts import service as accounts_service  # noqa: E402
from tests.support.chat_clients import create_live, database_in  # noqa: E402
from tests.support.processes import SOCKETS_PER_SHARED_ACCOUNT, ServerProcess  # noqa: E402
from tests.support.signaling_peers import (  # noqa: E402
    PASSWORD,
    Publisher,
    SignalingClient,
    log_in,
)

CLOCK_TICKS_PER_SEC = os.sysconf("SC_CLK_TCK")
PATHS = ("encode_once", "relay")
PICTURE_WIDTH = 640
PICTURE_HEIGHT = 360
# Pixels the texture moves per frame: enough motion that every frame costs bits.
PAN_PIXELS_PER_FRAME = 2
# Seconds of live after the viewers are ready and before a step is measured, for the
# viewers' streams and the server's queues to settle.
WARMUP_SECS = 3.0
VIEWERS_PER_PROCESS = 50
# Connecting 50 viewers takes about 10 s on an idle 2-core machine; this is for a busy one.
VIEWERS_READY_TIMEOUT_SECS = 240.0
# The delivery the benchmark requires of a step, as a share of the frames sent.
MIN_DELIVERED_RATIO = 0.99
# Below this share of frames delivered, a step tells too little to go on to the next.
MIN_MEASURABLE_RATIO = 0.3
ONE_CORE_CPU_PER_SECOND = 1.0
# Seconds of the time limit kept for each path still to measure.
PATH_RESERVE_SECS = 300.0
# The core of the server, and the core of everything else the benchmark runs.
SERVER_CORE = 0
CLIENTS_CORE = 1
# Share of its core that the server, or the receivers and the publisher together, use
# when they are what limits a step.
SATURATED_CPU_PER_SECOND = 0.9
RESULTS_PATH = PROJECT_DIR / "benchmarks" / "results" / "fanout.json"
PLOT_PATH = PROJECT_DIR / "docs" / "images" / "media_fanout_cpu.png"


class PanningTextureTrack(VideoStreamTrack):
    """A 640x360 picture at 30 frames per second: a blurred random texture that pans
    2 pixels a frame. `frames_sent` counts the frames handed out."""

    def __init__(self) -> None:
        super().__init__()
        rng = np.random.default_rng(2026)
        blocks = rng.integers(16, 236, (PICTURE_HEIGHT // 8, PICTURE_WIDTH // 8 + 80))
        texture = np.kron(blocks, np.ones((8, 8))).astype(np.float32)
        # a 5x5 box blur softens the block edges, as a camera's optics would
        padded = np.pad(texture, 2, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
        self._texture = windows.mean(axis=(2, 3)).astype(np.uint8)
        self.frames_sent = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        pts, time_base = await self.next_timestamp()
        left = (self.frames_sent * PAN_PIXELS_PER_FRAME) % (self._texture.shape[1] - PICTURE_WIDTH)
        planes = np.full((PICTURE_HEIGHT * 3 // 2, PICTURE_WIDTH), 128, dtype=np.uint8)
        planes[:PICTURE_HEIGHT] = self._texture[:, left : left + PICTURE_WIDTH]
        frame = VideoFrame.from_ndarray(planes, format="yuv420p")
        frame.pts = pts
        frame.time_base = time_base
        self.frames_sent += 1
        return frame


def process_cpu_secs(pid: int) -> float:
    """User plus system CPU time of every thread of process `pid`, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields 14 and 15 of stat(5), counted from the pid, are utime and stime
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SEC


def runqueue_wait_ns(pid: int) -> dict[str, int]:
    """Map each thread id of process `pid` to the nanoseconds it spent ready to run but
    waiting for a CPU, from /proc/<pid>/task/*/schedstat."""
    waits = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            waits[task.name] = int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return waits


def runqueue_wait_secs_between(before: dict[str, int], after: dict[str, int]) -> float:
    """Seconds of waiting for a CPU between two `runqueue_wait_ns` snapshots. Threads
    that ended in between are missed, so this is a lower bound."""
    return sum(waited - before.get(thread, 0) for thread, waited in after.items()) / 1e9


def pin_process(pid: int, core: int) -> None:
    """Move every thread of process `pid` to `core`; threads they start inherit it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {core})
        except ProcessLookupError:
            continue


# Whether the server and the clients can each have a core, read before this process
# moves itself to CLIENTS_CORE.
PINNING = {SERVER_CORE, CLIENTS_CORE} <= os.sched_getaffinity(0)


def own_cpu_secs() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_jiffies() -> dict[str, tuple[int, int]]:
    """Return (busy, total) clock ticks since boot of all CPUs ("cpu") and of each one
    ("cpu0", "cpu1", ...), from /proc/stat."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu"):
            continue
        values = [int(value) for value in fields]
        idle = values[3] + values[4]
        ticks[name] = (sum(values) - idle, sum(values))
    return ticks


def busy_ratio(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], cpu: str
) -> float:
    if cpu not in before or cpu not in after:
        return math.nan
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return busy / max(1, total)


def load_average() -> list[float]:
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


@dataclass
class Point:
    path: str
    viewers: int
    cpu_per_second: float
    frames_delivered_ratio: float | None
    min_viewer_ratio: float | None
    receivers_cpu_per_second: float
    publisher_cpu_per_second: float
    machine_busy_ratio: float
    server_core_busy_ratio: float
    clients_core_busy_ratio: float
    # seconds per second that the server's threads waited for their core while ready to run
    server_cpu_wait_per_second: float
    lost_packets: int
    frames_sent: int
    seconds: float
    load_average: list[float]

    @property
    def limited_by(self) -> str:
        """What most likely ran out of CPU: "receivers" when the viewer processes and
        the publisher used nearly all of their core, "server" when the server used
        nearly all of its core, else "other programs", which took the cores meanwhile."""
        clients = self.receivers_cpu_per_second + self.publisher_cpu_per_second
        if clients >= SATURATED_CPU_PER_SECOND:
            return "receivers"
        if self.cpu_per_second >= SATURATED_CPU_PER_SECOND:
            return "server"
        return "other programs"

    @property
    def starved_by_others(self) -> bool:
        """Whether other programs, rather than the server or the receivers, kept the
        step below the delivery required, and enough frames arrived to measure it."""
        return (
            self.limited_by == "other programs"
            and (self.frames_delivered_ratio or 0.0) >= MIN_MEASURABLE_RATIO
        )

    @property
    def held(self) -> bool:
        return self.frames_delivered_ratio is None or (
            self.frames_delivered_ratio >= MIN_DELIVERED_RATIO
        )


async def measure(
    path: str,
    server: ServerProcess,
    video: PanningTextureTrack,
    viewers: list[ViewerProcess],
    seconds: float,
) -> Point:
    reports_before = await asyncio.gather(*(viewer.report() for viewer in viewers))
    sent_before = video.frames_sent
    pin_server(server)
    server_before = process_cpu_secs(server.process.pid)
    wait_before = runqueue_wait_ns(server.process.pid)
    receivers_before = sum(process_cpu_secs(viewer.process.pid) for viewer in viewers)
    own_before = own_cpu_secs()
    ticks_before = cpu_jiffies()
    started = time.monotonic()

    await asyncio.sleep(seconds)

    elapsed = time.monotonic() - started
    server_cpu = process_cpu_secs(server.process.pid) - server_before
    server_wait = runqueue_wait_secs_between(wait_before, runqueue_wait_ns(server.process.pid))
    receivers_cpu = (
        sum(process_cpu_secs(viewer.process.pid) for viewer in viewers) - receivers_before
    )
    own_cpu = own_cpu_secs() - own_before
    ticks_after = cpu_jiffies()
    sent = video.frames_sent - sent_before
    reports_after = await asyncio.gather(*(viewer.report() for viewer in viewers))

    if sent == 0:
        raise RuntimeError("the publisher sent no frame during the step: its peer was lost")
    ratios = []
    lost = 0
    for before, after in zip(reports_before, reports_after, strict=True):
        lost += after["lost_packets"] - before["lost_packets"]
        for frames_before, frames_after in zip(before["frames"], after["frames"], strict=True):
            ratios.append(min(1.0, (frames_after - frames_before) / sent))
    return Point(
        path=path,
        viewers=len(ratios),
        cpu_per_second=server_cpu / elapsed,
        frames_delivered_ratio=sum(ratios) / len(ratios) if ratios else None,
        min_viewer_ratio=min(ratios) if ratios else None,
        receivers_cpu_per_second=receivers_cpu / elapsed,
        publisher_cpu_per_second=own_cpu / elapsed,
        machine_busy_ratio=busy_ratio(ticks_before, ticks_after, "cpu"),
        server_core_busy_ratio=busy_ratio(ticks_before, ticks_after, f"cpu{SERVER_CORE}"),
        clients_core_busy_ratio=busy_ratio(ticks_before, ticks_after, f"cpu{CLIENTS_CORE}"),
        server_cpu_wait_per_second=server_wait / elapsed,
        lost_packets=lost,
        frames_sent=sent,
        seconds=elapsed,
        load_average=load_average(),
    )


async def add_viewers(
    viewers: list[ViewerProcess], target: int, ws_url: str, live_id: int, cookie: str
) -> None:
    """Start viewer processes until `viewers` hold `target` viewers; wait until all are
    ready."""
    added = []
    total = sum(viewer.count for viewer in viewers)
    while total < target:
        count = min(VIEWERS_PER_PROCESS, target - total)
        added.append(ViewerProcess(ws_url, live_id, cookie, count))
        total += count
    viewers.extend(added)
    lines = await asyncio.gather(
        *(viewer.read_line(VIEWERS_READY_TIMEOUT_SECS) for viewer in added)
    )
    if any(line != "ready" for line in lines):
        raise RuntimeError(f"viewer processes printed {lines} instead of 'ready'")


def pin_server(server: ServerProcess) -> None:
    """Keep the server's threads, including any started since the last call, on
    SERVER_CORE."""
    if PINNING:
        pin_process(server.process.pid, SERVER_CORE)


async def run_path(
    path: str, counts: list[int], seconds: float, deadline: float
) -> tuple[float, list[Point]]:
    """Measure `path` with no viewer, then with each of `counts` until delivery breaks
    or the monotonic clock passes `deadline`; return the CPU per second with no viewer
    and the points."""
    with tempfile.TemporaryDirectory(prefix="veillee-media-fanout-") as folder:
        data_dir = Path(folder) / "data"
        # every viewer uses the same account's cookie
        server = ServerProcess(
            data_dir,
            extra_args=["--media-path", path, "--log-level", "WARNING"],
            extra_env={"SIGNALING_SOCKETS_PER_PERSON": str(SOCKETS_PER_SHARED_ACCOUNT)},
        )
        pin_server(server)
        viewers: list[ViewerProcess] = []
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
            video = PanningTextureTrack()
            publisher = Publisher(video=video)  # type: ignore[arg-type]
            answer = await host_client.request_answer("publish", await publisher.offer())
            await publisher.accept(answer)
            await host_client.until("state", state="live")
            await asyncio.sleep(WARMUP_SECS)
            baseline = await measure(path, server, video, [], seconds)
            report(baseline)

            points = []
            for count in counts:
                if time.monotonic() > deadline:
                    print(
                        f"media_fanout: {path}: out of time before {count} viewers", file=sys.stderr
                    )
                    break
                try:
                    await add_viewers(viewers, count, server.ws_url, live_id, viewer_cookie)
                except (TimeoutError, RuntimeError) as error:
                    print(f"media_fanout: {path}: {count} viewers: {error}", file=sys.stderr)
                    break
                await asyncio.sleep(WARMUP_SECS)
                try:
                    point = await measure(path, server, video, viewers, seconds)
                except RuntimeError as error:
                    print(f"media_fanout: {path}: {count} viewers: {error}", file=sys.stderr)
                    break
                report(point)
                points.append(point)
                if not point.held and not point.starved_by_others:
                    break

            try:
                await host_client.send({"type": "end"})
                await host_client.until("state", state="ended")
            except Exception as error:  # noqa: BLE001 - the points are kept; the server stops below
                print(f"media_fanout: {path}: ending the live failed: {error!r}", file=sys.stderr)
            await host_client.close()
            await publisher.close()
            return baseline.cpu_per_second, points
        finally:
            for viewer_process in viewers:
                viewer_process.stop()
            server.stop()


def report(point: Point) -> None:
    delivered = (
        "-" if point.frames_delivered_ratio is None else f"{point.frames_delivered_ratio:.4f}"
    )
    print(
        f"media_fanout: {point.path}: {point.viewers} viewers: server "
        f"{point.cpu_per_second:.3f} CPU s/s, delivered {delivered} (lowest "
        f"{point.min_viewer_ratio}), {point.lost_packets} packets lost, receivers "
        f"{point.receivers_cpu_per_second:.2f} CPU s/s, server waited "
        f"{point.server_cpu_wait_per_second:.2f} s/s for its core, cores busy "
        f"{point.server_core_busy_ratio:.0%} (server) and {point.clients_core_busy_ratio:.0%} "
        f"(receivers), load {point.load_average[0]:.1f}",
        file=sys.stderr,
        flush=True,
    )


def served_viewers(point: Point) -> float:
    """Return the viewers of `point` weighted by the share of frames they received. A
    server short of CPU sends fewer frames, and spends less CPU, for each viewer: on
    the MediaRelay path each viewer's encoder skips the frames it has no time for."""
    return point.viewers * (point.frames_delivered_ratio or 0.0)


def marginal_cpu_per_viewer(points: list[Point], baseline: float) -> float | None:
    """Least-squares slope, through the 0-viewer point, of the server CPU above that
    point against served viewers: the CPU seconds per second that one viewer who
    receives every frame costs. Every measured step counts, including one whose delivery
    broke, so that a path that breaks at its first step still gets a figure."""
    measured = [point for point in points if served_viewers(point) > 0]
    if not measured:
        return None
    numerator = sum(served_viewers(p) * (p.cpu_per_second - baseline) for p in measured)
    denominator = sum(served_viewers(p) ** 2 for p in measured)
    return numerator / denominator


def describe_limit(points: list[Point]) -> dict[str, Any]:
    """Say at which step a path's delivery first fell below MIN_DELIVERED_RATIO, if it
    did, and whether the server, the receivers or other programs ran out of CPU there."""
    if not points:
        return {"viewers": None, "limited_by": "no step measured"}
    broken = next((point for point in points if not point.held), None)
    if broken is None:
        return {"viewers": None, "limited_by": "not reached (last count or time limit)"}
    return {
        "viewers": broken.viewers,
        "limited_by": broken.limited_by,
        "server_cpu_per_second": broken.cpu_per_second,
        "clients_cpu_per_second": (
            broken.receivers_cpu_per_second + broken.publisher_cpu_per_second
        ),
        "server_cpu_wait_per_second": broken.server_cpu_wait_per_second,
        "server_core_busy_ratio": broken.server_core_busy_ratio,
        "clients_core_busy_ratio": broken.clients_core_busy_ratio,
    }


def summarize(
    baselines: dict[str, float], points: list[Point], seconds: float, load_before: list[float]
) -> dict[str, Any]:
    limits = {
        path: describe_limit([point for point in points if point.path == path])
        for path in baselines
    }
    slopes = {
        path: marginal_cpu_per_viewer([p for p in points if p.path == path], baselines[path])
        for path in baselines
    }
    within_one_core = [
        point.viewers
        for point in points
        if point.path == "encode_once"
        and point.held
        and point.cpu_per_second <= ONE_CORE_CPU_PER_SECOND
    ]
    encode_once_slope = slopes.get("encode_once")
    relay_slope = slopes.get("relay")
    estimate = None
    if encode_once_slope:
        estimate = math.floor(
            (ONE_CORE_CPU_PER_SECOND - baselines["encode_once"]) / encode_once_slope
        )
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiortc": aiortc.__version__,
            "av": av.__version__,
            "server_pinned_to_core": SERVER_CORE if PINNING else None,
            "clients_pinned_to_core": CLIENTS_CORE if PINNING else None,
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "settings": {
            "picture": f"{PICTURE_WIDTH}x{PICTURE_HEIGHT}",
            "frame_rate": 30,
            "seconds_per_step": seconds,
            "warmup_secs": WARMUP_SECS,
            "viewers_per_process": VIEWERS_PER_PROCESS,
            "min_delivered_ratio": MIN_DELIVERED_RATIO,
        },
        "baseline_cpu_per_second": baselines,
        "points": [asdict(point) for point in points],
        "marginal_cpu_per_viewer": slopes,
        "max_viewers_one_core": max(within_one_core, default=0),
        "limits": limits,
        "receivers_ran_out_first": limits.get("encode_once", {}).get("limited_by") == "receivers",
        "max_viewers_one_core_extrapolated": estimate,
        "cpu_per_viewer_ratio": (
            relay_slope / encode_once_slope if relay_slope and encode_once_slope else None
        ),
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    figure, (per_viewer, total) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {"encode_once": "encode once (shared H.264)", "relay": "MediaRelay (VP8 per viewer)"}
    for media_path, label in labels.items():
        points = [
            p
            for p in summary["points"]
            if p["path"] == media_path and p["viewers"] and p["frames_delivered_ratio"]
        ]
        if not points:
            continue
        baseline = summary["baseline_cpu_per_second"][media_path]
        viewers = [point["viewers"] for point in points]
        per_viewer.plot(
            viewers,
            [
                1000
                * (p["cpu_per_second"] - baseline)
                / (p["viewers"] * p["frames_delivered_ratio"])
                for p in points
            ],
            marker="o",
            label=label,
        )
        total.plot(viewers, [p["cpu_per_second"] for p in points], marker="o", label=label)
    per_viewer.set_xscale("log")
    per_viewer.set_yscale("log")
    per_viewer.set_xlabel("viewers")
    per_viewer.set_ylabel("server CPU ms per second of live, per served viewer")
    per_viewer.set_title("Cost of each viewer (above the 0-viewer cost)")
    per_viewer.grid(True, which="both", alpha=0.3)
    per_viewer.legend()
    total.axhline(ONE_CORE_CPU_PER_SECOND, color="grey", linestyle="--", label="one core")
    total.set_xlabel("viewers")
    total.set_ylabel("server CPU s per second of live")
    total.set_title("Server CPU, one 640x360 live at 30 fps")
    total.grid(True, alpha=0.3)
    total.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def parse_counts(raw: str) -> list[int]:
    counts = [int(value) for value in raw.split(",") if value]
    if not counts or any(count <= 0 for count in counts) or counts != sorted(counts):
        raise argparse.ArgumentTypeError(f"expected increasing positive counts, got {raw!r}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--viewers",
        type=parse_counts,
        default=parse_counts("10,50,100,200,300,400,500,600,800"),
        help="viewer counts of the encode-once path, increasing (default: 10 to 800)",
    )
    parser.add_argument(
        "--relay-viewers",
        type=parse_counts,
        default=parse_counts("2,5,10,15,20,30"),
        help="viewer counts of the MediaRelay path, increasing (default: 2 to 30)",
    )
    parser.add_argument(
        "--paths",
        default=",".join(PATHS),
        help="comma-separated media paths to measure (default: %(default)s)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=15.0,
        help="length of each measurement, in seconds of live (default: %(default)s)",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=25.0,
        help="no new step starts after this many minutes of the whole run (default: %(default)s)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results file")
    parser.add_argument("--plot", type=Path, default=PLOT_PATH, help="PNG plot file")
    arguments = parser.parse_args()

    media_paths = arguments.paths.split(",")
    for media_path in media_paths:
        if media_path not in PATHS:
            parser.error(f"unknown media path {media_path!r}; expected one of {PATHS}")
    if PINNING:
        # the viewer processes and the server start from this process and inherit this
        # core; the server then moves to its own
        pin_process(os.getpid(), CLIENTS_CORE)
    else:
        print("media_fanout: fewer than 2 cores available, nothing pinned", file=sys.stderr)

    load_before = load_average()
    started = time.monotonic()
    baselines: dict[str, float] = {}
    points: list[Point] = []
    for index, media_path in enumerate(media_paths):
        # each path may use what remains of the time limit but PATH_RESERVE_SECS for
        # each path after it
        paths_after = len(media_paths) - index - 1
        deadline = started + arguments.max_minutes * 60 - paths_after * PATH_RESERVE_SECS
        counts = arguments.viewers if media_path == "encode_once" else arguments.relay_viewers
        baseline, path_points = asyncio.run(
            run_path(media_path, counts, arguments.seconds, deadline)
        )
        baselines[media_path] = baseline
        points.extend(path_points)

    summary = summarize(baselines, points, arguments.seconds, load_before)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, arguments.plot)
    print(json.dumps({key: value for key, value in summary.items() if key != "points"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
