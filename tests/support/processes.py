"""Start and stop the real processes the tests need: redis-server and server.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

PROJECT_DIR = Path(__file__).resolve().parents[2]
# A server process starts in about a second here; a loaded CI machine may need more.
STARTUP_TIMEOUT_SECS = 30.0
STOP_TIMEOUT_SECS = 10.0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, process: subprocess.Popen[bytes]
) -> None:
    """Poll `check` until it is true, failing early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before it was ready")
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} was not ready after {timeout} s")


class RedisServer:
    """A throwaway redis-server on a free loopback port, without persistence."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(
                "redis-server is not installed: run `bash dev.sh test`, which installs it"
            )
        self.executable = executable
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                self.executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, STARTUP_TIMEOUT_SECS, "redis-server", process)
        return process

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> None:
        """Stop and start again on the same port, as a Redis restart in production."""
        self.stop()
        self.process = self._start()

    def start(self) -> None:
        """Start again on the same port after `stop`, to test an outage of some length."""
        if self.process.poll() is None:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        self.process = self._start()


# The signaling socket cap of servers whose benchmark or load-test viewers all share
# one account's cookie (the service's default is a few per person).
SOCKETS_PER_SHARED_ACCOUNT = 100_000


class ServerProcess:
    """`python server.py` in its own process, on a free loopback port.

    Several may share one data folder and one Redis, as two processes of one
    deployment do.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        redis_url: str | None = None,
        extra_env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        env = {**os.environ, "SECRET_KEY": "test-secret-key-shared-by-processes", "TZ": "UTC"}
        env.pop("REDIS_URL", None)
        env.pop("DATABASE_URL", None)
        if redis_url:
            env["REDIS_URL"] = redis_url
        env.update(extra_env or {})
        self.log_path = log_path or data_dir / f"server-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(PROJECT_DIR / "server.py"),
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                *(extra_args or []),
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            self._ready, STARTUP_TIMEOUT_SECS, f"server.py on port {self.port}", self.process
        )

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_SECS)
        self._log.close()

    def stop(self) -> None:
        stop_process(self.process)
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a process we started, by its PID, and kill it if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECS)


@contextlib.contextmanager
def server_pair(data_dir: Path, redis_url: str) -> Iterator[list[ServerProcess]]:
    """Start two server processes on one Redis and one data folder; stop both at the end."""
    started: list[ServerProcess] = []
    try:
        started.append(ServerProcess(data_dir, redis_url=redis_url))
        started.append(ServerProcess(data_dir, redis_url=redis_url))
        yield started
    finally:
        for process in started:
            process.stop()
