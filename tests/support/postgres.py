"""A throwaway PostgreSQL cluster on a free loopback port, removed after the run."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.processes import free_port

# Debian installs the server binaries per major version, outside PATH.
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"
START_TIMEOUT_SECS = 60
DATABASE_USER = "veillee"


def _postgres_bin_dir() -> Path:
    candidates = sorted(glob.glob(POSTGRES_BIN_GLOB), key=lambda path: int(Path(path).parent.name))
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries are not installed: run `bash dev.sh test`, "
            "which installs the postgresql package"
        )
    return Path(candidates[-1])


class PostgresServer:
    """initdb, pg_ctl start and stop on a temporary folder.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the
    `postgres` system user and every command runs through `runuser`.
    """

    def __init__(self) -> None:
        self.bin_dir = _postgres_bin_dir()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="veillee-postgres-"))
        self.data_dir = self.root / "cluster"
        self.log_path = self.root / "server.log"
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, user="postgres", group="postgres")
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            DATABASE_USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C.UTF-8",
        )
        self.start()
        self._databases = 0

    def start(self) -> None:
        """Start the cluster on its port, at creation and again after `stop_server`."""
        self._run(
            "pg_ctl",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_path),
            "--options",
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.root} -c fsync=off",
            "--wait",
            "--timeout",
            str(START_TIMEOUT_SECS),
            "start",
        )

    def stop_server(self) -> None:
        """Stop the server and keep the cluster, as a database outage: `fast` mode
        ends every open connection, and `start` brings it back on the same port."""
        self._run("pg_ctl", "--pgdata", str(self.data_dir), "--mode", "fast", "--wait", "stop")

    def _run(self, program: str, *arguments: str) -> None:
        command = [str(self.bin_dir / program), *arguments]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed with code {result.returncode}: {result.stderr.strip()}"
            )

    def create_database(self) -> str:
        """Create an empty database and return its SQLAlchemy asyncpg URL."""
        self._databases += 1
        name = f"test_{self._databases}"
        self._run(
            "createdb",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--username",
            DATABASE_USER,
            name,
        )
        return f"postgresql+asyncpg://{DATABASE_USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server, if it runs, and delete the cluster."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self.stop_server()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
