"""Mentoring tables: mentor offers, help requests and the mentors asked in turn,
mentorships with their private conversation, notifications and batch runs."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base, UTCDateTime, utc_now

# Conversation ids are random, so that an id seen once tells nothing about others:
# 16 characters of the URL-safe base64 alphabet carry 96 random bits.
CONVERSATION_ID_CHARS = 16
CONVERSATION_PREFIX = "conversation"


def _enum_column(enum_type: type[enum.StrEnum]) -> Enum:
    return Enum(
        enum_type,
        native_enum=False,
        length=24,
        values_callable=lambda members: [member.value for member in members],
    )


class OfferStatus(enum.StrEnum):
    """active <-> paused; active or paused -> withdrawn; withdrawn -> active by a new offer."""

    ACTIVE = "active"
    PAUSED = "paused"
    WITHDRAWN = "withdrawn"


class RequestStatus(enum.StrEnum):
    """pending (a mentor is asked) -> matched; pending -> waiting (no mentor left,
    until the next batch) -> matched by the batch; pending or waiting -> cancelled."""

    PENDING = "pending"
    WAITING = "waiting"
    MATCHED = "matched"
    CANCELLED = "cancelled"


# A help request in one of these states still counts as the mentee's open request.
OPEN_REQUEST_STATUSES = frozenset({RequestStatus.PENDING, RequestStatus.WAITING})


class AttemptOutcome(enum.StrEnum):
    """How one mentor asked for one request answered: pending -> accepted, declined,
    timed_out, or withdrawn (the mentee cancelled, or the mentor withdrew the offer)."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    TIMED_OUT = "timed_out"
    WITHDRAWN = "withdrawn"


class MentorshipStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class NotificationKind(enum.StrEnum):
    # to the new teacher
    REQUEST_ACCEPTED = "request_accepted"
    DECLINED_PASSED_ON = "declined_passed_on"
    TIMED_OUT_PASSED_ON = "timed_out_passed_on"
    WAITING_FOR_BATCH = "waiting_for_batch"
    MATCHED_BY_BATCH = "matched_by_batch"
    # to the mentor
    NEW_REQUEST = "new_request"
    NEW_MENTEE_BY_BATCH = "new_mentee_by_batch"
    REQUEST_WITHDRAWN = "request_withdrawn"
    # to the other member
    MENTORSHIP_ENDED = "mentorship_ended"


class EmailState(enum.StrEnum):
    """pending -> sending -> sent; sending -> pending again after a failed attempt, or
    failed after the last one; pending -> skipped when no SMTP server is configured."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


class MentorOffer(Base):
    """A teacher's offer to mentor; one per teacher, edited in place."""

    __tablename__ = "mentor_offers"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    # Ids from mentoring.catalog, in the catalog's order.
    disciplines: Mapped[list[str]] = mapped_column(JSON)
    levels: Mapped[list[str]] = mapped_column(JSON)
    academy: Mapped[str] = mapped_column(String(40))
    presentation: Mapped[str] = mapped_column(Text, default="")
    # How many mentees at once, counting the requests waiting for this mentor's answer.
    capacity: Mapped[int] = mapped_column(Integer)
    status: Mapped[OfferStatus] = mapped_column(
        _enum_column(OfferStatus), default=OfferStatus.ACTIVE, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class MentoringRequest(Base):
    """A new teacher's request for a mentor, passed from mentor to mentor until one
    accepts, the ranking runs out (then it waits for a batch) or the teacher cancels."""

    __tablename__ = "mentoring_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    mentee_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # Equal to mentee_id while the request is open, NULL once it is closed: the unique
    # constraint allows one open request per teacher on every backend, and NULLs
    # never collide.
    open_for_mentee_id: Mapped[int | None] = mapped_column(Integer, unique=True, nullable=True)
    discipline: Mapped[str] = mapped_column(String(40))
    level: Mapped[str] = mapped_column(String(40))
    academy: Mapped[str] = mapped_column(String(40))
    need: Mapped[str] = mapped_column(Text)
    status: Mapped[RequestStatus] = mapped_column(_enum_column(RequestStatus), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class RequestAttempt(Base):
    """One mentor asked for one request, and the answer; a request has at most one
    pending attempt, and the mentors of its earlier attempts are never asked again."""

    __tablename__ = "mentoring_attempts"
    __table_args__ = (
        # The timeout sweep looks for pending attempts past their deadline.
        Index("ix_mentoring_attempts_outcome_deadline", "outcome", "deadline_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("mentoring_requests.id"), index=True)
    mentor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # The score and French reasons the ranking gave when this mentor was asked.
    score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome: Mapped[AttemptOutcome] = mapped_column(
        _enum_column(AttemptOutcome), default=AttemptOutcome.PENDING
    )
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Mentorship(Base):
    """An accepted request: a mentor, a mentee and their private conversation."""

    __tablename__ = "mentorships"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The key of the chat channel `conversation:<conversation_id>`.
    conversation_id: Mapped[str] = mapped_column(String(CONVERSATION_ID_CHARS), unique=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("mentoring_requests.id"), unique=True)
    mentor_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    mentee_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    status: Mapped[MentorshipStatus] = mapped_column(
        _enum_column(MentorshipStatus), default=MentorshipStatus.ACTIVE
    )
    # True when an operator's batch formed the pair, false when the mentor accepted.
    by_batch: Mapped[bool] = mapped_column(default=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    # The highest seq of the conversation each member has seen, for unread counts.
    mentor_read_seq: Mapped[int] = mapped_column(Integer, default=0)
    mentee_read_seq: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def channel(self) -> str:
        return f"{CONVERSATION_PREFIX}:{self.conversation_id}"

    def is_member(self, user_id: int) -> bool:
        return user_id in (self.mentor_id, self.mentee_id)

    def other_member(self, user_id: int) -> int:
        return self.mentee_id if user_id == self.mentor_id else self.mentor_id


class Notification(Base):
    """A French notice shown in a teacher's notifications list and sent by e-mail."""

    __tablename__ = "mentoring_notifications"
    __table_args__ = (
        Index("ix_mentoring_notifications_user_created", "user_id", "created_at"),
        # The e-mail sweep looks for notifications whose e-mail is still to be sent.
        Index("ix_mentoring_notifications_email_state", "email_state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[NotificationKind] = mapped_column(_enum_column(NotificationKind))
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("mentoring_requests.id"), nullable=True
    )
    mentorship_id: Mapped[int | None] = mapped_column(ForeignKey("mentorships.id"), nullable=True)
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    email_state: Mapped[EmailState] = mapped_column(
        _enum_column(EmailState), default=EmailState.PENDING
    )
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the current attempt started; a `sending` claim older than the sweep's
    # stale limit belonged to a process that died, and is taken over.
    email_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class BatchRun(Base):
    """One run of the start-of-year batch assignment, by an operator or the CLI."""

    __tablename__ = "mentoring_batch_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The operator who started it from the page; NULL from the command line.
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    requests_count: Mapped[int] = mapped_column(Integer, default=0)
    matched_count: Mapped[int] = mapped_column(Integer, default=0)
    total_score: Mapped[int] = mapped_column(Integer, default=0)
