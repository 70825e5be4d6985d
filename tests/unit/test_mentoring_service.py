"""The mentoring service against real SQLite and PostgreSQL databases and a real SMTP
server: offers, requests passed from mentor to mentor, timeouts on a clock moved by
hand, acceptance, the end of a mentorship and the batch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from chat.broker import MemoryBroker
from chat.errors import AccessDeniedError, ChatError, CloseCode, ErrorCode
from chat.log import Person
from chat.service import ChatService
from core.database import Database, utc_now
from core.mail import Mailer
from core.settings import SmtpSettings
from mentoring.batch import run_batch
from mentoring.channel_policy import ConversationChannelPolicy
from mentoring.errors import ErrorKind, MentoringError
from mentoring.mail import EmailOutbox
from mentoring.models import (
    AttemptOutcome,
    EmailState,
    MentoringRequest,
    MentorOffer,
    Mentorship,
    Notification,
    OfferStatus,
    RequestAttempt,
    RequestStatus,
)
from mentoring.service import MentoringService
from mentoring.sweeper import SweeperState, TimeoutSweeper
from mentoring.validation import NeedDetails, parse_need, parse_offer
from tests.support.chat_clients import create_people
from tests.support.mail_server import MailServer
from tests.support.processes import free_port

ANSWER_TIMEOUT_SECS = 72 * 3600.0
# A sweep takes milliseconds; the margin is for a loaded CI machine.
SWEEP_TIMEOUT_SECS = 10.0
NAMES = ["Claire", "Karim", "Lea", "Ines", "Paul"]


class Clock:
    """A clock the test moves by hand, so that timeouts never depend on timing."""

    def __init__(self) -> None:
        self.now = utc_now()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, hours: float) -> None:
        self.now += timedelta(hours=hours)


@dataclass
class Desk:
    """A mentoring service on a fresh database, Claire, Karim, Léa, Inès and Paul
    (e-mail `<name>@example.org`), and the SMTP server their e-mails reach."""

    service: MentoringService
    database: Database
    clock: Clock
    mail: MailServer
    people: dict[str, Person] = field(default_factory=dict)

    def id(self, name: str) -> int:
        return self.people[name].id

    async def offer(self, name: str, **values: object) -> MentorOffer:
        """Save the offer of `name`: mathematics, collège, Lyon, 2 places, unless
        `values` says otherwise."""
        form: dict[str, object] = {
            "disciplines": ["mathematiques"],
            "levels": ["college"],
            "academy": "lyon",
            "presentation": "Je suis là pour aider.",
            "capacity": "2",
        }
        form.update(values)
        details = parse_offer(**form)  # type: ignore[arg-type]
        return await self.service.save_offer(self.id(name), details)

    async def request(self, name: str, mentor: str | None, **values: str) -> MentoringRequest:
        return await self.service.send_request(
            self.id(name), need(**values), self.id(mentor) if mentor else None
        )

    async def pending_mentor(self, request_id: int) -> int | None:
        async with self.database.session() as session:
            return await session.scalar(
                select(RequestAttempt.mentor_id).where(
                    RequestAttempt.request_id == request_id,
                    RequestAttempt.outcome == AttemptOutcome.PENDING,
                )
            )

    async def request_status(self, request_id: int) -> RequestStatus:
        async with self.database.session() as session:
            request = await session.get(MentoringRequest, request_id)
            assert request is not None
            return request.status

    async def count(self, model: type[object]) -> int:
        async with self.database.session() as session:
            return await session.scalar(select(func.count()).select_from(model)) or 0


def need(
    discipline: str = "mathematiques",
    level: str = "college",
    academy: str = "lyon",
    text: str = "Gestion de classe en 4e",
) -> NeedDetails:
    return parse_need(discipline=discipline, level=level, academy=academy, need=text)


def address(name: str) -> str:
    return f"{name.lower()}@example.org"


@pytest.fixture(scope="module")
def mail_server() -> Iterator[MailServer]:
    server = MailServer()
    yield server
    server.stop()


@pytest.fixture
async def desk(database: Database, mail_server: MailServer) -> AsyncIterator[Desk]:
    mail_server.clear()
    clock = Clock()
    people = await create_people(database, NAMES)
    outbox = EmailOutbox(
        database, Mailer(SmtpSettings(host="127.0.0.1", port=mail_server.port)), clock
    )
    service = MentoringService(
        database, outbox, answer_timeout_secs=ANSWER_TIMEOUT_SECS, clock=clock
    )
    yield Desk(service, database, clock, mail_server, {p.name: p for p in people})


# bad input


@pytest.mark.parametrize(
    ("field_name", "value", "code", "words"),
    [
        ("capacity", "0", "capacity_too_small", "au moins 1"),
        ("capacity", "-3", "capacity_too_small", "au moins 1"),
        ("capacity", "deux", "capacity_invalid", "en chiffres"),
        ("capacity", "11", "capacity_too_large", "ne peut pas dépasser 10"),
        ("disciplines", ["astrologie"], "discipline_unknown", "« astrologie » n'existe pas"),
        ("disciplines", [], "discipline_missing", "au moins une discipline"),
        ("levels", ["universite"], "level_unknown", "« universite » n'existe pas"),
        ("academy", "atlantide", "academy_unknown", "L'académie « atlantide » n'existe pas"),
        ("presentation", "   ", "presentation_missing", "Présentez-vous"),
        ("presentation", "é" * 1001, "presentation_too_long", "dépasse 1000 caractères"),
    ],
)
async def test_offer_bad_input_keeps_stored_offer(
    desk: Desk, field_name: str, value: object, code: str, words: str
) -> None:
    """Guards against a rejected edit that wipes or half-changes the stored offer."""
    await desk.offer("Claire", capacity="2")

    with pytest.raises(MentoringError) as caught:
        await desk.offer("Claire", **{field_name: value})

    assert caught.value.code == code
    assert caught.value.kind is ErrorKind.INVALID
    assert words in caught.value.message
    stored = await desk.service.get_offer(desk.id("Claire"))
    assert stored is not None
    assert stored.capacity == 2
    assert stored.disciplines == ["mathematiques"]
    assert stored.academy == "lyon"
    assert stored.status is OfferStatus.ACTIVE


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"discipline": "astrologie"}, "discipline_unknown"),
        ({"academy": "atlantide"}, "academy_unknown"),
        ({"level": ""}, "level_missing"),
        ({"text": "\u202egestion"}, "need_invalid"),
        ({"text": "x" * 1001}, "need_too_long"),
    ],
)
def test_need_bad_input_rejected_in_french(values: dict[str, str], code: str) -> None:
    with pytest.raises(MentoringError) as caught:
        need(**values)
    assert caught.value.code == code
    assert caught.value.message.endswith(".")


async def test_request_to_oneself_rejected(desk: Desk) -> None:
    """Guards against a mentor who is also a new teacher being asked by themselves."""
    await desk.offer("Claire")

    with pytest.raises(MentoringError) as caught:
        await desk.request("Claire", "Claire")

    assert caught.value.code == "request_to_self"
    assert "vous-même" in caught.value.message or "votre propre demande" in caught.value.message
    assert await desk.service.open_request_of(desk.id("Claire")) is None
    assert await desk.count(MentoringRequest) == 0
    cards = await desk.service.propose_mentors(desk.id("Claire"), need())
    assert [card.mentor_id for card in cards] == []


async def test_second_request_while_pending_rejected(desk: Desk) -> None:
    await desk.offer("Claire")
    await desk.offer("Karim")
    first = await desk.request("Lea", "Claire")

    with pytest.raises(MentoringError) as caught:
        await desk.request("Lea", "Karim", text="Une autre question")

    assert caught.value.code == "request_already_open"
    assert caught.value.kind is ErrorKind.CONFLICT
    assert "déjà une demande" in caught.value.message
    assert await desk.count(MentoringRequest) == 1
    assert await desk.request_status(first.id) is RequestStatus.PENDING
    assert await desk.pending_mentor(first.id) == desk.id("Claire")
    assert await desk.service.count_pending_for(desk.id("Karim")) == 0


async def test_second_request_while_waiting_rejected(desk: Desk) -> None:
    first = await desk.request("Lea", None)
    assert await desk.request_status(first.id) is RequestStatus.WAITING

    with pytest.raises(MentoringError) as caught:
        await desk.request("Lea", None)

    assert caught.value.code == "request_already_open"
    assert await desk.count(MentoringRequest) == 1


async def test_accept_by_someone_not_asked_rejected(desk: Desk) -> None:
    await desk.offer("Claire")
    await desk.offer("Karim")
    request = await desk.request("Lea", "Claire")

    for intruder in ("Karim", "Ines", "Lea"):
        with pytest.raises(MentoringError) as caught:
            await desk.service.answer_request(desk.id(intruder), request.id, accept=True)
        assert caught.value.code == "request_not_found"
        assert caught.value.kind is ErrorKind.NOT_FOUND

    assert await desk.count(Mentorship) == 0
    assert await desk.request_status(request.id) is RequestStatus.PENDING
    assert await desk.pending_mentor(request.id) == desk.id("Claire")
    mentorship = await desk.service.answer_request(desk.id("Claire"), request.id, accept=True)
    assert mentorship is not None


async def test_answer_to_missing_request_not_found(desk: Desk) -> None:
    with pytest.raises(MentoringError) as caught:
        await desk.service.answer_request(desk.id("Claire"), 999, accept=True)
    assert caught.value.kind is ErrorKind.NOT_FOUND


async def test_request_to_unavailable_mentor_rejected(desk: Desk) -> None:
    """Guards against a request reaching a mentor who paused, or who teaches
    something else, by a hand-made form."""
    await desk.offer("Claire")
    await desk.offer("Karim", disciplines=["philosophie"])
    await desk.service.set_offer_status(desk.id("Claire"), OfferStatus.PAUSED)

    for mentor in ("Claire", "Karim", "Ines"):
        with pytest.raises(MentoringError) as caught:
            await desk.request("Lea", mentor)
        assert caught.value.code == "mentor_unavailable"

    assert await desk.count(MentoringRequest) == 0


# passing a request on


async def test_decline_passes_to_next_mentor(desk: Desk) -> None:
    await desk.offer("Claire")
    await desk.offer("Karim", academy="grenoble")
    cards = await desk.service.propose_mentors(desk.id("Lea"), need())
    assert [card.mentor_id for card in cards] == [desk.id("Claire"), desk.id("Karim")]
    assert "même académie" in cards[0].reasons
    request = await desk.request("Lea", "Claire")

    await desk.service.answer_request(desk.id("Claire"), request.id, accept=False)

    assert await desk.pending_mentor(request.id) == desk.id("Karim")
    mail = desk.mail.wait_for_mail(
        address("Lea"), "Votre demande de mentorat est transmise à un autre mentor"
    )
    assert "Claire n'est pas disponible et a décliné votre demande" in mail.body
    assert "transmise à Karim" in mail.body
    assert "72 heures" in mail.body
    desk.mail.wait_for_mail(address("Karim"), "Nouvelle demande de mentorat")


async def test_timeout_passes_on_after_deadline(desk: Desk) -> None:
    await desk.offer("Claire")
    await desk.offer("Karim")
    request = await desk.request("Lea", "Claire")

    desk.clock.advance(hours=71.9)
    assert await desk.service.run_due_timeouts() == 0
    assert await desk.pending_mentor(request.id) == desk.id("Claire")

    desk.clock.advance(hours=0.2)
    assert await desk.service.run_due_timeouts() == 1
    assert await desk.pending_mentor(request.id) == desk.id("Karim")
    assert await desk.service.run_due_timeouts() == 0
    mail = desk.mail.wait_for_mail(
        address("Lea"), "Votre demande de mentorat est transmise à un autre mentor"
    )
    assert "Claire n'a pas répondu à votre demande dans le délai prévu de 72 heures" in mail.body

    # Claire answers too late.
    with pytest.raises(MentoringError) as caught:
        await desk.service.answer_request(desk.id("Claire"), request.id, accept=True)
    assert caught.value.code == "request_not_waiting"


async def test_exhausted_ranking_waits_for_batch(desk: Desk) -> None:
    await desk.offer("Claire")
    request = await desk.request("Lea", "Claire")

    desk.clock.advance(hours=73)
    assert await desk.service.run_due_timeouts() == 1

    assert await desk.request_status(request.id) is RequestStatus.WAITING
    assert await desk.pending_mentor(request.id) is None
    mail = desk.mail.wait_for_mail(
        address("Lea"), "Votre demande de mentorat attend la prochaine répartition"
    )
    assert "Claire n'a pas répondu" in mail.body
    assert "prochaine répartition" in mail.body


async def test_concurrent_sweeps_pass_on_once(desk: Desk) -> None:
    """Guards against two server processes passing the same request on twice."""
    await desk.offer("Claire")
    await desk.offer("Karim")
    request = await desk.request("Lea", "Claire")
    desk.clock.advance(hours=73)
    other_database = Database(desk.database.url)
    other = MentoringService(
        other_database,
        desk.service.outbox,
        answer_timeout_secs=ANSWER_TIMEOUT_SECS,
        clock=desk.clock,
    )
    try:
        results = await asyncio.gather(desk.service.run_due_timeouts(), other.run_due_timeouts())
    finally:
        await other_database.dispose()

    assert sorted(results) == [0, 1]
    assert await desk.pending_mentor(request.id) == desk.id("Karim")
    async with desk.database.session() as session:
        attempts = list(
            await session.scalars(
                select(RequestAttempt).where(RequestAttempt.request_id == request.id)
            )
        )
    assert [attempt.outcome for attempt in attempts] == [
        AttemptOutcome.TIMED_OUT,
        AttemptOutcome.PENDING,
    ]


async def test_withdrawn_offer_passes_pending_on(desk: Desk) -> None:
    await desk.offer("Claire")
    await desk.offer("Karim")
    request = await desk.request("Lea", "Claire")

    await desk.service.set_offer_status(desk.id("Claire"), OfferStatus.WITHDRAWN)

    assert await desk.pending_mentor(request.id) == desk.id("Karim")
    cards = await desk.service.propose_mentors(desk.id("Ines"), need())
    assert [card.mentor_id for card in cards] == [desk.id("Karim")]
    # saving the offer again brings Claire back
    await desk.offer("Claire")
    cards = await desk.service.propose_mentors(desk.id("Ines"), need())
    assert desk.id("Claire") in [card.mentor_id for card in cards]


async def test_pending_request_holds_a_place(desk: Desk) -> None:
    """Guards against a mentor with one place being asked by two people at once."""
    await desk.offer("Claire", capacity="1")
    await desk.request("Lea", "Claire")

    cards = await desk.service.propose_mentors(desk.id("Ines"), need())
    assert cards == []
    with pytest.raises(MentoringError) as caught:
        await desk.request("Ines", "Claire")
    assert caught.value.code == "mentor_unavailable"


async def test_cancelled_request_frees_mentor_and_allows_new(desk: Desk) -> None:
    await desk.offer("Claire", capacity="1")
    request = await desk.request("Lea", "Claire")

    await desk.service.cancel_request(desk.id("Lea"), request.id)

    assert await desk.request_status(request.id) is RequestStatus.CANCELLED
    desk.mail.wait_for_mail(address("Claire"), "Une demande de mentorat a été retirée")
    with pytest.raises(MentoringError) as caught:
        await desk.service.cancel_request(desk.id("Ines"), request.id)
    assert caught.value.kind is ErrorKind.NOT_FOUND
    second = await desk.request("Lea", "Claire")
    assert await desk.pending_mentor(second.id) == desk.id("Claire")


# acceptance, conversation and end


async def test_accept_opens_private_conversation(desk: Desk) -> None:
    await desk.offer("Claire")
    request = await desk.request("Lea", "Claire")

    mentorship = await desk.service.answer_request(desk.id("Claire"), request.id, accept=True)

    assert mentorship is not None
    assert await desk.request_status(request.id) is RequestStatus.MATCHED
    mail = desk.mail.wait_for_mail(address("Lea"), "Votre demande de mentorat est acceptée")
    assert "Claire accepte de vous accompagner" in mail.body
    chat = ChatService(desk.database, MemoryBroker())
    chat.policies.register("conversation", ConversationChannelPolicy())
    for member in ("Claire", "Lea"):
        access, _ = await chat.open(mentorship.channel, desk.id(member))
        assert access.can_send
        assert not access.moderate
    for outsider in ("Karim", "Ines"):
        with pytest.raises(AccessDeniedError) as denied:
            await chat.open(mentorship.channel, desk.id(outsider))
        assert denied.value.close_code is CloseCode.NOT_FOUND
    # a second request is possible once the first is matched
    await desk.request("Lea", None, discipline="francais")


async def test_end_mentorship_closes_channel_frees_place(desk: Desk) -> None:
    await desk.offer("Claire", capacity="1")
    request = await desk.request("Lea", "Claire")
    mentorship = await desk.service.answer_request(desk.id("Claire"), request.id, accept=True)
    assert mentorship is not None
    assert await desk.service.propose_mentors(desk.id("Ines"), need()) == []
    chat = ChatService(desk.database, MemoryBroker())
    chat.policies.register("conversation", ConversationChannelPolicy())
    await chat.start()
    lea = Person(desk.id("Lea"), "Lea")
    claire = Person(desk.id("Claire"), "Claire")
    first = await chat.send(mentorship.channel, lea, "l-1", "Merci pour votre aide")

    with pytest.raises(MentoringError) as caught:
        await desk.service.end_mentorship(desk.id("Karim"), mentorship.conversation_id)
    assert caught.value.kind is ErrorKind.NOT_FOUND
    await desk.service.end_mentorship(desk.id("Lea"), mentorship.conversation_id)

    for person in (lea, claire):
        with pytest.raises(ChatError) as refused:
            await chat.send(mentorship.channel, person, f"after-{person.id}", "Encore un mot")
        assert refused.value.code is ErrorCode.READ_ONLY
        access, last_seq = await chat.open(mentorship.channel, person.id)
        assert access.read
        assert not access.can_send
        assert last_seq == first.seq
    cards = await desk.service.propose_mentors(desk.id("Ines"), need())
    assert [card.mentor_id for card in cards] == [desk.id("Claire")]
    mail = desk.mail.wait_for_mail(address("Claire"), "Fin du mentorat")
    assert "Lea a mis fin au mentorat" in mail.body
    with pytest.raises(MentoringError) as again:
        await desk.service.end_mentorship(desk.id("Claire"), mentorship.conversation_id)
    assert again.value.code == "mentorship_ended"
    await chat.stop()


async def test_accept_beyond_lowered_capacity_rejected(desk: Desk) -> None:
    await desk.offer("Claire", capacity="2")
    first = await desk.request("Lea", "Claire")
    second = await desk.request("Ines", "Claire")
    await desk.service.answer_request(desk.id("Claire"), first.id, accept=True)
    await desk.offer("Claire", capacity="1")

    with pytest.raises(MentoringError) as caught:
        await desk.service.answer_request(desk.id("Claire"), second.id, accept=True)

    assert caught.value.code == "capacity_reached"
    assert "Vous accompagnez déjà 1 collègue" in caught.value.message
    assert await desk.pending_mentor(second.id) == desk.id("Claire")
    assert await desk.count(Mentorship) == 1


# batch


async def test_batch_matches_waiting_within_capacity(desk: Desk) -> None:
    for mentee in ("Lea", "Ines", "Paul"):
        await desk.request(mentee, None)
    philosophy = await desk.request("Karim", None, discipline="philosophie", level="college")
    await desk.offer("Claire", capacity="2")
    desk.mail.clear()

    dry = await run_batch(desk.service, dry_run=True)
    assert len(dry.matched) == 2
    assert await desk.count(Mentorship) == 0

    report = await run_batch(desk.service, dry_run=False, started_by_id=desk.id("Karim"))

    assert report.requests_count == 4
    assert [line.mentor_name for line in report.matched] == ["Claire", "Claire"]
    assert [line.mentee_name for line in report.matched] == ["Lea", "Ines"]
    unmatched = {line.request_id: line for line in report.unmatched}
    assert unmatched[philosophy.id].reason_code == "no_mentor_in_discipline"
    assert "aucun mentor disponible dans cette discipline" in unmatched[philosophy.id].reason
    assert {line.mentee_name for line in report.unmatched} == {"Paul", "Karim"}
    assert await desk.count(Mentorship) == 2
    mail = desk.mail.wait_for_mail(address("Lea"), "Un mentor vous accompagne désormais")
    assert "confiée à Claire" in mail.body
    desk.mail.wait_for_mail(address("Claire"), "Une nouvelle personne à accompagner")
    assert desk.mail.to(address("Paul")) == []
    # Claire is full now: another batch matches nobody.
    again = await run_batch(desk.service, dry_run=False)
    assert again.matched == []
    assert again.requests_count == 2


# e-mail delivery


async def test_email_skipped_without_smtp(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mentoring.mail")
    desk.service.outbox.mailer = Mailer(SmtpSettings())
    await desk.request("Lea", None)

    async with desk.database.session() as session:
        states = list(await session.scalars(select(Notification.email_state)))
    assert states == [EmailState.SKIPPED]
    assert desk.mail.messages == []
    assert "no SMTP host configured" in caplog.text


async def test_failed_email_sent_by_later_sweep(desk: Desk) -> None:
    """Guards against an e-mail lost because the SMTP server was down for a moment."""
    closed_port = free_port()
    working = desk.service.outbox.mailer
    desk.service.outbox.mailer = Mailer(SmtpSettings(host="127.0.0.1", port=closed_port))
    await desk.request("Lea", None)
    async with desk.database.session() as session:
        notification = await session.scalar(select(Notification))
    assert notification is not None
    assert notification.email_state is EmailState.PENDING
    assert notification.email_attempts == 1

    desk.service.outbox.mailer = working
    assert await desk.service.outbox.deliver_due() == 1

    desk.mail.wait_for_mail(
        address("Lea"), "Votre demande de mentorat attend la prochaine répartition"
    )
    assert await desk.service.outbox.deliver_due() == 0


# the background task


async def test_sweeper_survives_failed_sweep(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    """Guards against a background task that dies on one database error and leaves
    every later request unanswered for ever."""
    await desk.offer("Claire")
    await desk.offer("Karim")
    request = await desk.request("Lea", "Claire")
    desk.clock.advance(hours=73)
    async with desk.database.engine.begin() as connection:
        await connection.execute(text("ALTER TABLE mentoring_attempts RENAME TO attempts_away"))
    sweeper = TimeoutSweeper(desk.service, desk.service.outbox, interval_secs=3600)
    sweeper.start()
    try:
        await asyncio.wait_for(sweeper.wait_for_sweeps(1), SWEEP_TIMEOUT_SECS)
        assert sweeper.failures == 1
        assert "mentoring sweep failed" in caplog.text

        async with desk.database.engine.begin() as connection:
            await connection.execute(text("ALTER TABLE attempts_away RENAME TO mentoring_attempts"))
        sweeper.wake()
        await asyncio.wait_for(sweeper.wait_for_sweeps(2), SWEEP_TIMEOUT_SECS)
    finally:
        await sweeper.stop()

    assert sweeper.failures == 1
    assert sweeper.state is SweeperState.STOPPED
    assert await desk.pending_mentor(request.id) == desk.id("Karim")
