"""Chat fan-out: one channel, 1,000 subscribers on two server processes, through Redis.

    .venv/bin/python benchmarks/chat_fanout.py [--repeat 3] [--systems ours,...]

Four systems are measured on the same load: our server.py, python-socketio with
AsyncRedisManager, a minimal Starlette server, and bare Redis pub/sub as the floor.
For each, the benchmark starts a fresh redis-server and the system's two server
processes on loopback ports, and connects the subscribers from client worker
processes. The subscribers themselves send the messages (for the floor, the workers
PUBLISH them). Delivery latency is measured at 20 messages a second. Then the rate
rises by a quarter per step until a delivery goes missing (the system fell behind).
Two rates are kept: the highest whose p99 stayed under 100 ms, and the highest at
which every delivery arrived. Server CPU time comes from /proc/<pid>/stat of
the server processes alone (for the floor, of redis-server). Each figure in
benchmarks/results/chat.json is the median of the repetitions, every run and step goes
to benchmarks/results/chat_runs.json, and the plot of latency against load goes to
docs/images/chat_fanout_latency.png.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chat_setup import (
    PROJECT_DIR,
    OursCluster,
    ScriptServer,
    WorkerPool,
    load_average,
    machine_description,
    process_cpu_secs,
    process_cpu_split,
)
from fanout_clients import Endpoint

from tests.support.postgres import PostgresServer
from tests.support.processes import RedisServer

SYSTEMS = ("ours", "python_socketio", "minimal_starlette", "redis_floor")
BASE_RATE = 20.0
# A step above this p99 ends the ramp: the service level the benchmark requires.
P99_LIMIT_MS = 100.0
# Each step of the ramp sends this many times more messages a second than the last.
RAMP_FACTOR = 1.25
# Seconds after a step's last message for late deliveries; what has not arrived by
# then counts as missing.
DRAIN_SECS = 3.0
# Unmeasured seconds at the base rate after connecting, for caches and connections
# to settle.
WARMUP_SECS = 3.0


@dataclass
class Step:
    rate: float
    seconds: float
    sent: int
    expected: int
    received: int
    p50_ms: float
    p99_ms: float
    server_cpu_secs: float
    # The part of server_cpu_secs spent in the kernel (sockets, mostly).
    server_system_secs: float
    redis_cpu_secs: float
    client_cpu_secs: float
    closed: int
    # Whether the workers sent every message and received every delivery before the
    # step's end plus DRAIN_SECS. Workers short of CPU send late, and then the
    # offered rate was not the one planned.
    on_time: bool

    @property
    def delivered_per_second(self) -> float:
        return self.received / self.seconds

    @property
    def complete(self) -> bool:
        """Whether every message went out and arrived in time, and no connection closed."""
        return self.on_time and self.received == self.expected and self.closed == 0

    @property
    def held(self) -> bool:
        return self.complete and self.p99_ms <= P99_LIMIT_MS


@dataclass
class SystemRun:
    system: str
    base: Step
    ramp: list[Step] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)

    @property
    def max_delivered_per_second(self) -> float:
        held = [step.delivered_per_second for step in [self.base, *self.ramp] if step.held]
        return max(held, default=0.0)

    @property
    def max_complete_per_second(self) -> float:
        """The highest rate at which the system kept up, whatever its latency."""
        kept_up = [step.delivered_per_second for step in [self.base, *self.ramp] if step.complete]
        return max(kept_up, default=0.0)

    def summary(self, cpu_of: Callable[[Step], float]) -> dict[str, float]:
        deliveries = max(self.base.received, 1)
        return {
            "max_delivered_per_second": round(self.max_delivered_per_second),
            "max_complete_per_second": round(self.max_complete_per_second),
            "p50_ms": round(self.base.p50_ms, 2),
            "p99_ms": round(self.base.p99_ms, 2),
            "server_cpu_us_per_delivery": round(cpu_of(self.base) / deliveries * 1e6, 2),
        }


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("inf")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


class Load:
    """The client workers of one system run and the processes whose CPU is counted."""

    def __init__(
        self, workers: WorkerPool, subscribers: int, server_pids: list[int], redis_pid: int
    ) -> None:
        self.workers = workers
        self.subscribers = subscribers
        self.server_pids = server_pids
        self.redis_pid = redis_pid
        self.step_index = 0
        # Every delivery latency of the last step in ms, sorted, a missing one as inf.
        self.latencies_ms: list[float] = []

    def run(self, rate: float, seconds: float) -> Step:
        self.step_index += 1
        count = len(self.workers.pipes)
        start_at = time.monotonic() + 0.2
        server_before = [process_cpu_split(pid) for pid in self.server_pids]
        redis_before = process_cpu_secs(self.redis_pid)
        client_before = sum(process_cpu_secs(pid) for pid in self.workers.pids)
        self.workers.call(
            "step",
            per_worker=[
                (self.step_index, rate / count, start_at + index / rate, seconds)
                for index in range(count)
            ],
        )

        time.sleep(max(0.0, start_at + seconds - time.monotonic()))
        deadline = time.monotonic() + DRAIN_SECS
        while True:
            counts = self.workers.call("count")
            sent = sum(item["sent"] for item in counts)
            received = sum(item["received"] for item in counts)
            all_sent = all(item["done"] for item in counts)
            on_time = all_sent and received >= sent * self.subscribers
            if on_time or time.monotonic() > deadline:
                break
            time.sleep(0.05)

        server_spent = [
            (after[0] - before[0], after[1] - before[1])
            for before, after in zip(
                server_before, [process_cpu_split(pid) for pid in self.server_pids], strict=True
            )
        ]
        server_system = sum(system for _, system in server_spent)
        server_cpu = sum(user + system for user, system in server_spent)
        redis_cpu = process_cpu_secs(self.redis_pid) - redis_before
        client_cpu = sum(process_cpu_secs(pid) for pid in self.workers.pids) - client_before
        results = self.workers.call("collect")
        latencies: list[float] = []
        closed = 0
        sent = 0
        for result in results:
            values = array("q")
            values.frombytes(result["latencies_ns"])
            latencies.extend(value / 1e6 for value in values)
            closed += len(result["closed"])
            sent += result["sent"]
        expected = sent * self.subscribers
        received = len(latencies)
        # Missing deliveries count as infinitely late.
        latencies.sort()
        latencies.extend([float("inf")] * max(0, expected - received))
        self.latencies_ms = latencies
        return Step(
            rate=rate,
            seconds=seconds,
            sent=sent,
            expected=expected,
            received=received,
            p50_ms=percentile(latencies, 0.50),
            p99_ms=percentile(latencies, 0.99),
            server_cpu_secs=server_cpu,
            server_system_secs=server_system,
            redis_cpu_secs=redis_cpu,
            client_cpu_secs=client_cpu,
            closed=closed,
            on_time=on_time,
        )


def start_system(
    system: str, arguments: argparse.Namespace, redis: RedisServer, log_dir: Path
) -> tuple[list[Endpoint], list[int], Callable[[], None]]:
    """Start the system's servers; return its endpoints, server PIDs and a stop function."""
    subscribers = arguments.subscribers
    if system == "ours" and arguments.database == "sqlite":
        cluster = OursCluster.start(2, subscribers, redis.url)
        return cluster.endpoints(), cluster.pids, cluster.stop
    if system == "ours":
        postgres = PostgresServer()
        try:
            cluster = OursCluster.start(2, subscribers, redis.url, postgres.create_database())
        except BaseException:
            postgres.stop()
            raise

        def stop_ours() -> None:
            cluster.stop()
            postgres.stop()

        return cluster.endpoints(), cluster.pids, stop_ours
    if system == "redis_floor":
        return [Endpoint("redis", redis.port)] * subscribers, [redis.process.pid], lambda: None

    script, kind, path = {
        "python_socketio": (
            "socketio_chat_server.py",
            "socketio",
            "/socket.io/?EIO=4&transport=websocket",
        ),
        "minimal_starlette": ("minimal_chat_server.py", "minimal", "/ws"),
    }[system]
    options = ("--redis-url", redis.url, "--ws-per-message-deflate", arguments.deflate)
    servers = [
        ScriptServer(script, *options, log_path=log_dir / f"{system}-{index}.log")
        for index in range(2)
    ]
    endpoints = [Endpoint(kind, servers[index % 2].port, path) for index in range(subscribers)]

    def stop() -> None:
        for server in servers:
            server.stop()

    return endpoints, [server.process.pid for server in servers], stop


def run_system(system: str, arguments: argparse.Namespace, log_dir: Path) -> SystemRun:
    redis = RedisServer()
    load_before = load_average()
    endpoints, server_pids, stop = start_system(system, arguments, redis, log_dir)
    workers = WorkerPool.start(
        endpoints, arguments.workers, redis.port if system == "redis_floor" else None
    )
    try:
        workers.call("connect")
        load = Load(workers, arguments.subscribers, server_pids, redis.process.pid)
        load.run(BASE_RATE, WARMUP_SECS)
        run = SystemRun(
            system, load.run(BASE_RATE, arguments.base_seconds), load_before=load_before
        )
        print(f"  {system} at {BASE_RATE:.0f} msg/s: {_describe(run.base)}", flush=True)

        rate = BASE_RATE * RAMP_FACTOR
        while rate <= arguments.max_rate:
            step = load.run(rate, arguments.step_seconds)
            run.ramp.append(step)
            print(f"  {system} at {rate:.0f} msg/s: {_describe(step)}", flush=True)
            # Past the p99 limit, the ramp goes on while every delivery still arrives,
            # so that the systems' capacities compare on a machine too loaded for the
            # limit.
            if not step.complete:
                break
            rate *= RAMP_FACTOR
        return run
    finally:
        workers.stop()
        stop()
        redis.stop()


def _describe(step: Step) -> str:
    return (
        f"{step.delivered_per_second:,.0f} deliveries/s, p50 {step.p50_ms:.1f} ms, "
        f"p99 {step.p99_ms:.1f} ms, server {step.server_cpu_secs:.2f} CPU s "
        f"({step.server_system_secs:.2f} system), "
        f"redis {step.redis_cpu_secs:.2f}, clients {step.client_cpu_secs:.2f}, "
        f"missing {step.expected - step.received}, closed {step.closed}"
    )


def _server_cpu(step: Step) -> float:
    return step.server_cpu_secs


def summarize(runs: list[SystemRun]) -> dict[str, Any]:
    """Median of each figure over the repetitions of one system."""
    summaries = [run.summary(_server_cpu) for run in runs]
    median = {key: statistics.median(item[key] for item in summaries) for key in summaries[0]}
    client_us = [run.base.client_cpu_secs / max(run.base.received, 1) * 1e6 for run in runs]
    redis_us = [run.base.redis_cpu_secs / max(run.base.received, 1) * 1e6 for run in runs]
    return {
        **median,
        "runs": summaries,
        "client_cpu_us_per_delivery": round(statistics.median(client_us), 2),
        "redis_cpu_us_per_delivery": round(statistics.median(redis_us), 2),
    }


def plot(runs_by_system: dict[str, list[SystemRun]], path: Path) -> None:
    """Latency against delivered load for the median run of each system."""
    import matplotlib  # noqa: PLC0415 - only the plot needs it

    matplotlib.use("Agg")
    from matplotlib import pyplot  # noqa: PLC0415

    figure, axes = pyplot.subplots(figsize=(8, 5))
    for system, runs in runs_by_system.items():
        ordered = sorted(runs, key=lambda run: run.max_complete_per_second)
        run = ordered[len(ordered) // 2]
        steps = [step for step in [run.base, *run.ramp] if 0 < step.p99_ms < float("inf")]
        if not steps:
            continue
        steps.sort(key=lambda step: step.rate)
        loads = [step.delivered_per_second for step in steps]
        (line,) = axes.plot(
            loads, [step.p99_ms for step in steps], marker="o", label=f"{system} p99"
        )
        axes.plot(
            loads,
            [step.p50_ms for step in steps],
            linestyle="--",
            color=line.get_color(),
            label=f"{system} p50",
        )
    axes.axhline(P99_LIMIT_MS, color="grey", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("deliveries per second (1,000 subscribers)")
    axes.set_ylabel("delivery latency (ms)")
    axes.set_title("Chat fan-out latency against load, 2 server processes through Redis")
    axes.legend(fontsize="small", ncol=2)
    axes.grid(True, which="both", linewidth=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="comma-separated, of %(default)s"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each system (default: 3)")
    parser.add_argument("--subscribers", type=int, default=1000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=2, help="client processes (default: 2)")
    parser.add_argument("--base-seconds", type=float, default=10.0, help="seconds at 20 msg/s")
    parser.add_argument("--step-seconds", type=float, default=4.0, help="seconds per ramp step")
    parser.add_argument("--max-rate", type=float, default=2000.0, help="ramp ceiling, msg/s")
    parser.add_argument(
        "--database",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="the database of our two server processes (default: %(default)s)",
    )
    parser.add_argument(
        "--deflate",
        choices=["on", "off"],
        default="off",
        help="permessage-deflate of the comparison servers; match server.py's (default: off)",
    )
    parser.add_argument("--output", type=Path, default=PROJECT_DIR / "benchmarks/results/chat.json")
    parser.add_argument(
        "--details",
        type=Path,
        default=PROJECT_DIR / "benchmarks/results/chat_runs.json",
        help="every run and step, with the machine and the command (default: %(default)s)",
    )
    parser.add_argument(
        "--plot", type=Path, default=PROJECT_DIR / "docs/images/chat_fanout_latency.png"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    systems = [name for name in arguments.systems.split(",") if name]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        print(
            f"chat_fanout.py: unknown systems {sorted(unknown)}, expected {SYSTEMS}",
            file=sys.stderr,
        )
        return 2

    log_dir = Path(tempfile.mkdtemp(prefix="veillee-fanout-logs-"))
    runs_by_system: dict[str, list[SystemRun]] = {system: [] for system in systems}
    started = time.monotonic()
    for repetition in range(arguments.repeat):
        # Rotate the order, so that a drift of the machine's load spreads over every system.
        order = systems[repetition % len(systems) :] + systems[: repetition % len(systems)]
        for system in order:
            print(
                f"run {repetition + 1}/{arguments.repeat}: {system}, load {load_average()}",
                flush=True,
            )
            runs_by_system[system].append(run_system(system, arguments, log_dir))

    results: dict[str, Any] = {
        "command": "python benchmarks/chat_fanout.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_description(),
        "subscribers": arguments.subscribers,
        "server_processes": 2,
        "client_workers": arguments.workers,
        "repeat": arguments.repeat,
        "base_rate_messages_per_second": BASE_RATE,
        "p99_limit_ms": P99_LIMIT_MS,
        "comparison_ws_per_message_deflate": arguments.deflate,
        "ours_database": arguments.database,
        "load_average_end": load_average(),
        "duration_secs": round(time.monotonic() - started),
    }
    for system, runs in runs_by_system.items():
        results[system] = summarize(runs)
    results["steps"] = {
        system: [[asdict(run.base), *(asdict(step) for step in run.ramp)] for run in runs]
        for system, runs in runs_by_system.items()
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.details.write_text(json.dumps(_finite(results), indent=2) + "\n")
    arguments.output.write_text(json.dumps(_finite(headline(results, systems)), indent=2) + "\n")
    plot(runs_by_system, arguments.plot)
    for system in systems:
        print(system, json.dumps({k: v for k, v in results[system].items() if k != "runs"}))
    print(f"wrote {arguments.output}, {arguments.details} and {arguments.plot}; logs in {log_dir}")
    return 0


# The figures chat.json keeps for each system; the rest goes to the details file.
HEADLINE_FIELDS = ("max_delivered_per_second", "p50_ms", "p99_ms", "server_cpu_us_per_delivery")


def headline(results: dict[str, Any], systems: list[str]) -> dict[str, Any]:
    """Return each system's medians under HEADLINE_FIELDS, in the layout of chat.json."""
    return {system: {key: results[system][key] for key in HEADLINE_FIELDS} for system in systems}


def _finite(value: Any) -> Any:
    """`value` with every infinite float (a step with missing deliveries) as None,
    which JSON can carry."""
    if isinstance(value, float) and value == float("inf"):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


if __name__ == "__main__":
    sys.exit(main())
