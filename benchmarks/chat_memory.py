"""Memory of our server process per idle chat WebSocket connection.

    .venv/bin/python benchmarks/chat_memory.py [--connections 10000] [--workers 4]

Starts one server.py process (SQLite, in-process broker) on a loopback port and a
live whose 2,000 attendees open the connections in turn, from client worker processes.
Each connection is a full chat subscriber: `welcome`, `resume`, `synced`, then idle.
The figure is the growth of the server's resident set size from 100 connections to
`--connections`, divided by the connections added. The open-files limit is raised to
its hard limit here, and server.py inherits it. Writes benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

from chat_setup import (
    PROJECT_DIR,
    OursCluster,
    WorkerPool,
    load_average,
    machine_description,
    process_rss_bytes,
)

# Connections opened before the first reading, so that the figure leaves out what the
# first connections allocate once (imports, caches, the channel's feed).
BASELINE_CONNECTIONS = 100
# The attendees who open the connections in turn: 10,000 connections make 5 each, under
# the server's limit of 8 chat sockets per person and channel (4429 above it).
ACCOUNTS = 2000
# Seconds of idleness before each reading, for freed memory to settle.
SETTLE_SECS = 5.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=10_000, help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=4, help="client processes (default: 4)")
    parser.add_argument(
        "--output", type=Path, default=PROJECT_DIR / "benchmarks/results/memory.json"
    )
    arguments = parser.parse_args(argv)

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # The server needs a descriptor per connection, plus its database and log files.
    needed = arguments.connections + 1000
    if hard < needed:
        print(
            f"chat_memory.py: the open-files hard limit is {hard}, below the {needed} that "
            f"{arguments.connections} connections need; lower --connections",
            file=sys.stderr,
        )
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    load_before = load_average()
    cluster = OursCluster.start(1, ACCOUNTS, redis_url=None)
    pid = cluster.pids[0]
    endpoints = cluster.endpoints()
    try:
        first = WorkerPool.start(endpoints[:BASELINE_CONNECTIONS], 1)
        rest_endpoints = [
            endpoints[index % ACCOUNTS]
            for index in range(arguments.connections - BASELINE_CONNECTIONS)
        ]
        rest = WorkerPool.start(rest_endpoints, arguments.workers)
        try:
            first.call("connect")
            time.sleep(SETTLE_SECS)
            rss_before = process_rss_bytes(pid)

            started = time.monotonic()
            rest.call("connect")
            connect_secs = time.monotonic() - started
            time.sleep(SETTLE_SECS)
            rss_after = process_rss_bytes(pid)
        finally:
            rest.stop()
            first.stop()
    finally:
        cluster.stop()

    added = arguments.connections - BASELINE_CONNECTIONS
    results = {
        "command": "python benchmarks/chat_memory.py " + " ".join(argv or sys.argv[1:]),
        "machine": machine_description(),
        "connections": arguments.connections,
        "bytes_per_connection": round((rss_after - rss_before) / added),
        "server_rss_bytes_at_baseline": rss_before,
        "server_rss_bytes_at_connections": rss_after,
        "baseline_connections": BASELINE_CONNECTIONS,
        "connect_seconds": round(connect_secs, 1),
        "load_average_before": load_before,
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
