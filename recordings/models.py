"""Recording table: one row per recorded stretch of a live."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.database import Base, UTCDateTime, utc_now


class RecordingStatus(enum.StrEnum):
    """recording -> processing -> ready, or failed from either of the first two."""

    RECORDING = "recording"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class Recording(Base):
    """A live's recording; a live resumed after an interruption gets one row per stretch.

    Paths are relative to `Settings.recordings_dir`, which every process of a deployment
    shares but may mount at a different place.
    """

    __tablename__ = "recordings"
    __table_args__ = (Index("ix_recordings_node_name_status", "node_name", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    live_id: Mapped[int] = mapped_column(ForeignKey("lives.id"), index=True)
    status: Mapped[RecordingStatus] = mapped_column(
        Enum(
            RecordingStatus,
            native_enum=False,
            length=16,
            values_callable=lambda members: [member.value for member in members],
        ),
        default=RecordingStatus.RECORDING,
    )
    # French sentence shown to people on the live and replay pages when status is failed.
    failure_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The server process that records (Settings.node_name); after a crash, that process
    # finishes its own recordings when it starts again.
    node_name: Mapped[str] = mapped_column(String(120))
    # The MPEG-TS file written while live; removed once the MP4 is ready.
    raw_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    video_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    poster_path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    # UTC wall clock of the first recorded frame: chat replay offsets are measured from it.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
