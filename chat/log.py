"""The channel event log in the database: sequence numbers, stored events, history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import User
from chat.models import ChannelCounter, ChannelEvent, EventKind


@dataclass(frozen=True)
class Person:
    id: int
    name: str

    def to_frame(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class StoredEvent:
    """An event as it is in the log, with the display name of the person behind it."""

    channel: str
    seq: int
    kind: EventKind
    # The author of a message, or the person who deleted it.
    person: Person
    created_at: datetime
    client_id: str | None = None
    text: str = ""
    deleted: bool = False
    deleted_seq: int | None = None

    def to_frame(self) -> dict[str, object]:
        """Return the protocol's `event` frame; a deleted message has an empty text."""
        frame: dict[str, object] = {
            "type": "event",
            "channel": self.channel,
            "seq": self.seq,
            "kind": self.kind.value,
        }
        if self.kind is EventKind.MESSAGE:
            frame["client_id"] = self.client_id
            frame["author"] = self.person.to_frame()
            frame["text"] = "" if self.deleted else self.text
            frame["sent_at"] = format_timestamp(self.created_at)
            frame["deleted"] = self.deleted
        else:
            frame["deleted_seq"] = self.deleted_seq
            frame["by"] = self.person.to_frame()
            frame["sent_at"] = format_timestamp(self.created_at)
        return frame

    def to_json(self) -> str:
        return dump_frame(self.to_frame())


def dump_frame(frame: dict[str, Any]) -> str:
    """Serialize a frame compactly, with text as UTF-8 rather than \\u escapes.

    UTF-8 cannot encode an unpaired surrogate, which an error frame's `ref` may repeat
    from the client's frame, so such a frame is written with JSON escapes instead.
    """
    text = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(frame, separators=(",", ":"))
    return text


def format_timestamp(moment: datetime) -> str:
    """Format a UTC datetime as `2026-10-25T19:30:04.123Z`, the form browsers parse."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def next_seq(session: AsyncSession, channel: str) -> int:
    """Take the channel's next sequence number inside the caller's transaction.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING creates the counter on first
    use and increments it afterwards. Being one statement, it needs no savepoint
    (pysqlite's savepoints are unreliable), and it takes the write lock before any
    read of the transaction, so a SQLite writer waits on busy_timeout instead of
    failing on a stale snapshot.
    """
    dialect = session.get_bind().dialect.name
    if dialect not in {"postgresql", "sqlite"}:
        raise RuntimeError(f"chat sequence numbers need SQLite or PostgreSQL, not {dialect}")
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(ChannelCounter)
        .values(channel=channel, last_seq=1)
        .on_conflict_do_update(
            index_elements=[ChannelCounter.channel],
            set_={"last_seq": ChannelCounter.last_seq + 1},
        )
        .returning(ChannelCounter.last_seq)
    )
    seq: int = (await session.execute(statement)).scalar_one()
    return seq


async def last_seq(session: AsyncSession, channel: str) -> int:
    """Return the channel's highest sequence number, 0 before its first event."""
    value = await session.scalar(
        select(ChannelCounter.last_seq).where(ChannelCounter.channel == channel)
    )
    return value or 0


def _stored(row: ChannelEvent, name: str) -> StoredEvent:
    return StoredEvent(
        channel=row.channel,
        seq=row.seq,
        kind=row.kind,
        person=Person(row.author_id, name),
        created_at=row.created_at,
        client_id=row.client_id,
        text=row.text,
        deleted=row.deleted,
        deleted_seq=row.deleted_seq,
    )


async def events_between(
    session: AsyncSession, channel: str, after: int, up_to: int | None = None, limit: int = 500
) -> list[StoredEvent]:
    """Return at most `limit` events with `after < seq <= up_to`, in increasing seq."""
    query = (
        select(ChannelEvent, User.display_name)
        .join(User, User.id == ChannelEvent.author_id)
        .where(ChannelEvent.channel == channel, ChannelEvent.seq > after)
        .order_by(ChannelEvent.seq)
        .limit(limit)
    )
    if up_to is not None:
        query = query.where(ChannelEvent.seq <= up_to)
    rows = await session.execute(query)
    return [_stored(event, name) for event, name in rows]


async def find_message(session: AsyncSession, channel: str, seq: int) -> ChannelEvent | None:
    return await session.scalar(
        select(ChannelEvent).where(
            ChannelEvent.channel == channel,
            ChannelEvent.seq == seq,
            ChannelEvent.kind == EventKind.MESSAGE,
        )
    )


async def find_seq_by_client_id(
    session: AsyncSession, channel: str, author_id: int, client_id: str
) -> int | None:
    """Return the seq of the author's message with `client_id`, None when there is none."""
    seq: int | None = await session.scalar(
        select(ChannelEvent.seq).where(
            ChannelEvent.channel == channel,
            ChannelEvent.author_id == author_id,
            ChannelEvent.client_id == client_id,
        )
    )
    return seq


async def insert_message(
    session: AsyncSession,
    event: StoredEvent,
) -> None:
    """Insert a message event inside the caller's transaction.

    A Core INSERT rather than an ORM object: every chat message takes this path, and
    the unit of work of a flush cost more CPU than the statement itself.
    """
    await session.execute(
        insert(ChannelEvent).values(
            channel=event.channel,
            seq=event.seq,
            kind=EventKind.MESSAGE,
            author_id=event.person.id,
            client_id=event.client_id,
            text=event.text,
            deleted=False,
            created_at=event.created_at,
        )
    )


async def find_deletion_of(session: AsyncSession, channel: str, seq: int) -> ChannelEvent | None:
    return await session.scalar(
        select(ChannelEvent).where(
            ChannelEvent.channel == channel,
            ChannelEvent.kind == EventKind.DELETION,
            ChannelEvent.deleted_seq == seq,
        )
    )


async def count_messages_since(
    session: AsyncSession, channel: str, author_id: int, since: datetime
) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(ChannelEvent)
        .where(
            ChannelEvent.channel == channel,
            ChannelEvent.author_id == author_id,
            ChannelEvent.kind == EventKind.MESSAGE,
            ChannelEvent.created_at > since,
        )
    )
    return count or 0
