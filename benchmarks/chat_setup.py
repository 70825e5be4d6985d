"""Shared parts of the chat benchmarks: server processes, accounts, client workers, /proc readers.

Every server binds to 127.0.0.1 on a free port and is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import itsdangerous

PROJECT_DIR = Path(__file__).resolve().parents[1]
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from fanout_clients import Endpoint, WorkerSpec, worker_main  # noqa: E402

from core.database import Database  # noqa: E402
from tests.support.chat_clients import create_live, create_people, database_in  # noqa: E402
from tests.support.processes import (  # noqa: E402
    SOCKETS_PER_SHARED_ACCOUNT,
    STARTUP_TIMEOUT_SECS,
    ServerProcess,
    free_port,
    stop_process,
    wait_until,
)

CLOCK_TICKS_PER_SEC = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# The key every benchmark server process signs session cookies with, so that the
# benchmark can hand each client the cookie of its account without logging in.
SECRET_KEY = "benchmark-secret-key-shared-by-processes"
SESSION_COOKIE = "veillee_session"
# A worker may spend this long on one command (connecting thousands of sockets).
WORKER_REPLY_TIMEOUT_SECS = 300.0


def process_cpu_secs(pid: int) -> float:
    """User plus system CPU time of every thread of process `pid`, in seconds."""
    return sum(process_cpu_split(pid))


def process_cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time of every thread of process `pid`, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields 14 and 15 of stat(5), counted from the pid, are utime and stime
    return int(fields[11]) / CLOCK_TICKS_PER_SEC, int(fields[12]) / CLOCK_TICKS_PER_SEC


def process_rss_bytes(pid: int) -> int:
    """Resident set size of process `pid`, from the second field of /proc/<pid>/statm."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES


def load_average() -> list[float]:
    return [float(value) for value in Path("/proc/loadavg").read_text().split()[:3]]


def machine_description() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * PAGE_BYTES / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def session_cookie(user_id: int) -> str:
    """Return the Cookie header of a session logged in as `user_id`, signed as
    Starlette's SessionMiddleware signs it (base64 JSON, itsdangerous TimestampSigner)."""
    data = base64.b64encode(json.dumps({"user_id": user_id}).encode())
    return f"{SESSION_COOKIE}={itsdangerous.TimestampSigner(SECRET_KEY).sign(data).decode()}"


@dataclass
class OursCluster:
    """server.py processes sharing one database (PostgreSQL when a URL is given, else
    one SQLite file in WAL mode) and, when given, one Redis, with a live whose host
    and attendees are `people` accounts."""

    servers: list[ServerProcess]
    channel: str
    cookies: list[str]
    data_dir: Path

    @classmethod
    def start(
        cls, processes: int, people: int, redis_url: str | None, database_url: str | None = None
    ) -> OursCluster:
        data_dir = Path(tempfile.mkdtemp(prefix="veillee-bench-"))
        # The media viewers of the soak test share one account's cookie.
        env = {
            "SECRET_KEY": SECRET_KEY,
            "SIGNALING_SOCKETS_PER_PERSON": str(SOCKETS_PER_SHARED_ACCOUNT),
        }
        if database_url:
            env["DATABASE_URL"] = database_url
        first = ServerProcess(data_dir, redis_url=redis_url, extra_env=env)
        servers = [first]
        servers += [
            ServerProcess(data_dir, redis_url=redis_url, extra_env=env)
            for _ in range(processes - 1)
        ]
        database_url = database_url or database_in(data_dir).url
        user_ids = asyncio.run(_create_accounts(database_url, people))
        live_id = asyncio.run(_create_live(database_url, user_ids))
        return cls(
            servers=servers,
            channel=f"live:{live_id}",
            cookies=[session_cookie(user_id) for user_id in user_ids],
            data_dir=data_dir,
        )

    @property
    def pids(self) -> list[int]:
        return [server.process.pid for server in self.servers]

    def endpoints(self) -> list[Endpoint]:
        """Return one endpoint per account, spread over the server processes in turn."""
        return [
            Endpoint(
                "ours",
                self.servers[index % len(self.servers)].port,
                f"/ws/chat/{self.channel}",
                cookie,
            )
            for index, cookie in enumerate(self.cookies)
        ]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


async def _create_accounts(database_url: str, count: int) -> list[int]:
    database = Database(database_url)
    try:
        people = await create_people(database, [f"Bench{index:05d}" for index in range(count)])
    finally:
        await database.dispose()
    return [person.id for person in people]


async def _create_live(database_url: str, user_ids: list[int]) -> int:
    database = Database(database_url)
    try:
        return await create_live(database, user_ids[0], user_ids[1:])
    finally:
        await database.dispose()


class ScriptServer:
    """A benchmark server script run as its own process on a free loopback port."""

    def __init__(self, script: str, *arguments: str, log_path: Path) -> None:
        self.port = free_port()
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).parent / script),
                "--port",
                str(self.port),
                *arguments,
            ],
            cwd=PROJECT_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._listening, STARTUP_TIMEOUT_SECS, script, self.process)

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()


@dataclass
class WorkerPool:
    """Client worker processes, each holding a share of the endpoints."""

    pipes: list[Connection] = field(default_factory=list)
    processes: list[BaseProcess] = field(default_factory=list)

    @classmethod
    def start(
        cls, endpoints: list[Endpoint], workers: int, redis_port: int | None = None
    ) -> WorkerPool:
        context = multiprocessing.get_context("spawn")
        pool = cls()
        for worker_id in range(workers):
            spec = WorkerSpec(worker_id, endpoints[worker_id::workers], redis_port)
            parent, child = context.Pipe()
            process = context.Process(target=worker_main, args=(child, spec), daemon=True)
            process.start()
            pool.pipes.append(parent)
            pool.processes.append(process)
        return pool

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes if process.pid is not None]

    def call(
        self, name: str, *arguments: Any, per_worker: list[tuple[Any, ...]] | None = None
    ) -> list[Any]:
        """Send a command to every worker and return their results in worker order."""
        for index, pipe in enumerate(self.pipes):
            pipe.send((name, *(per_worker[index] if per_worker else arguments)))
        results = []
        for pipe in self.pipes:
            if not pipe.poll(WORKER_REPLY_TIMEOUT_SECS):
                raise TimeoutError(f"client worker sent no reply to {name} in time")
            status, result = pipe.recv()
            if status != "ok":
                raise RuntimeError(f"client worker failed on {name}: {result}")
            results.append(result)
        return results

    def stop(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop",))
        deadline = time.monotonic() + 10.0
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(5.0)
