"""Load what matching needs from the database: the mentors open to new mentees with
their current load, and a stored request with the mentors it must not go to again."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from accounts.models import User
from mentoring.matching import HelpRequest, MentorProfile
from mentoring.models import (
    AttemptOutcome,
    MentoringRequest,
    MentorOffer,
    Mentorship,
    MentorshipStatus,
    OfferStatus,
    RequestAttempt,
)
from mentoring.validation import NeedDetails


@dataclass(frozen=True)
class MentorCard:
    """What a new teacher sees of a proposed mentor, with the ranking's reasons."""

    mentor_id: int
    name: str
    disciplines: tuple[str, ...]
    levels: tuple[str, ...]
    academy: str
    presentation: str
    score: int
    reasons: tuple[str, ...]


async def display_names(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, str]:
    """Map each user id to the display name shown to colleagues."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    rows = await session.execute(select(User.id, User.display_name).where(User.id.in_(wanted)))
    return {user_id: name for user_id, name in rows}


async def count_active_mentees(session: AsyncSession, mentor_ids: Iterable[int]) -> dict[int, int]:
    """Map each mentor id to their number of active mentorships (absent means 0)."""
    rows = await session.execute(
        select(Mentorship.mentor_id, func.count())
        .where(
            Mentorship.mentor_id.in_(list(mentor_ids)),
            Mentorship.status == MentorshipStatus.ACTIVE,
        )
        .group_by(Mentorship.mentor_id)
    )
    return {mentor_id: count for mentor_id, count in rows}


async def count_pending_requests(
    session: AsyncSession, mentor_ids: Iterable[int]
) -> dict[int, int]:
    """Map each mentor id to the number of requests waiting for their answer."""
    rows = await session.execute(
        select(RequestAttempt.mentor_id, func.count())
        .where(
            RequestAttempt.mentor_id.in_(list(mentor_ids)),
            RequestAttempt.outcome == AttemptOutcome.PENDING,
        )
        .group_by(RequestAttempt.mentor_id)
    )
    return {mentor_id: count for mentor_id, count in rows}


async def active_offers(session: AsyncSession) -> list[MentorOffer]:
    rows = await session.scalars(
        select(MentorOffer)
        .where(MentorOffer.status == OfferStatus.ACTIVE)
        .order_by(MentorOffer.user_id)
    )
    return list(rows)


def profile_of(offer: MentorOffer, active_mentees: int, pending_requests: int) -> MentorProfile:
    """Build the matching profile of an offer.

    A request waiting for the mentor's answer holds one of their places, so that a
    mentor is never asked by more people than they can take. Matching counts
    `active_mentees` for its load points, so the pending requests come off the
    capacity instead, which gives the same free places.
    """
    return MentorProfile(
        mentor_id=offer.user_id,
        disciplines=frozenset(offer.disciplines),
        levels=frozenset(offer.levels),
        academy=offer.academy,
        capacity=max(0, offer.capacity - pending_requests),
        active_mentees=active_mentees,
    )


async def load_mentor_profiles(
    session: AsyncSession,
) -> tuple[list[MentorProfile], dict[int, MentorOffer]]:
    """Return the profiles of every active offer, and the offers by mentor id."""
    offers = await active_offers(session)
    mentor_ids = [offer.user_id for offer in offers]
    active = await count_active_mentees(session, mentor_ids)
    pending = await count_pending_requests(session, mentor_ids)
    profiles = [
        profile_of(offer, active.get(offer.user_id, 0), pending.get(offer.user_id, 0))
        for offer in offers
    ]
    return profiles, {offer.user_id: offer for offer in offers}


async def asked_mentor_ids(session: AsyncSession, request_id: int) -> set[int]:
    """Return every mentor already asked for this request, whatever they answered."""
    rows = await session.scalars(
        select(RequestAttempt.mentor_id).where(RequestAttempt.request_id == request_id)
    )
    return set(rows)


def help_request_of(
    request_id: int,
    created_at: datetime,
    need: NeedDetails | MentoringRequest,
    mentee_id: int,
    asked: Iterable[int] = (),
) -> HelpRequest:
    """Build the matching request; the mentee and the mentors already asked are excluded."""
    return HelpRequest(
        request_id=request_id,
        created_at=created_at,
        discipline=need.discipline,
        level=need.level,
        academy=need.academy,
        excluded_mentor_ids=frozenset({mentee_id, *asked}),
    )


async def mentor_cards(
    session: AsyncSession,
    ranking: Iterable[tuple[int, int, tuple[str, ...]]],
    offers: dict[int, MentorOffer],
) -> list[MentorCard]:
    """Return the cards of ranked (mentor_id, score, reasons), in ranking order."""
    ranked = list(ranking)
    names = await display_names(session, {mentor_id for mentor_id, _, _ in ranked})
    cards = []
    for mentor_id, score, reasons in ranked:
        offer = offers[mentor_id]
        cards.append(
            MentorCard(
                mentor_id=mentor_id,
                name=names.get(mentor_id, "?"),
                disciplines=tuple(offer.disciplines),
                levels=tuple(offer.levels),
                academy=offer.academy,
                presentation=offer.presentation,
                score=score,
                reasons=reasons,
            )
        )
    return cards
