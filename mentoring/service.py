"""Mentoring actions with no HTTP objects: offers, help requests passed from mentor to
mentor, answers, timeouts and the end of a mentorship.

Every change runs in one transaction together with the notices it causes; their
e-mails go out once it is committed. Each transaction starts with a write (an
INSERT, or a conditional UPDATE that also detects a concurrent change), so that a
SQLite writer waits for the lock instead of failing on a stale snapshot, and the
offers that a matching decision reads are locked (FOR UPDATE) on PostgreSQL, so
that two decisions never give away the same place.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, case, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import User
from core.database import Database, utc_now
from mentoring import profiles
from mentoring.errors import ErrorKind, MentoringError
from mentoring.mail import EmailOutbox
from mentoring.matching import RankedMentor, rank_mentors
from mentoring.models import (
    CONVERSATION_ID_CHARS,
    OPEN_REQUEST_STATUSES,
    AttemptOutcome,
    MentoringRequest,
    MentorOffer,
    Mentorship,
    MentorshipStatus,
    Notification,
    OfferStatus,
    RequestAttempt,
    RequestStatus,
)
from mentoring.notifications import Notices, duration_text
from mentoring.profiles import MentorCard
from mentoring.validation import NeedDetails, OfferDetails

logger = logging.getLogger(__name__)

_DATABASE_ERRORS = (SQLAlchemyError, OSError)

ALREADY_OPEN = MentoringError(
    "request_already_open",
    "Vous avez déjà une demande de mentorat en cours. Attendez la réponse, ou retirez "
    "cette demande avant d'en envoyer une autre.",
    ErrorKind.CONFLICT,
)
REQUEST_NOT_FOUND = MentoringError(
    "request_not_found", "Cette demande de mentorat n'existe pas.", ErrorKind.NOT_FOUND
)
CONVERSATION_NOT_FOUND = MentoringError(
    "conversation_not_found", "Cette conversation n'existe pas.", ErrorKind.NOT_FOUND
)
TRY_AGAIN = MentoringError(
    "try_again",
    "Un problème passager a empêché l'enregistrement. Rien n'a été modifié : réessayez.",
    ErrorKind.TRY_AGAIN,
)


def conversation_path(mentorship: Mentorship) -> str:
    return f"/mentoring/conversations/{mentorship.conversation_id}"


def new_conversation_id() -> str:
    conversation_id = secrets.token_urlsafe(CONVERSATION_ID_CHARS * 3 // 4)
    if len(conversation_id) != CONVERSATION_ID_CHARS:
        raise RuntimeError(f"conversation id of {len(conversation_id)} characters")
    return conversation_id


def _rowcount(result: Any) -> int:
    count: int = cast(CursorResult[Any], result).rowcount
    return count


class MentoringService:
    """The mentoring of one deployment; every process creates its own over the shared database."""

    def __init__(
        self,
        database: Database,
        outbox: EmailOutbox,
        *,
        answer_timeout_secs: float,
        site_url: str | None = None,
        clock: Callable[[], datetime] = utc_now,
        deliver_in_background: bool = False,
    ) -> None:
        self.database = database
        self.outbox = outbox
        self.answer_timeout = timedelta(seconds=answer_timeout_secs)
        self.notices = Notices(site_url, duration_text(answer_timeout_secs))
        self._clock = clock
        # In the server, e-mails go out in tasks of their own, so that a slow SMTP
        # server never holds up a page. Tests and the batch CLI wait for them.
        self.deliver_in_background = deliver_in_background
        self._deliveries: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        return self._clock()

    # e-mails

    async def send_emails(self, notifications: list[Notification]) -> None:
        ids = [notification.id for notification in notifications]
        if not ids:
            return
        if self.deliver_in_background:
            task = asyncio.create_task(self._deliver(ids), name=f"mentoring-email-{ids[0]}")
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            return
        await self._deliver(ids)

    async def _deliver(self, ids: list[int]) -> None:
        try:
            await self.outbox.deliver(ids)
        except _DATABASE_ERRORS as error:
            # The notifications stay pending, and the next sweep sends them.
            logger.error("email delivery of notifications=%s failed: %s", ids, error)

    async def wait_for_deliveries(self) -> None:
        """Wait for the e-mails being sent in the background, on shutdown."""
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    # offers

    async def get_offer(self, user_id: int) -> MentorOffer | None:
        async with self.database.session() as session:
            return await session.scalar(select(MentorOffer).where(MentorOffer.user_id == user_id))

    async def save_offer(self, user_id: int, details: OfferDetails) -> MentorOffer:
        """Create or replace the teacher's offer. A withdrawn offer becomes active again;
        a paused one stays paused."""
        now = self.now()
        values = {
            "disciplines": list(details.disciplines),
            "levels": list(details.levels),
            "academy": details.academy,
            "presentation": details.presentation,
            "capacity": details.capacity,
            "updated_at": now,
        }
        async with self.database.session() as session, session.begin():
            result = await session.execute(
                update(MentorOffer)
                .where(MentorOffer.user_id == user_id)
                .values(
                    **values,
                    status=case(
                        (MentorOffer.status == OfferStatus.WITHDRAWN, OfferStatus.ACTIVE.value),
                        else_=MentorOffer.status,
                    ),
                )
            )
            if _rowcount(result) == 0:
                session.add(
                    MentorOffer(
                        user_id=user_id, status=OfferStatus.ACTIVE, created_at=now, **values
                    )
                )
        offer = await self.get_offer(user_id)
        if offer is None:
            raise RuntimeError(f"offer of user {user_id} missing right after it was saved")
        logger.info(
            "mentor offer saved user=%s status=%s capacity=%d",
            user_id,
            offer.status.value,
            offer.capacity,
        )
        return offer

    async def set_offer_status(self, user_id: int, status: OfferStatus) -> None:
        """Pause, resume or withdraw the teacher's offer.

        Pausing keeps the requests already waiting for this mentor's answer. Withdrawing
        passes each of them to the next mentor, as if the mentor had declined. Running
        mentorships go on in both cases.
        """
        notifications: list[Notification] = []
        async with self.database.session() as session, session.begin():
            result = await session.execute(
                update(MentorOffer)
                .where(MentorOffer.user_id == user_id, MentorOffer.status != OfferStatus.WITHDRAWN)
                .values(status=status, updated_at=self.now())
            )
            if _rowcount(result) == 0:
                raise MentoringError(
                    "offer_not_found",
                    "Vous n'avez pas d'offre de mentorat en cours. Proposez d'abord votre aide.",
                    ErrorKind.NOT_FOUND,
                )
            if status is OfferStatus.WITHDRAWN:
                pending = await session.scalars(
                    select(RequestAttempt).where(
                        RequestAttempt.mentor_id == user_id,
                        RequestAttempt.outcome == AttemptOutcome.PENDING,
                    )
                )
                for attempt in list(pending):
                    attempt.outcome = AttemptOutcome.WITHDRAWN
                    attempt.answered_at = self.now()
                    notifications += await self._pass_on(session, attempt, timed_out=False)
        logger.info("mentor offer user=%s -> %s", user_id, status.value)
        await self.send_emails(notifications)

    # help requests

    async def propose_mentors(self, mentee_id: int, need: NeedDetails) -> list[MentorCard]:
        """Rank the mentors who could take this need now, best first, with their reasons."""
        async with self.database.session() as session:
            mentors, offers = await profiles.load_mentor_profiles(session)
            request = profiles.help_request_of(0, self.now(), need, mentee_id)
            ranking = rank_mentors(request, mentors)
            return await profiles.mentor_cards(
                session, [(r.mentor_id, r.score, r.reasons) for r in ranking], offers
            )

    async def open_request_of(self, mentee_id: int) -> MentoringRequest | None:
        async with self.database.session() as session:
            return await session.scalar(
                select(MentoringRequest).where(MentoringRequest.open_for_mentee_id == mentee_id)
            )

    async def send_request(
        self, mentee_id: int, need: NeedDetails, mentor_id: int | None
    ) -> MentoringRequest:
        """Store a request and ask `mentor_id`, who must be in the request's ranking now.

        `mentor_id` None stores the request as waiting for the next batch, which is
        allowed only while the ranking is empty.
        """
        if mentor_id == mentee_id:
            raise MentoringError(
                "request_to_self",
                "Vous ne pouvez pas vous adresser votre propre demande : choisissez un autre "
                "mentor dans la liste.",
            )
        if await self.open_request_of(mentee_id) is not None:
            raise ALREADY_OPEN

        notifications: list[Notification] = []
        now = self.now()
        try:
            async with self.database.session() as session, session.begin():
                request = MentoringRequest(
                    mentee_id=mentee_id,
                    open_for_mentee_id=mentee_id,
                    discipline=need.discipline,
                    level=need.level,
                    academy=need.academy,
                    need=need.need,
                    status=RequestStatus.PENDING,
                    created_at=now,
                )
                session.add(request)
                await session.flush()

                ranking = await self._rank(session, request)
                mentee = await self.user(session, mentee_id)
                if mentor_id is None:
                    if ranking:
                        raise MentoringError(
                            "mentor_missing",
                            "Des mentors sont disponibles : choisissez-en un dans la liste.",
                        )
                    request.status = RequestStatus.WAITING
                    notifications.append(
                        self.notices.waiting_for_batch(
                            session,
                            mentee,
                            request,
                            "Aucun mentor disponible ne correspondait à votre demande quand "
                            "vous l'avez envoyée.",
                        )
                    )
                else:
                    chosen = next((r for r in ranking if r.mentor_id == mentor_id), None)
                    if chosen is None:
                        raise MentoringError(
                            "mentor_unavailable",
                            "Ce mentor n'est pas ou plus disponible pour votre demande : "
                            "choisissez-en un autre dans la liste mise à jour.",
                            ErrorKind.CONFLICT,
                        )
                    notifications += await self._ask(session, request, mentee, chosen)
                await session.flush()
        except IntegrityError as error:
            # Another request of the same teacher was stored meanwhile: the unique
            # open_for_mentee_id keeps only the first.
            logger.info("mentoring request by user=%s rejected, one already open", mentee_id)
            raise ALREADY_OPEN from error

        logger.info(
            "mentoring request=%s by user=%s %s",
            request.id,
            mentee_id,
            f"sent to mentor={mentor_id}" if mentor_id is not None else "waiting for a batch",
        )
        await self.send_emails(notifications)
        return request

    async def cancel_request(self, mentee_id: int, request_id: int) -> None:
        """Withdraw the teacher's own open request and notify the mentor it waits for."""
        notifications: list[Notification] = []
        async with self.database.session() as session, session.begin():
            result = await session.execute(
                update(MentoringRequest)
                .where(
                    MentoringRequest.id == request_id,
                    MentoringRequest.mentee_id == mentee_id,
                    MentoringRequest.status.in_(OPEN_REQUEST_STATUSES),
                )
                .values(
                    status=RequestStatus.CANCELLED, open_for_mentee_id=None, closed_at=self.now()
                )
            )
            if _rowcount(result) == 0:
                request = await session.get(MentoringRequest, request_id)
                if request is None or request.mentee_id != mentee_id:
                    raise REQUEST_NOT_FOUND
                raise MentoringError(
                    "request_closed",
                    "Cette demande n'est plus en cours : elle ne peut plus être retirée.",
                    ErrorKind.CONFLICT,
                )
            request = await session.get(MentoringRequest, request_id)
            attempt = await self._pending_attempt(session, request_id)
            if request is not None and attempt is not None:
                attempt.outcome = AttemptOutcome.WITHDRAWN
                attempt.answered_at = self.now()
                mentor = await self.user(session, attempt.mentor_id)
                mentee = await self.user(session, mentee_id)
                notifications.append(
                    self.notices.request_withdrawn(session, mentor, mentee, request)
                )
            await session.flush()
        logger.info("mentoring request=%s cancelled by user=%s", request_id, mentee_id)
        await self.send_emails(notifications)

    async def answer_request(
        self, mentor_id: int, request_id: int, *, accept: bool
    ) -> Mentorship | None:
        """Accept or decline a request addressed to `mentor_id`; return the new mentorship
        on acceptance. A declined request passes to the next mentor of its ranking."""
        await self._check_addressed_to(mentor_id, request_id)

        notifications: list[Notification] = []
        mentorship: Mentorship | None = None
        now = self.now()
        async with self.database.session() as session, session.begin():
            result = await session.execute(
                update(RequestAttempt)
                .where(
                    RequestAttempt.request_id == request_id,
                    RequestAttempt.mentor_id == mentor_id,
                    RequestAttempt.outcome == AttemptOutcome.PENDING,
                )
                .values(
                    outcome=AttemptOutcome.ACCEPTED if accept else AttemptOutcome.DECLINED,
                    answered_at=now,
                )
                .returning(RequestAttempt.id)
            )
            attempt_id = result.scalar_one_or_none()
            if attempt_id is None:
                # The request timed out or was withdrawn since the check above.
                raise _no_longer_waiting()
            attempt = await session.get(RequestAttempt, attempt_id)
            if attempt is None:
                raise RuntimeError(f"attempt {attempt_id} vanished inside its transaction")

            if accept:
                mentorship, notice = await self._accept(session, attempt)
                notifications.append(notice)
            else:
                notifications += await self._pass_on(session, attempt, timed_out=False)
            await session.flush()

        logger.info(
            "mentoring request=%s %s by mentor=%s%s",
            request_id,
            "accepted" if accept else "declined",
            mentor_id,
            f" mentorship={mentorship.id}" if mentorship else "",
        )
        await self.send_emails(notifications)
        return mentorship

    async def _check_addressed_to(self, mentor_id: int, request_id: int) -> None:
        """Raise the error that says why `mentor_id` cannot answer this request, if any."""
        async with self.database.session() as session:
            request = await session.get(MentoringRequest, request_id)
            if request is None:
                raise REQUEST_NOT_FOUND
            asked = await profiles.asked_mentor_ids(session, request_id)
            if mentor_id not in asked:
                logger.warning(
                    "mentoring request=%s: answer rejected, user=%s was not asked",
                    request_id,
                    mentor_id,
                )
                # The same answer as for a missing request, so that a stranger cannot
                # learn which request ids exist.
                raise REQUEST_NOT_FOUND
            attempt = await self._pending_attempt(session, request_id)
            if attempt is None or attempt.mentor_id != mentor_id:
                raise _no_longer_waiting()

    async def _accept(
        self, session: AsyncSession, attempt: RequestAttempt
    ) -> tuple[Mentorship, Notification]:
        offer = await session.scalar(
            select(MentorOffer).where(MentorOffer.user_id == attempt.mentor_id).with_for_update()
        )
        active = (await profiles.count_active_mentees(session, [attempt.mentor_id])).get(
            attempt.mentor_id, 0
        )
        if offer is not None and active >= offer.capacity:
            raise MentoringError(
                "capacity_reached",
                f"Vous accompagnez déjà {active} collègue{'s' if active > 1 else ''}, le nombre "
                "indiqué dans votre offre. Augmentez-le dans votre offre, ou déclinez la demande.",
                ErrorKind.CONFLICT,
            )
        request = await session.get(MentoringRequest, attempt.request_id, with_for_update=True)
        if request is None or request.status is not RequestStatus.PENDING:
            raise _no_longer_waiting()

        mentorship = self.match_request(request, attempt.mentor_id, by_batch=False)
        session.add(mentorship)
        await session.flush()
        mentee = await self.user(session, request.mentee_id)
        mentor = await self.user(session, attempt.mentor_id)
        notice = self.notices.request_accepted(
            session,
            mentee,
            mentor,
            request,
            conversation_path=conversation_path(mentorship),
            mentorship_id=mentorship.id,
        )
        return mentorship, notice

    def match_request(
        self, request: MentoringRequest, mentor_id: int, *, by_batch: bool
    ) -> Mentorship:
        """Close the request as matched and return its new mentorship (not yet added)."""
        now = self.now()
        request.status = RequestStatus.MATCHED
        request.open_for_mentee_id = None
        request.closed_at = now
        return Mentorship(
            conversation_id=new_conversation_id(),
            request_id=request.id,
            mentor_id=mentor_id,
            mentee_id=request.mentee_id,
            status=MentorshipStatus.ACTIVE,
            by_batch=by_batch,
            started_at=now,
        )

    # passing a request on

    async def _rank(self, session: AsyncSession, request: MentoringRequest) -> list[RankedMentor]:
        """Rank the mentors for a stored request, locking the offers read (PostgreSQL)."""
        offers = await session.scalars(
            select(MentorOffer).where(MentorOffer.status == OfferStatus.ACTIVE).with_for_update()
        )
        offer_list = list(offers)
        mentor_ids = [offer.user_id for offer in offer_list]
        active = await profiles.count_active_mentees(session, mentor_ids)
        pending = await profiles.count_pending_requests(session, mentor_ids)
        mentors = [
            profiles.profile_of(offer, active.get(offer.user_id, 0), pending.get(offer.user_id, 0))
            for offer in offer_list
        ]
        asked = await profiles.asked_mentor_ids(session, request.id)
        help_request = profiles.help_request_of(
            request.id, request.created_at, request, request.mentee_id, asked
        )
        return rank_mentors(help_request, mentors)

    async def _ask(
        self,
        session: AsyncSession,
        request: MentoringRequest,
        mentee: User,
        ranked: RankedMentor,
    ) -> list[Notification]:
        """Address the request to a ranked mentor and tell the mentor."""
        now = self.now()
        deadline = now + self.answer_timeout
        session.add(
            RequestAttempt(
                request_id=request.id,
                mentor_id=ranked.mentor_id,
                score=ranked.score,
                reasons=list(ranked.reasons),
                outcome=AttemptOutcome.PENDING,
                asked_at=now,
                deadline_at=deadline,
            )
        )
        request.status = RequestStatus.PENDING
        mentor = await self.user(session, ranked.mentor_id)
        return [self.notices.new_request(session, mentor, mentee, request, deadline)]

    async def _pass_on(
        self, session: AsyncSession, attempt: RequestAttempt, *, timed_out: bool
    ) -> list[Notification]:
        """Ask the next mentor of the ranking after `attempt` ended without acceptance,
        or leave the request waiting for the next batch. The new teacher is notified
        either way."""
        request = await session.get(MentoringRequest, attempt.request_id, with_for_update=True)
        if request is None or request.status is not RequestStatus.PENDING:
            return []
        await session.flush()
        mentee = await self.user(session, request.mentee_id)
        previous = await self.user(session, attempt.mentor_id)

        ranking = await self._rank(session, request)
        if ranking:
            next_mentor = await self.user(session, ranking[0].mentor_id)
            notifications = await self._ask(session, request, mentee, ranking[0])
            notifications.append(
                self.notices.passed_on(
                    session, mentee, previous, next_mentor, request, timed_out=timed_out
                )
            )
            logger.info(
                "mentoring request=%s passed from mentor=%s to mentor=%s (%s)",
                request.id,
                previous.id,
                next_mentor.id,
                "timed out" if timed_out else "declined",
            )
            return notifications

        request.status = RequestStatus.WAITING
        if timed_out:
            cause = (
                f"{previous.display_name} n'a pas répondu à votre demande dans le délai "
                f"prévu de {self.notices.answer_delay}."
            )
        else:
            cause = f"{previous.display_name} n'est pas disponible et a décliné votre demande."
        logger.info(
            "mentoring request=%s waiting for a batch after mentor=%s (%s)",
            request.id,
            previous.id,
            "timed out" if timed_out else "declined",
        )
        return [self.notices.waiting_for_batch(session, mentee, request, cause)]

    async def run_due_timeouts(self) -> int:
        """Pass on every request whose mentor did not answer in time; return how many."""
        now = self.now()
        async with self.database.session() as session:
            due = list(
                await session.scalars(
                    select(RequestAttempt.id)
                    .where(
                        RequestAttempt.outcome == AttemptOutcome.PENDING,
                        RequestAttempt.deadline_at <= now,
                    )
                    .order_by(RequestAttempt.deadline_at, RequestAttempt.id)
                )
            )

        passed = 0
        for attempt_id in due:
            notifications: list[Notification] = []
            async with self.database.session() as session, session.begin():
                # Another process may have passed it on, or the mentor answered, since
                # the query above: the condition on `outcome` settles the race.
                result = await session.execute(
                    update(RequestAttempt)
                    .where(
                        RequestAttempt.id == attempt_id,
                        RequestAttempt.outcome == AttemptOutcome.PENDING,
                    )
                    .values(outcome=AttemptOutcome.TIMED_OUT, answered_at=now)
                )
                if _rowcount(result) == 0:
                    continue
                attempt = await session.get(RequestAttempt, attempt_id)
                if attempt is None:
                    continue
                notifications = await self._pass_on(session, attempt, timed_out=True)
                await session.flush()
            passed += 1
            await self.send_emails(notifications)
        if passed:
            logger.info("mentoring timeouts: %d request(s) passed on", passed)
        return passed

    # mentorships

    async def end_mentorship(self, user_id: int, conversation_id: str) -> None:
        """End the mentorship as one of its members: the conversation turns read-only
        for both, and the mentor's place is free again."""
        notifications: list[Notification] = []
        async with self.database.session() as session, session.begin():
            result = await session.execute(
                update(Mentorship)
                .where(
                    Mentorship.conversation_id == conversation_id,
                    Mentorship.status == MentorshipStatus.ACTIVE,
                    (Mentorship.mentor_id == user_id) | (Mentorship.mentee_id == user_id),
                )
                .values(status=MentorshipStatus.ENDED, ended_at=self.now(), ended_by_id=user_id)
                .returning(Mentorship.id)
            )
            mentorship_id = result.scalar_one_or_none()
            if mentorship_id is None:
                existing = await session.scalar(
                    select(Mentorship).where(Mentorship.conversation_id == conversation_id)
                )
                if existing is None or not existing.is_member(user_id):
                    raise CONVERSATION_NOT_FOUND
                raise MentoringError(
                    "mentorship_ended", "Ce mentorat est déjà terminé.", ErrorKind.CONFLICT
                )
            mentorship = await session.get(Mentorship, mentorship_id)
            if mentorship is None:
                raise RuntimeError(f"mentorship {mentorship_id} vanished inside its transaction")
            ended_by = await self.user(session, user_id)
            other = await self.user(session, mentorship.other_member(user_id))
            notifications.append(
                self.notices.mentorship_ended(
                    session,
                    other,
                    ended_by,
                    conversation_path=conversation_path(mentorship),
                    mentorship_id=mentorship.id,
                )
            )
            await session.flush()
        logger.info("mentorship=%s ended by user=%s", mentorship_id, user_id)
        await self.send_emails(notifications)

    # helpers

    async def user(self, session: AsyncSession, user_id: int) -> User:
        user = await session.get(User, user_id)
        if user is None:
            raise RuntimeError(f"user {user_id} referenced by mentoring does not exist")
        return user

    async def _pending_attempt(
        self, session: AsyncSession, request_id: int
    ) -> RequestAttempt | None:
        return await session.scalar(
            select(RequestAttempt).where(
                RequestAttempt.request_id == request_id,
                RequestAttempt.outcome == AttemptOutcome.PENDING,
            )
        )

    async def count_pending_for(self, mentor_id: int) -> int:
        async with self.database.session() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(RequestAttempt)
                .where(
                    RequestAttempt.mentor_id == mentor_id,
                    RequestAttempt.outcome == AttemptOutcome.PENDING,
                )
            )
            return count or 0


def _no_longer_waiting() -> MentoringError:
    return MentoringError(
        "request_not_waiting",
        "Cette demande n'attend plus votre réponse : elle a été retirée, ou transmise à un "
        "autre mentor faute de réponse dans le délai prévu.",
        ErrorKind.CONFLICT,
    )
