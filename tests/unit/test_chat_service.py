"""The chat service against real SQLite and PostgreSQL databases: seq, retries, deletions, history,
validation, rate limit and database failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy import event, select, text

from chat.broker import MemoryBroker
from chat.errors import AccessDeniedError, ChatError, CloseCode, ErrorCode
from chat.log import Person
from chat.models import ChannelCounter, ChannelEvent, EventKind
from chat.service import ChatService, list_messages
from core.database import Database, utc_now
from live.channel_policy import LiveChannelPolicy
from live.lifecycle import transition
from live.models import Live, LiveState
from tests.support.chat_clients import create_live, create_people


class Clock:
    """A clock the test moves by hand, so the rate limit never depends on timing."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Room:
    service: ChatService
    database: Database
    clock: Clock
    channel: str
    live_id: int
    host: Person
    attendee: Person
    outsider: Person


@pytest.fixture
async def room(database_url: str) -> AsyncIterator[Room]:
    database = Database(database_url)
    await database.create_schema()
    host, attendee, outsider = await create_people(database, ["Claire", "Karim", "Inès"])
    live_id = await create_live(database, host.id, [attendee.id])

    clock = Clock()
    service = ChatService(database, MemoryBroker(), clock=clock)
    service.policies.register("live", LiveChannelPolicy())
    await service.start()
    yield Room(service, database, clock, f"live:{live_id}", live_id, host, attendee, outsider)
    await service.stop()
    await database.dispose()


async def stored_rows(database: Database, channel: str) -> list[ChannelEvent]:
    async with database.session() as session:
        rows = await session.scalars(
            select(ChannelEvent).where(ChannelEvent.channel == channel).order_by(ChannelEvent.seq)
        )
        return list(rows)


async def test_send_assigns_consecutive_seq(room: Room) -> None:
    first = await room.service.send(room.channel, room.attendee, "a1", "Bonsoir")
    second = await room.service.send(room.channel, room.host, "h1", "Bienvenue à toutes et à tous")
    assert (first.seq, second.seq) == (1, 2)
    assert first.stored
    assert await room.service.last_seq(room.channel) == 2


async def test_send_seq_has_no_gap_under_concurrency(room: Room) -> None:
    service = ChatService(room.database, MemoryBroker(), rate_limit_messages=1000)
    service.policies.register("live", LiveChannelPolicy())
    results = await asyncio.gather(
        *(
            service.send(room.channel, person, f"c{index}", f"message {index}")
            for index in range(30)
            for person in (room.host, room.attendee)
        )
    )
    assert sorted(result.seq for result in results) == list(range(1, 61))


async def test_send_retry_stores_once(room: Room) -> None:
    first = await room.service.send(room.channel, room.attendee, "retry-1", "Une question")
    retried = await room.service.send(room.channel, room.attendee, "retry-1", "Une question")
    assert retried.seq == first.seq
    assert not retried.stored
    assert len(await stored_rows(room.database, room.channel)) == 1


async def test_send_statements_per_message(room: Room) -> None:
    """Guards the cost of a stored message: the access check, the seq and one checked
    insert, each a round trip to the database server on PostgreSQL."""
    await room.service.send(room.channel, room.attendee, "a0", "Le premier message")
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    engine = room.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        result = await room.service.send(room.channel, room.attendee, "a1", "Bonsoir")
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert result.stored
    assert statements == ["SELECT", "INSERT", "INSERT"]


async def test_send_client_id_scoped_to_author(room: Room) -> None:
    first = await room.service.send(room.channel, room.attendee, "c-1", "Oui")
    second = await room.service.send(room.channel, room.host, "c-1", "Oui")
    assert second.seq == first.seq + 1
    assert second.stored


async def test_delete_is_own_event_with_own_seq(room: Room) -> None:
    message = await room.service.send(room.channel, room.attendee, "a1", "Erreur de frappe")
    deletion = await room.service.delete(room.channel, room.attendee, message.seq)
    assert deletion.seq == message.seq + 1
    assert deletion.stored

    rows = await stored_rows(room.database, room.channel)
    assert [row.kind for row in rows] == [EventKind.MESSAGE, EventKind.DELETION]
    assert rows[0].deleted
    assert rows[0].text == ""
    assert rows[1].deleted_seq == message.seq
    assert rows[1].author_id == room.attendee.id


async def test_delete_twice_stores_once(room: Room) -> None:
    message = await room.service.send(room.channel, room.attendee, "a1", "Oups")
    first = await room.service.delete(room.channel, room.host, message.seq)
    again = await room.service.delete(room.channel, room.attendee, message.seq)
    assert again.seq == first.seq
    assert not again.stored
    assert await room.service.last_seq(room.channel) == 2


async def test_delete_permissions(room: Room) -> None:
    by_host = await room.service.send(room.channel, room.host, "h1", "Consigne")
    by_attendee = await room.service.send(room.channel, room.attendee, "a1", "Question")

    with pytest.raises(ChatError) as raised:
        await room.service.delete(room.channel, room.attendee, by_host.seq)
    assert raised.value.code is ErrorCode.FORBIDDEN
    with pytest.raises(ChatError) as raised:
        await room.service.delete(room.channel, room.outsider, by_attendee.seq)
    assert raised.value.code is ErrorCode.FORBIDDEN

    # The host moderates every message.
    assert (await room.service.delete(room.channel, room.host, by_attendee.seq)).stored
    # A forbidden or rejected deletion takes no seq.
    assert await room.service.last_seq(room.channel) == 3


@pytest.mark.parametrize("seq", [3, 99])
async def test_delete_unknown_message_is_not_found(room: Room, seq: int) -> None:
    message = await room.service.send(room.channel, room.attendee, "a1", "Bonsoir")
    await room.service.delete(room.channel, room.attendee, message.seq)
    # seq 2 is the deletion event, not a message; seq 99 does not exist.
    with pytest.raises(ChatError) as raised:
        await room.service.delete(room.channel, room.host, 2 if seq == 3 else seq)
    assert raised.value.code is ErrorCode.NOT_FOUND


@pytest.mark.parametrize("seq", [2**31, 2**63, 10**30])
async def test_delete_seq_beyond_column_not_found(room: Room, seq: int) -> None:
    """A seq above the column's range reached the database driver, which rejected it."""
    await room.service.send(room.channel, room.attendee, "a1", "Bonsoir")
    with pytest.raises(ChatError) as raised:
        await room.service.delete(room.channel, room.host, seq)
    assert raised.value.code is ErrorCode.NOT_FOUND
    assert await room.service.last_seq(room.channel) == 1


async def test_events_after_include_deletions(room: Room) -> None:
    kept = await room.service.send(room.channel, room.attendee, "a1", "Merci !")
    removed = await room.service.send(room.channel, room.attendee, "a2", "Hors sujet")
    await room.service.delete(room.channel, room.host, removed.seq)

    events = await room.service.events(room.channel, after=kept.seq)
    frames = [event.to_frame() for event in events]
    assert [frame["seq"] for frame in frames] == [2, 3]
    assert frames[0]["kind"] == "message"
    assert frames[0]["deleted"] is True
    assert frames[0]["text"] == ""
    assert frames[1]["kind"] == "deletion"
    assert frames[1]["deleted_seq"] == removed.seq
    assert frames[1]["by"] == {"id": room.host.id, "name": "Claire"}

    everything = await room.service.events(room.channel, after=0)
    assert everything[0].to_frame()["text"] == "Merci !"
    assert everything[0].to_frame()["author"] == {"id": room.attendee.id, "name": "Karim"}


async def test_list_messages_leaves_out_deleted(room: Room) -> None:
    await room.service.send(room.channel, room.host, "h1", "Bonsoir")
    removed = await room.service.send(room.channel, room.attendee, "a1", "Spam")
    await room.service.send(room.channel, room.attendee, "a2", "Très clair, merci")
    await room.service.delete(room.channel, room.host, removed.seq)

    async with room.database.session() as session:
        messages = await list_messages(session, room.channel)
    assert [message.text for message in messages] == ["Bonsoir", "Très clair, merci"]
    assert [message.author.name for message in messages] == ["Claire", "Karim"]
    assert all(message.created_at.tzinfo is not None for message in messages)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", ErrorCode.INVALID_TEXT),
        ("   \n\t ", ErrorCode.INVALID_TEXT),
        ("bonjour\x00", ErrorCode.INVALID_TEXT),
        ("bip\x07", ErrorCode.INVALID_TEXT),
        ("\x1b[31mrouge", ErrorCode.INVALID_TEXT),
        ("del\x7f", ErrorCode.INVALID_TEXT),
        ("avant\x85après", ErrorCode.INVALID_TEXT),
        ("moitié \ud83d d'emoji", ErrorCode.INVALID_TEXT),
        ("\udc00", ErrorCode.INVALID_TEXT),
        ("non\ufdd0caractère", ErrorCode.INVALID_TEXT),
        ("fin\uffff", ErrorCode.INVALID_TEXT),
        ("plan 16\U0010fffe", ErrorCode.INVALID_TEXT),
        ("x" * 1001, ErrorCode.TEXT_TOO_LONG),
        ("😀" * 1001, ErrorCode.TEXT_TOO_LONG),
    ],
)
async def test_send_rejects_invalid_text(room: Room, raw: str, code: ErrorCode) -> None:
    with pytest.raises(ChatError) as raised:
        await room.service.send(room.channel, room.attendee, "c-1", raw)
    assert raised.value.code is code
    assert raised.value.ref == "c-1"
    assert await room.service.last_seq(room.channel) == 0


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("  Bonsoir  ", "Bonsoir"),
        # NFD "é" (e + combining acute) is stored composed.
        ("e\u0301cole", "\u00e9cole"),
        ("ligne 1\r\nligne 2\rligne 3", "ligne 1\nligne 2\nligne 3"),
        ("col1\tcol2", "col1\tcol2"),
        # Right-to-left override: allowed, the page isolates each message.
        ("\u202eتجربة", "\u202eتجربة"),
        # A family emoji joined with zero-width joiners.
        ("👩\u200d👩\u200d👧", "👩\u200d👩\u200d👧"),
    ],
)
async def test_send_normalizes_text(room: Room, raw: str, stored: str) -> None:
    await room.service.send(room.channel, room.attendee, "c-1", raw)
    rows = await stored_rows(room.database, room.channel)
    assert rows[0].text == stored


async def test_send_emoji_at_limit_accepted(room: Room) -> None:
    at_limit = "a" * 999 + "😀"
    assert len(at_limit) == 1000
    result = await room.service.send(room.channel, room.attendee, "c-1", at_limit)
    assert result.stored

    with pytest.raises(ChatError) as raised:
        await room.service.send(room.channel, room.attendee, "c-2", at_limit + "😀")
    assert raised.value.code is ErrorCode.TEXT_TOO_LONG


async def test_send_nfc_counts_composed_length(room: Room) -> None:
    # 1000 "é" written as e + combining accent are 2000 code points before NFC, 1000 after.
    result = await room.service.send(room.channel, room.attendee, "c-1", "e\u0301" * 1000)
    assert result.stored


async def test_send_rate_limit_per_person(room: Room) -> None:
    for index in range(5):
        await room.service.send(room.channel, room.attendee, f"a{index}", "vite")
    with pytest.raises(ChatError) as raised:
        await room.service.send(room.channel, room.attendee, "a5", "trop vite")
    assert raised.value.code is ErrorCode.RATE_LIMITED
    assert raised.value.ref == "a5"

    # Another person is not limited, and a retry of a stored message still gets its seq.
    assert (await room.service.send(room.channel, room.host, "h1", "Je réponds")).stored
    assert (await room.service.send(room.channel, room.attendee, "a4", "vite")).seq == 5

    room.clock.now += timedelta(seconds=5)
    assert (await room.service.send(room.channel, room.attendee, "a5", "de nouveau")).stored
    # The rejected message took no seq: 5 messages, the host's, then this one.
    assert await room.service.last_seq(room.channel) == 7


async def test_send_read_only_after_live_ended(room: Room) -> None:
    message = await room.service.send(room.channel, room.attendee, "a1", "Bravo")
    async with room.database.session() as session:
        live = await session.get(Live, room.live_id)
        assert live is not None
        await transition(session, live, LiveState.LIVE)
        await transition(session, live, LiveState.ENDED)

    with pytest.raises(ChatError) as raised:
        await room.service.send(room.channel, room.attendee, "a2", "Encore une question")
    assert raised.value.code is ErrorCode.READ_ONLY
    # A retried send of a message stored before the end still gets its ack.
    assert (await room.service.send(room.channel, room.attendee, "a1", "Bravo")).seq == 1
    # Deletions stay possible, so the replay can be cleaned up.
    assert (await room.service.delete(room.channel, room.host, message.seq)).stored

    access, _ = await room.service.open(room.channel, room.attendee.id)
    assert access.closed
    assert not access.can_send


async def test_send_forbidden_to_outsider(room: Room) -> None:
    with pytest.raises(ChatError) as raised:
        await room.service.send(room.channel, room.outsider, "o1", "Je peux venir ?")
    assert raised.value.code is ErrorCode.FORBIDDEN


@pytest.mark.parametrize(
    "channel",
    [
        "live:999",
        "live:012",
        "live:-1",
        "live:",
        "live",
        "live:1x",
        "conversation:1",
        "",
        "live:٣",
        # Above the 32-bit id column of PostgreSQL, whose driver rejected the query.
        "live:2147483648",
        "live:999999999999999999",
    ],
)
async def test_open_unknown_channel_is_not_found(room: Room, channel: str) -> None:
    with pytest.raises(AccessDeniedError) as raised:
        await room.service.open(channel, room.attendee.id)
    assert raised.value.close_code is CloseCode.NOT_FOUND


async def test_open_roles(room: Room) -> None:
    host_access, _ = await room.service.open(room.channel, room.host.id)
    attendee_access, _ = await room.service.open(room.channel, room.attendee.id)
    assert host_access.role == "host"
    assert host_access.moderate
    assert attendee_access.role == "participant"
    assert attendee_access.can_send
    with pytest.raises(AccessDeniedError) as raised:
        await room.service.open(room.channel, room.outsider.id)
    assert raised.value.close_code is CloseCode.FORBIDDEN


async def test_send_database_failure_writes_nothing(room: Room) -> None:
    await room.service.send(room.channel, room.attendee, "a1", "Avant la panne")
    async with room.database.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE chat_events RENAME TO chat_events_away"))
    try:
        with pytest.raises(ChatError) as raised:
            await room.service.send(room.channel, room.host, "h1", "Pendant la panne")
        assert raised.value.code is ErrorCode.TRY_AGAIN
        assert raised.value.ref == "h1"
    finally:
        async with room.database.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE chat_events_away RENAME TO chat_events"))

    # The counter increment was rolled back with the failed insert: no gap.
    async with room.database.session() as session:
        counter = await session.get(ChannelCounter, room.channel)
        assert counter is not None
        assert counter.last_seq == 1
    retried = await room.service.send(room.channel, room.host, "h1", "Pendant la panne")
    assert retried.seq == 2
    assert retried.stored
