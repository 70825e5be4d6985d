"""Live tables: the live itself, registrations and calendar feed tokens."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy import Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from accounts.models import User
from core.database import Base, UTCDateTime, utc_now

# The largest live id: `id` is an Integer column, 32 bits on PostgreSQL. A larger
# number names no live, and a database driver rejects it as a query parameter.
LIVE_ID_MAX = 2**31 - 1


class LiveState(enum.StrEnum):
    """scheduled -> open (lobby, host testing the camera) -> live -> ended;
    scheduled or open -> cancelled; live -> interrupted when its media process died."""

    SCHEDULED = "scheduled"
    OPEN = "open"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


def _enum_column(enum_type: type[enum.StrEnum]) -> Enum:
    return Enum(
        enum_type,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class Live(Base):
    __tablename__ = "lives"

    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    duration_minutes: Mapped[int] = mapped_column(Integer)
    # The zone the host scheduled in; the iCalendar feed states times in it.
    time_zone: Mapped[str] = mapped_column(String(64), default="Europe/Paris")
    state: Mapped[LiveState] = mapped_column(_enum_column(LiveState), default=LiveState.SCHEDULED)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # When the host's media stopped reaching the live while it was live, until the host
    # publishes again. The media process writes it, so that a signaling socket on any
    # process can tell a new client that the host is away. Every state change clears it.
    host_away_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    # Incremented at each edit or cancellation, and stamped with `updated_at`, so that
    # calendar applications replace their copy of the event (iCalendar SEQUENCE).
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)

    # Never loaded implicitly: queries that show the host name ask for it with
    # selectinload(Live.host), so a forgotten load fails loudly instead of blocking.
    host: Mapped[User] = relationship(lazy="raise")

    @property
    def ends_at(self) -> datetime:
        return self.starts_at + timedelta(minutes=self.duration_minutes)

    @property
    def channel(self) -> str:
        """Name of the live's chat channel."""
        return f"live:{self.id}"


class Registration(Base):
    __tablename__ = "registrations"
    __table_args__ = (UniqueConstraint("live_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    live_id: Mapped[int] = mapped_column(ForeignKey("lives.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Removal(Base):
    """A person the host removed from a live: they lost their registration and may not
    register again."""

    __tablename__ = "live_removals"
    __table_args__ = (UniqueConstraint("live_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    live_id: Mapped[int] = mapped_column(ForeignKey("lives.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    removed_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class CalendarFeed(Base):
    """A person's private iCalendar feed; revoking it replaces the token."""

    __tablename__ = "calendar_feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
