"""Read-only queries behind the mentoring pages: a new teacher's requests and the
mentors asked, and a mentor's requests waiting for an answer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mentoring.models import (
    OPEN_REQUEST_STATUSES,
    AttemptOutcome,
    MentoringRequest,
    Mentorship,
    RequestAttempt,
    RequestStatus,
)
from mentoring.profiles import display_names

# The pages list this many closed requests or answered attempts, the most recent first.
HISTORY_MAX = 20


@dataclass(frozen=True)
class AttemptView:
    mentor_id: int
    mentor_name: str
    outcome: AttemptOutcome
    asked_at: datetime
    deadline_at: datetime
    answered_at: datetime | None
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RequestView:
    """A request as its author follows it: each mentor asked, in order, and the
    conversation once matched."""

    request: MentoringRequest
    attempts: list[AttemptView]
    conversation_id: str | None

    @property
    def is_open(self) -> bool:
        return self.request.status in OPEN_REQUEST_STATUSES

    @property
    def current_attempt(self) -> AttemptView | None:
        return next(
            (view for view in self.attempts if view.outcome is AttemptOutcome.PENDING), None
        )


@dataclass(frozen=True)
class InboxItem:
    """A request addressed to a mentor, with the new teacher's name."""

    request: MentoringRequest
    attempt: RequestAttempt
    mentee_name: str


async def request_view(session: AsyncSession, request: MentoringRequest) -> RequestView:
    attempts = list(
        await session.scalars(
            select(RequestAttempt)
            .where(RequestAttempt.request_id == request.id)
            .order_by(RequestAttempt.asked_at, RequestAttempt.id)
        )
    )
    names = await display_names(session, {attempt.mentor_id for attempt in attempts})
    conversation_id = await session.scalar(
        select(Mentorship.conversation_id).where(Mentorship.request_id == request.id)
    )
    return RequestView(
        request=request,
        attempts=[
            AttemptView(
                mentor_id=attempt.mentor_id,
                mentor_name=names.get(attempt.mentor_id, "?"),
                outcome=attempt.outcome,
                asked_at=attempt.asked_at,
                deadline_at=attempt.deadline_at,
                answered_at=attempt.answered_at,
                reasons=tuple(attempt.reasons),
            )
            for attempt in attempts
        ],
        conversation_id=conversation_id,
    )


async def requests_of(session: AsyncSession, mentee_id: int) -> list[RequestView]:
    """Return the teacher's requests, the most recent first."""
    requests = await session.scalars(
        select(MentoringRequest)
        .where(MentoringRequest.mentee_id == mentee_id)
        .order_by(MentoringRequest.created_at.desc(), MentoringRequest.id.desc())
        .limit(HISTORY_MAX)
    )
    return [await request_view(session, request) for request in requests]


async def own_request(session: AsyncSession, request_id: int, mentee_id: int) -> RequestView | None:
    """Return the request when `mentee_id` wrote it; None otherwise."""
    request = await session.get(MentoringRequest, request_id)
    if request is None or request.mentee_id != mentee_id:
        return None
    return await request_view(session, request)


async def inbox(session: AsyncSession, mentor_id: int) -> tuple[list[InboxItem], list[InboxItem]]:
    """Return the requests waiting for this mentor's answer, the oldest first, and the
    ones already answered or gone, the most recent first."""
    rows = await session.execute(
        select(RequestAttempt, MentoringRequest)
        .join(MentoringRequest, MentoringRequest.id == RequestAttempt.request_id)
        .where(RequestAttempt.mentor_id == mentor_id)
        .order_by(RequestAttempt.asked_at.desc(), RequestAttempt.id.desc())
    )
    pairs = [(attempt, request) for attempt, request in rows]
    names = await display_names(session, {request.mentee_id for _, request in pairs})
    pending: list[InboxItem] = []
    past: list[InboxItem] = []
    for attempt, request in pairs:
        item = InboxItem(request, attempt, names.get(request.mentee_id, "?"))
        if attempt.outcome is AttemptOutcome.PENDING:
            pending.append(item)
        elif len(past) < HISTORY_MAX:
            past.append(item)
    pending.reverse()
    return pending, past


async def count_waiting(session: AsyncSession) -> int:
    """Count the requests waiting for the next batch."""
    count = await session.scalar(
        select(func.count())
        .select_from(MentoringRequest)
        .where(MentoringRequest.status == RequestStatus.WAITING)
    )
    return count or 0
