"""Chat tables: the event log of every channel and each channel's sequence counter."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base, UTCDateTime, utc_now

CHANNEL_NAME_MAX_CHARS = 64
CLIENT_ID_MAX_CHARS = 64
# The largest seq a channel can reach: `seq` is an Integer column, 32 bits on
# PostgreSQL. A larger number names no event, and a database driver rejects it as a
# query parameter (SQLite above 2**63 - 1 with OverflowError).
SEQ_MAX = 2**31 - 1


class EventKind(enum.StrEnum):
    MESSAGE = "message"
    DELETION = "deletion"
    # Moderation: a person may no longer send, may send again, and the slow mode set.
    MUTE = "mute"
    UNMUTE = "unmute"
    SLOW_MODE = "slow_mode"


class ModerationAction(enum.StrEnum):
    """A moderator's action, as the moderation log records it."""

    DELETE = "delete"
    MUTE = "mute"
    UNMUTE = "unmute"
    SLOW_MODE = "slow_mode"
    # The channel's owner removed the person, such as the host from a live.
    REMOVE = "remove"


def _enum_column(enum_type: type[enum.StrEnum]) -> Enum:
    return Enum(
        enum_type,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class ChannelCounter(Base):
    """The last sequence number given out on a channel.

    Incrementing this row is the first write of the transaction that stores an event,
    so the row lock (PostgreSQL) or the database write lock (SQLite) orders the
    writers of one channel and a rolled-back event leaves no gap.
    """

    __tablename__ = "chat_channels"

    channel: Mapped[str] = mapped_column(String(CHANNEL_NAME_MAX_CHARS), primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)
    # The slow mode: each participant who does not moderate may send one message per
    # this many seconds; 0 turns it off.
    slow_mode_secs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ChannelEvent(Base):
    """One change to a channel: a message, or the deletion of an earlier message.

    A deleted message keeps its row, so its `seq` stays taken, but loses its text.
    """

    __tablename__ = "chat_events"
    __table_args__ = (
        UniqueConstraint("channel", "seq"),
        # Deletions have no client_id, and NULLs never collide in a unique
        # constraint on SQLite or PostgreSQL, so this only binds messages.
        UniqueConstraint(
            "channel", "author_id", "client_id", name="uq_chat_events_channel_author_client"
        ),
        # The rate limit counts one author's recent messages on one channel.
        Index("ix_chat_events_channel_author_created", "channel", "author_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(CHANNEL_NAME_MAX_CHARS))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[EventKind] = mapped_column(
        Enum(
            EventKind,
            native_enum=False,
            length=16,
            values_callable=lambda members: [member.value for member in members],
        )
    )
    # The message's author, or the person who deleted the message.
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    client_id: Mapped[str | None] = mapped_column(String(CLIENT_ID_MAX_CHARS), nullable=True)
    text: Mapped[str] = mapped_column(Text, default="")
    # For a deletion: the seq of the message it deletes.
    deleted_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # For a message: whether a later deletion event removed it.
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    # For a mute or an unmute: the person it applies to (`author_id` is the moderator).
    subject_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    # For a slow mode change: the new interval in seconds, 0 for off.
    interval_secs: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ChannelMute(Base):
    """A person whom a moderator stopped from sending on a channel, until unmuted."""

    __tablename__ = "chat_mutes"
    __table_args__ = (UniqueConstraint("channel", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(CHANNEL_NAME_MAX_CHARS))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    muted_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class ModerationRecord(Base):
    """One entry of a channel's moderation log, which its moderators read."""

    __tablename__ = "chat_moderation_log"
    __table_args__ = (Index("ix_chat_moderation_log_channel_created", "channel", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(String(CHANNEL_NAME_MAX_CHARS))
    action: Mapped[ModerationAction] = mapped_column(_enum_column(ModerationAction))
    moderator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # The person the action applies to: the author of a deleted message, the person
    # muted, unmuted or removed; None for a slow mode change.
    target_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    # The seq of the deleted message.
    target_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The slow mode's new interval in seconds.
    interval_secs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
