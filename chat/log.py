"""The channel event log in the database: sequence numbers, stored events, history."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, exists, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from accounts.models import User
from chat.models import ChannelCounter, ChannelEvent, ChannelMute, EventKind


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
    # For a mute or an unmute: the person it applies to (`person` is the moderator).
    subject: Person | None = None
    # For a slow mode change: the new interval in seconds, 0 for off.
    interval_secs: int | None = None

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
            return frame

        if self.kind is EventKind.DELETION:
            frame["deleted_seq"] = self.deleted_seq
        elif self.kind in (EventKind.MUTE, EventKind.UNMUTE):
            frame["user"] = self.subject.to_frame() if self.subject else None
        elif self.kind is EventKind.SLOW_MODE:
            frame["interval_secs"] = self.interval_secs
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


def _dialect_of(session: AsyncSession) -> str:
    dialect = session.get_bind().dialect.name
    if dialect not in {"postgresql", "sqlite"}:
        raise RuntimeError(f"chat sequence numbers need SQLite or PostgreSQL, not {dialect}")
    return dialect


@functools.cache
def _counter_increment(dialect: str, with_slow_mode: bool) -> Any:
    """Return the INSERT ... ON CONFLICT DO UPDATE ... RETURNING that takes the next seq
    of the channel bound as `channel`.

    The send path's statements are built once per process, because building one cost
    more CPU than executing it.
    """
    # On the table rather than the mapped class: with parameters, Session.execute
    # would take an ORM insert for a bulk insert of objects.
    counters = cast(Table, ChannelCounter.__table__)
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    returned = [counters.c.last_seq]
    if with_slow_mode:
        returned.append(counters.c.slow_mode_secs)
    return (
        insert(counters)
        .values(channel=bindparam("channel"), last_seq=1)
        .on_conflict_do_update(
            index_elements=[counters.c.channel],
            set_={"last_seq": counters.c.last_seq + 1},
        )
        .returning(*returned)
    )


async def next_seq(session: AsyncSession, channel: str) -> int:
    """Take the channel's next sequence number inside the caller's transaction.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING creates the counter on first
    use and increments it afterwards. Being one statement, it needs no savepoint
    (pysqlite's savepoints are unreliable), and it takes the write lock before any
    read of the transaction, so a SQLite writer waits on busy_timeout instead of
    failing on a stale snapshot.
    """
    statement = _counter_increment(_dialect_of(session), with_slow_mode=False)
    seq: int = (await session.execute(statement, {"channel": channel})).scalar_one()
    return seq


async def next_seq_and_slow_mode(session: AsyncSession, channel: str) -> tuple[int, int]:
    """Take the channel's next sequence number as `next_seq` does, and return it with
    the channel's slow mode interval in seconds, read by the same statement."""
    statement = _counter_increment(_dialect_of(session), with_slow_mode=True)
    seq, slow_mode_secs = (await session.execute(statement, {"channel": channel})).one()
    return seq, slow_mode_secs or 0


async def last_seq(session: AsyncSession, channel: str) -> int:
    """Return the channel's highest sequence number, 0 before its first event."""
    value = await session.scalar(
        select(ChannelCounter.last_seq).where(ChannelCounter.channel == channel)
    )
    return value or 0


def _stored(row: ChannelEvent, name: str, subject_name: str | None) -> StoredEvent:
    subject = None
    if row.subject_id is not None:
        subject = Person(row.subject_id, subject_name or "")
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
        subject=subject,
        interval_secs=row.interval_secs,
    )


async def events_between(
    session: AsyncSession, channel: str, after: int, up_to: int | None = None, limit: int = 500
) -> list[StoredEvent]:
    """Return at most `limit` events with `after < seq <= up_to`, in increasing seq."""
    subject = aliased(User)
    query = (
        select(ChannelEvent, User.display_name, subject.display_name)
        .join(User, User.id == ChannelEvent.author_id)
        .outerjoin(subject, subject.id == ChannelEvent.subject_id)
        .where(ChannelEvent.channel == channel, ChannelEvent.seq > after)
        .order_by(ChannelEvent.seq)
        .limit(limit)
    )
    if up_to is not None:
        query = query.where(ChannelEvent.seq <= up_to)
    rows = await session.execute(query)
    return [_stored(event, name, subject_name) for event, name, subject_name in rows]


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


@dataclass(frozen=True)
class SendChecks:
    """The conditions under which `insert_message` stores a message."""

    # The author may have stored fewer than `rate_limit_messages` messages on the
    # channel after `rate_limit_since`.
    rate_limit_messages: int
    rate_limit_since: datetime
    # Whether a mute of the author on the channel rejects the message.
    check_mute: bool
    # With the slow mode on, the author may have stored no message after this moment.
    slow_mode_since: datetime | None


# The columns of a message that `insert_message` sets, each bound under its own name.
_MESSAGE_COLUMNS = (
    "channel",
    "seq",
    "kind",
    "author_id",
    "client_id",
    "text",
    "deleted",
    "created_at",
)


@functools.cache
def _checked_insert(dialect: str, check_mute: bool, check_slow_mode: bool) -> Any:
    """Return the INSERT ... SELECT ... WHERE ... ON CONFLICT DO NOTHING of
    `insert_message`, with the message's columns and the checks' limits as bound
    parameters."""
    events = cast(Table, ChannelEvent.__table__)
    columns = events.c
    own_messages = (
        ChannelEvent.channel == bindparam("channel"),
        ChannelEvent.author_id == bindparam("author_id"),
        ChannelEvent.kind == EventKind.MESSAGE,
    )
    recent = (
        select(func.count())
        .select_from(ChannelEvent)
        .where(*own_messages, ChannelEvent.created_at > bindparam("rate_limit_since"))
        .scalar_subquery()
    )
    conditions = [recent < bindparam("rate_limit_messages")]
    if check_mute:
        conditions.append(
            ~exists().where(
                ChannelMute.channel == bindparam("channel"),
                ChannelMute.user_id == bindparam("author_id"),
            )
        )
    if check_slow_mode:
        conditions.append(
            ~exists().where(*own_messages, ChannelEvent.created_at > bindparam("slow_mode_since"))
        )

    source = select(*(bindparam(name, type_=columns[name].type) for name in _MESSAGE_COLUMNS))
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # On the table, as in _counter_increment.
    return (
        insert(events)
        .from_select(list(_MESSAGE_COLUMNS), source.where(*conditions))
        .on_conflict_do_nothing(index_elements=["channel", "author_id", "client_id"])
        .returning(columns.id)
    )


async def insert_message(session: AsyncSession, event: StoredEvent, checks: SendChecks) -> bool:
    """Insert a message event inside the caller's transaction when it passes `checks`
    and its client_id is new; return whether it was inserted.

    One INSERT ... SELECT ... WHERE ... ON CONFLICT DO NOTHING carries the checks and
    the idempotency test, so that a message costs a single statement after `next_seq`
    (SQLite 3.35 and PostgreSQL 9.5 or later). The conflict target is the unique
    constraint on (channel, author_id, client_id): any other constraint still raises
    IntegrityError. A Core statement rather than an ORM object, because every chat
    message takes this path and the unit of work of a flush cost more CPU than the
    statement itself.
    """
    statement = _checked_insert(
        _dialect_of(session),
        check_mute=checks.check_mute,
        check_slow_mode=checks.slow_mode_since is not None,
    )
    parameters: dict[str, Any] = {
        "channel": event.channel,
        "seq": event.seq,
        "kind": EventKind.MESSAGE,
        "author_id": event.person.id,
        "client_id": event.client_id,
        "text": event.text,
        "deleted": False,
        "created_at": event.created_at,
        "rate_limit_since": checks.rate_limit_since,
        "rate_limit_messages": checks.rate_limit_messages,
    }
    if checks.slow_mode_since is not None:
        parameters["slow_mode_since"] = checks.slow_mode_since
    return (await session.execute(statement, parameters)).first() is not None


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
