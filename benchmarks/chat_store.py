"""Storing a chat message: CPU and wall time per message, on PostgreSQL and SQLite.

    .venv/bin/python benchmarks/chat_store.py [--messages 400]

One process sends messages one after another through ChatService.send, from 50
registered people of one live in turn, with the rate limit raised out of the way and
the in-process broker (no subscriber). PostgreSQL is a throwaway cluster on a loopback
port (tests/support/postgres.py), and SQLite a file in WAL mode. CPU time is this
process's user plus system time: the database server's own CPU is left out.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

from chat.broker import MemoryBroker  # noqa: E402
from chat.service import ChatService  # noqa: E402
from core.database import Database  # noqa: E402
from live.channel_policy import LiveChannelPolicy  # noqa: E402
from tests.support.chat_clients import create_live, create_people  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

PEOPLE = 50
# Messages sent before the measurement, so that connections and statement caches exist.
WARMUP_MESSAGES = 50


def cpu_secs() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(database_url: str, messages: int) -> tuple[float, float]:
    """Return the CPU and wall milliseconds per stored message."""
    database = Database(database_url)
    await database.create_schema()
    people = await create_people(database, [f"Bench{index:02d}" for index in range(PEOPLE)])
    live_id = await create_live(database, people[0].id, [person.id for person in people[1:]])
    service = ChatService(database, MemoryBroker(), rate_limit_messages=messages * 10)
    service.policies.register("live", LiveChannelPolicy())
    await service.start()
    channel = f"live:{live_id}"
    try:
        for index in range(WARMUP_MESSAGES):
            await service.send(channel, people[index % PEOPLE], f"warmup-{index}", "Bonsoir")

        cpu_before, wall_before = cpu_secs(), time.monotonic()
        for index in range(messages):
            text = "Bonsoir à toutes et à tous, merci pour cette présentation !"
            await service.send(channel, people[index % PEOPLE], f"message-{index}", text)
        cpu, wall = cpu_secs() - cpu_before, time.monotonic() - wall_before
    finally:
        await service.stop()
        await database.dispose()
    return cpu / messages * 1e3, wall / messages * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--messages",
        type=int,
        default=400,
        help="messages measured per database (default: %(default)s)",
    )
    arguments = parser.parse_args()

    postgres = PostgresServer()
    try:
        postgres_url = postgres.create_database()
        cpu_ms, wall_ms = asyncio.run(measure(postgres_url, arguments.messages))
        print(f"postgresql: {cpu_ms:.2f} ms CPU, {wall_ms:.2f} ms wall per message")
    finally:
        postgres.stop()
    with tempfile.TemporaryDirectory(prefix="veillee-chat-store-") as folder:
        sqlite_url = f"sqlite+aiosqlite:///{Path(folder) / 'chat.sqlite3'}"
        cpu_ms, wall_ms = asyncio.run(measure(sqlite_url, arguments.messages))
        print(f"sqlite: {cpu_ms:.2f} ms CPU, {wall_ms:.2f} ms wall per message")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
