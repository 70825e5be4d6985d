"""Account tables."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base, UTCDateTime, utc_now
from core.settings import DEFAULT_TIME_ZONE


class Role(enum.StrEnum):
    TEACHER = "teacher"
    OPERATOR = "operator"


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stored lower-cased, so that log-in is case-insensitive on every backend.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=Role.TEACHER,
    )
    time_zone: Mapped[str] = mapped_column(String(64), default=DEFAULT_TIME_ZONE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    # Raised at each log-out and password change; a session cookie that carries an
    # older version no longer logs anyone in (core.web.current_user).
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class RateLimitEvent(Base):
    """One counted attempt (a failed log-in, a password reset e-mail) under a key.

    The key is an HMAC of what is limited, such as an e-mail address or a client
    address, so that the table keeps neither.
    """

    __tablename__ = "rate_limit_events"
    __table_args__ = (Index("ix_rate_limit_events_key_created", "key", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, index=True)


class PasswordReset(Base):
    """A link sent to reset a forgotten password: single use, valid until `expires_at`.

    Only the SHA-256 of the link's token is stored, so that a copy of the database
    opens no account.
    """

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Set when the link was used, or when a newer link or a reset made it useless.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
