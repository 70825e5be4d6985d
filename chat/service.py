"""Chat actions with no WebSocket objects: open a channel, send, delete, read history.

Path of a message: validate the text, authorize against the channel's policy, store
it in one transaction that also takes the channel's next seq, then publish the
stored event to the broker. The database is the log; the broker only fans out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import User
from chat import log
from chat.broker import Broker, BrokerError
from chat.errors import AccessDeniedError, ChatError, CloseCode, ErrorCode
from chat.hub import SEND_QUEUE_MAX_EVENTS, Hub
from chat.log import Person, StoredEvent
from chat.models import SEQ_MAX, ChannelEvent, EventKind
from chat.policy import ChannelAccess, PolicyRegistry
from chat.text import InvalidTextError, clean_text
from core.database import Database, utc_now

logger = logging.getLogger(__name__)

# At most this many messages from one person on one channel within the window:
# enough for a quick exchange, too few to flood a live's chat.
RATE_LIMIT_MESSAGES = 5
RATE_LIMIT_WINDOW_SECS = 5.0

# Database failures a client can retry: the transaction was rolled back.
_DATABASE_ERRORS = (SQLAlchemyError, OSError)


@dataclass(frozen=True)
class SendResult:
    seq: int
    # False when the client_id was already used: nothing new was stored.
    stored: bool


@dataclass(frozen=True)
class DeleteResult:
    # The deletion event's seq.
    seq: int
    # False when the message had already been deleted: nothing new was stored.
    stored: bool


@dataclass(frozen=True)
class ChatMessage:
    """A message as the replay shows it."""

    seq: int
    author: Person
    text: str
    created_at: datetime


class _AlreadyStoredError(Exception):
    def __init__(self, seq: int) -> None:
        super().__init__(seq)
        self.seq = seq


class ChatService:
    """The chat of one server process: policies, broker, local hub and the log."""

    def __init__(
        self,
        database: Database,
        broker: Broker,
        *,
        policies: PolicyRegistry | None = None,
        clock: Callable[[], datetime] = utc_now,
        rate_limit_messages: int = RATE_LIMIT_MESSAGES,
        rate_limit_window_secs: float = RATE_LIMIT_WINDOW_SECS,
        send_queue_max_events: int = SEND_QUEUE_MAX_EVENTS,
    ) -> None:
        self.database = database
        self.broker = broker
        self.policies = policies or PolicyRegistry()
        self.hub = Hub(broker, self._load_serialized, self.last_seq)
        self._clock = clock
        self.rate_limit_messages = rate_limit_messages
        self.rate_limit_window = timedelta(seconds=rate_limit_window_secs)
        # The bound of each connection's send queue (see chat.hub.Subscriber).
        self.send_queue_max_events = send_queue_max_events
        # Maps a channel to the lock its writers in this process take in turn, for as
        # long as one of them holds a reference to it.
        self._write_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def _write_lock(self, channel: str) -> asyncio.Lock:
        """Return the lock of the channel's writers in this process.

        A channel's writers wait for each other in the database from `next_seq` to
        the commit (see chat.log.next_seq). The writers of one process wait here for
        the same span instead, so that only writers of different processes meet in
        the database: SQLite's busy handler retries with sleeps of up to 100 ms.
        """
        lock = self._write_locks.get(channel)
        if lock is None:
            lock = asyncio.Lock()
            self._write_locks[channel] = lock
        return lock

    async def start(self) -> None:
        await self.broker.start()

    async def stop(self) -> None:
        await self.hub.stop()
        await self.broker.stop()

    async def open(self, channel: str, user_id: int) -> tuple[ChannelAccess, int]:
        """Return the person's access and the channel's last seq; raise AccessDeniedError."""
        async with self.database.session() as session:
            access = await self.policies.access(session, channel, user_id)
            if access is None:
                raise AccessDeniedError(CloseCode.NOT_FOUND, channel)
            if not access.read:
                raise AccessDeniedError(CloseCode.FORBIDDEN, channel)
            return access, await log.last_seq(session, channel)

    async def last_seq(self, channel: str) -> int:
        async with self.database.session() as session:
            return await log.last_seq(session, channel)

    async def events(
        self, channel: str, after: int, up_to: int | None = None, limit: int = 500
    ) -> list[StoredEvent]:
        """Return at most `limit` stored events with `after < seq <= up_to`, in order."""
        async with self.database.session() as session:
            return await log.events_between(session, channel, after, up_to, limit)

    async def _load_serialized(
        self, channel: str, after: int, up_to: int | None, limit: int
    ) -> list[tuple[int, str]]:
        events = await self.events(channel, after, up_to, limit)
        return [(event.seq, event.to_json()) for event in events]

    async def send(self, channel: str, author: Person, client_id: str, raw_text: str) -> SendResult:
        """Store and publish a message; raise ChatError when it is rejected.

        A second send with the same `client_id` by the same author stores nothing and
        returns the first message's seq, even once the channel is closed.
        """
        try:
            text = clean_text(raw_text)
        except InvalidTextError as error:
            code = ErrorCode.TEXT_TOO_LONG if error.too_long else ErrorCode.INVALID_TEXT
            raise ChatError(code, ref=client_id) from error

        started = time.monotonic()
        try:
            event = await self._store_message(channel, author, client_id, text)
        except _AlreadyStoredError as duplicate:
            logger.debug(
                "chat send channel=%s user=%s: retried client_id, seq=%d",
                channel,
                author.id,
                duplicate.seq,
            )
            return SendResult(duplicate.seq, stored=False)
        except ChatError as error:
            error.ref = client_id
            raise
        logger.debug(
            "chat send channel=%s user=%s seq=%d stored in %.3f s",
            channel,
            author.id,
            event.seq,
            time.monotonic() - started,
        )
        await self._publish(event)
        return SendResult(event.seq, stored=True)

    async def _store_message(
        self, channel: str, author: Person, client_id: str, text: str
    ) -> StoredEvent:
        try:
            # Leaving the session without a commit rolls the transaction back.
            async with self.database.session() as session:
                # A retry gets its ack before any check, even after the channel
                # closed or the person reached the rate limit.
                existing = await log.find_seq_by_client_id(session, channel, author.id, client_id)
                if existing is not None:
                    raise _AlreadyStoredError(existing)
                await self._authorize_send(session, channel, author.id)

                # The counter update takes the write lock: from here on, the channel's
                # writers wait for each other, which also makes the rate count exact.
                # The writers of this process wait on the asyncio lock instead, for
                # the same statements, so that the checks above run side by side.
                async with self._write_lock(channel):
                    seq = await log.next_seq(session, channel)
                    now = self._clock()
                    recent = await log.count_messages_since(
                        session, channel, author.id, now - self.rate_limit_window
                    )
                    if recent >= self.rate_limit_messages:
                        logger.info(
                            "chat send channel=%s user=%s: rate limited", channel, author.id
                        )
                        raise ChatError(ErrorCode.RATE_LIMITED)

                    event = StoredEvent(
                        channel=channel,
                        seq=seq,
                        kind=EventKind.MESSAGE,
                        person=author,
                        created_at=now,
                        client_id=client_id,
                        text=text,
                    )
                    await log.insert_message(session, event)
                    await session.commit()
        except IntegrityError as error:
            # The same client_id was stored by a concurrent send (another process,
            # or a retry racing the first attempt): the first one wins.
            first_seq = await self._find_client_id(channel, author.id, client_id)
            if first_seq is None:
                logger.error(
                    "chat send channel=%s user=%s: integrity error, nothing stored: %s",
                    channel,
                    author.id,
                    error,
                )
                raise ChatError(ErrorCode.TRY_AGAIN) from error
            raise _AlreadyStoredError(first_seq) from error
        except _DATABASE_ERRORS as error:
            logger.error(
                "chat send channel=%s user=%s: database failed, nothing stored: %s",
                channel,
                author.id,
                error,
            )
            raise ChatError(ErrorCode.TRY_AGAIN) from error
        return event

    async def _authorize_send(self, session: AsyncSession, channel: str, user_id: int) -> None:
        access = await self.policies.access(session, channel, user_id)
        if access is None or not access.read or not access.write:
            raise ChatError(ErrorCode.FORBIDDEN)
        if access.closed:
            raise ChatError(ErrorCode.READ_ONLY)

    async def _find_client_id(self, channel: str, author_id: int, client_id: str) -> int | None:
        try:
            async with self.database.session() as session:
                return await log.find_seq_by_client_id(session, channel, author_id, client_id)
        except _DATABASE_ERRORS:
            return None

    async def delete(self, channel: str, person: Person, seq: int) -> DeleteResult:
        """Store and publish the deletion of message `seq`; raise ChatError when rejected.

        The host may delete any message and an author their own, also once the
        channel is closed, so that a replay can still be cleaned up. Deleting a
        message again stores nothing and returns the first deletion's seq.
        """
        if seq > SEQ_MAX:
            raise ChatError(ErrorCode.NOT_FOUND)

        started = time.monotonic()
        try:
            async with (
                self._write_lock(channel),
                self.database.session() as session,
                session.begin(),
            ):
                deletion_seq = await log.next_seq(session, channel)
                access = await self.policies.access(session, channel, person.id)
                if access is None or not access.read:
                    raise ChatError(ErrorCode.FORBIDDEN)
                target = await log.find_message(session, channel, seq)
                if target is None:
                    raise ChatError(ErrorCode.NOT_FOUND)
                if not access.moderate and target.author_id != person.id:
                    raise ChatError(ErrorCode.FORBIDDEN)
                if target.deleted:
                    earlier = await log.find_deletion_of(session, channel, seq)
                    raise _AlreadyStoredError(earlier.seq if earlier is not None else seq)

                now = self._clock()
                target.deleted = True
                target.text = ""
                session.add(
                    ChannelEvent(
                        channel=channel,
                        seq=deletion_seq,
                        kind=EventKind.DELETION,
                        author_id=person.id,
                        deleted_seq=seq,
                        created_at=now,
                    )
                )
        except _AlreadyStoredError as duplicate:
            return DeleteResult(duplicate.seq, stored=False)
        except _DATABASE_ERRORS as error:
            logger.error(
                "chat delete channel=%s user=%s seq=%d: database failed, nothing stored: %s",
                channel,
                person.id,
                seq,
                error,
            )
            raise ChatError(ErrorCode.TRY_AGAIN) from error

        logger.info(
            "chat delete channel=%s user=%s seq=%d deletion_seq=%d in %.3f s",
            channel,
            person.id,
            seq,
            deletion_seq,
            time.monotonic() - started,
        )
        await self._publish(
            StoredEvent(
                channel=channel,
                seq=deletion_seq,
                kind=EventKind.DELETION,
                person=person,
                created_at=now,
                deleted_seq=seq,
            )
        )
        return DeleteResult(deletion_seq, stored=True)

    async def _publish(self, event: StoredEvent) -> None:
        payload = event.to_json()
        try:
            await self.broker.publish(event.channel, payload)
        except BrokerError as error:
            # The event is stored, so the sender must not retry. This process
            # delivers it itself. The other processes read it from the database
            # when their broker connection comes back or the next event shows a gap.
            logger.warning(
                "chat publish channel=%s seq=%d failed, delivered locally only: %s",
                event.channel,
                event.seq,
                error.reason,
            )
            self.hub.deliver(event.channel, payload)

    async def is_broker_healthy(self) -> bool:
        return await self.broker.is_healthy()


async def list_messages(session: AsyncSession, channel: str) -> list[ChatMessage]:
    """Return the channel's messages that were not deleted, in seq order, for the replay."""
    rows = await session.execute(
        select(ChannelEvent, User.display_name)
        .join(User, User.id == ChannelEvent.author_id)
        .where(
            ChannelEvent.channel == channel,
            ChannelEvent.kind == EventKind.MESSAGE,
            ChannelEvent.deleted.is_(False),
        )
        .order_by(ChannelEvent.seq)
    )
    return [
        ChatMessage(
            seq=event.seq,
            author=Person(event.author_id, name),
            text=event.text,
            created_at=event.created_at,
        )
        for event, name in rows
    ]
