"""A chat WebSocket client for tests, and helpers that set up a live to chat in."""

from __future__ import annotations

import asyncio
import json
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from accounts.models import User
from chat.log import Person
from core.database import Database, utc_now
from live import service as live_service

# Long enough for a loaded CI machine; every wait ends as soon as its frame arrives.
FRAME_TIMEOUT_SECS = 10.0


def database_in(data_dir: Path) -> Database:
    """The Database of the server processes sharing `data_dir`."""
    return Database(f"sqlite+aiosqlite:///{(data_dir / 'veillee.sqlite3').resolve()}")


async def create_people(database: Database, names: list[str]) -> list[Person]:
    """Insert one account per name, without a usable password (no log-in needed)."""
    people = []
    async with database.session() as session:
        for name in names:
            user = User(email=f"{name.lower()}@example.org", display_name=name, password_hash="-")
            session.add(user)
            await session.commit()
            people.append(Person(user.id, name))
    return people


async def create_live(database: Database, host_id: int, attendee_ids: list[int]) -> int:
    """Schedule a live hosted by `host_id` for tomorrow, register the attendees; return its id."""
    tomorrow = (utc_now() + timedelta(days=1)).date()
    details = live_service.LiveDetails(
        title="Les cartes mentales en classe",
        description="",
        start_day=date(tomorrow.year, tomorrow.month, tomorrow.day),
        start_time=time(20, 30),
        time_zone="Europe/Paris",
        duration_minutes=60,
    )
    async with database.session() as session:
        live = await live_service.schedule_live(session, host_id, details)
        for user_id in attendee_ids:
            await live_service.register(session, live.id, user_id)
        return live.id


class ChatClient:
    """One chat socket, read frame by frame with a timeout on every wait."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.welcome: dict[str, Any] = {}
        # Frames `say` read while waiting for its ack, returned by `recv` first.
        self.backlog: list[dict[str, Any]] = []

    @classmethod
    async def connect(
        cls, ws_url: str, channel: str, cookie: str | None, **options: Any
    ) -> ChatClient:
        headers = {"Cookie": cookie} if cookie else {}
        connection = await connect(
            f"{ws_url}/ws/chat/{channel}", additional_headers=headers, **options
        )
        return cls(connection)

    async def recv(self, timeout: float = FRAME_TIMEOUT_SECS) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        frame = json.loads(raw)
        assert isinstance(frame, dict)
        return frame

    async def recv_type(self, frame_type: str) -> dict[str, Any]:
        """Return the next frame, which must be of `frame_type`."""
        frame = await self.recv()
        assert frame["type"] == frame_type, frame
        return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(frame))

    async def open(self, after: int | None = None) -> list[dict[str, Any]]:
        """Read `welcome`, send `resume` and return every frame up to `synced` included."""
        self.welcome = await self.recv_type("welcome")
        await self.send({"type": "resume"} if after is None else {"type": "resume", "after": after})
        return await self.until("synced")

    async def until(self, frame_type: str) -> list[dict[str, Any]]:
        """Return the frames received up to the first of `frame_type`, that one included."""
        frames = []
        while True:
            frame = await self.recv()
            frames.append(frame)
            if frame["type"] == frame_type:
                return frames

    async def events_up_to(self, seq: int) -> list[dict[str, Any]]:
        """Return the `event` frames received until the one with `seq` (other frames skipped)."""
        events = []
        while True:
            frame = await self.recv()
            if frame["type"] == "event":
                events.append(frame)
                if frame["seq"] >= seq:
                    return events

    async def say(self, client_id: str, text: str) -> int:
        """Send a message and return its seq from the `ack`; frames received before
        the ack stay for `recv`."""
        await self.send({"type": "send", "client_id": client_id, "text": text})
        waiting: list[dict[str, Any]] = []
        while True:
            raw = await asyncio.wait_for(self.connection.recv(), FRAME_TIMEOUT_SECS)
            frame = json.loads(raw)
            if frame["type"] == "ack" and frame["client_id"] == client_id:
                self.backlog.extend(waiting)
                seq: int = frame["seq"]
                return seq
            assert frame["type"] == "event", frame
            waiting.append(frame)

    async def close_code(self, timeout: float = FRAME_TIMEOUT_SECS) -> int | None:
        """Read until the server closes; return the close code it sent."""
        try:
            while True:
                await asyncio.wait_for(self.connection.recv(), timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None

    async def close(self) -> None:
        await self.connection.close()
