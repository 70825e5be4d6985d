"""Recording lifecycle: begin, finish into an on-demand video, recover after a crash,
and tell listeners about each status change.

The signaling package calls `begin_recording` when the host's media arrives, records
with `recordings.recorder.LiveRecorder`, then calls `finish_recording` (or
`finish_in_background`) when the live ends. server.py calls `recover_interrupted` at
start and `wait_for_finishing` at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.database import Database, utc_now
from core.settings import Settings
from live.lifecycle import transition
from live.models import Live, LiveState
from recordings.finishing import EmptyRecordingError, FinishedMedia, finish_media
from recordings.models import Recording, RecordingStatus
from recordings.writer import read_started_at, started_at_path

logger = logging.getLogger(__name__)

# Maps each status to the statuses it may change to.
ALLOWED_STATUS_CHANGES: dict[RecordingStatus, frozenset[RecordingStatus]] = {
    RecordingStatus.RECORDING: frozenset({RecordingStatus.PROCESSING, RecordingStatus.FAILED}),
    RecordingStatus.PROCESSING: frozenset({RecordingStatus.READY, RecordingStatus.FAILED}),
    RecordingStatus.READY: frozenset(),
    RecordingStatus.FAILED: frozenset(),
}

# File names inside a recording's folder, `<recordings_dir>/<recording id>/`.
RAW_FILE_NAME = "raw.ts"
VIDEO_FILE_NAME = "video.mp4"
POSTER_FILE_NAME = "poster.jpg"

# At shutdown, finishing tasks get this long to complete before they are cancelled.
# A cancelled one stays in status processing, and the next start of this node finishes
# it again from the raw file, which is only removed once the MP4 is ready.
FINISH_SHUTDOWN_TIMEOUT_SECS = 20.0
# The agenda's "Replays récents" section lists at most this many replays.
RECENT_REPLAYS_LIMIT = 12

EMPTY_REASON = "L'enregistrement est vide : aucune image ni aucun son n'a été reçu."
MISSING_FILE_REASON = "Le fichier de l'enregistrement est introuvable sur le serveur."
FINISH_FAILED_REASON = "La préparation de la vidéo a échoué à cause d'une erreur du serveur."

# Called with (live id, recording id, new status, French failure reason or None).
StatusListener = Callable[[int, int, RecordingStatus, str | None], None]

# Listeners called after every status change made by this process, in the order added.
_status_listeners: list[StatusListener] = []
# Finishing tasks started by this process; wait_for_finishing awaits or cancels them.
_finishing_tasks: set[asyncio.Task[None]] = set()


class InvalidStatusChangeError(RuntimeError):
    def __init__(
        self, recording_id: int, current: RecordingStatus, requested: RecordingStatus
    ) -> None:
        allowed = sorted(status.value for status in ALLOWED_STATUS_CHANGES[current])
        super().__init__(
            f"recording {recording_id}: cannot change from {current.value} to "
            f"{requested.value}; allowed: {allowed}"
        )
        self.recording_id = recording_id
        self.current = current
        self.requested = requested


def add_status_listener(listener: StatusListener) -> None:
    """Call `listener` after each committed status change; it must not block, and an
    exception it raises is logged and ignored."""
    _status_listeners.append(listener)


def remove_status_listener(listener: StatusListener) -> None:
    if listener in _status_listeners:
        _status_listeners.remove(listener)


def file_path(settings: Settings, relative: str) -> Path:
    """Return the absolute path of a file named in a Recording row."""
    return settings.recordings_dir / relative


async def begin_recording(database: Database, settings: Settings, live_id: int) -> tuple[int, Path]:
    """Create a Recording in status recording for this node; return its id and the path
    of the raw file to record into (its folder exists)."""
    async with database.session() as session:
        recording = Recording(
            live_id=live_id, status=RecordingStatus.RECORDING, node_name=settings.node_name
        )
        session.add(recording)
        await session.flush()
        recording.raw_path = f"{recording.id}/{RAW_FILE_NAME}"
        raw_path = file_path(settings, recording.raw_path)
        await asyncio.to_thread(raw_path.parent.mkdir, parents=True, exist_ok=True)
        await session.commit()

    logger.info("recording %s of live %s: begun on %s", recording.id, live_id, settings.node_name)
    _notify(live_id, recording.id, RecordingStatus.RECORDING, None)
    return recording.id, raw_path


async def finish_recording(
    database: Database, settings: Settings, recording_id: int, started_at: datetime | None
) -> None:
    """Turn the raw file into an MP4 with a poster and a duration: status processing,
    then ready, or failed with a French reason (logged with the exception).

    `started_at` is the recorder's first-frame time; None reads it from beside the raw
    file, where the recorder stored it. Also finishes a recording left in processing.
    """
    # processing
    async with database.session() as session:
        recording = await _load(session, recording_id)
        if recording.status is not RecordingStatus.PROCESSING:
            _change_status(recording, RecordingStatus.PROCESSING)
        live_id = recording.live_id
        raw_relative = recording.raw_path
        await session.commit()
    _notify(live_id, recording_id, RecordingStatus.PROCESSING, None)

    # remux, poster and duration, in a thread: a long live takes seconds of file I/O
    folder = settings.recordings_dir / str(recording_id)
    video_path = folder / VIDEO_FILE_NAME
    poster_path = folder / POSTER_FILE_NAME
    try:
        if raw_relative is None:
            raise FileNotFoundError(f"recording {recording_id} has no raw file")
        raw_path = file_path(settings, raw_relative)
        if started_at is None:
            started_at = await asyncio.to_thread(read_started_at, raw_path)
        if started_at is None and not await asyncio.to_thread(raw_path.exists):
            # The recorder creates both files at its first frame: it never had one.
            raise EmptyRecordingError(f"{raw_path}: no frame was recorded")
        media = await asyncio.to_thread(finish_media, raw_path, video_path, poster_path)
    except Exception as error:  # every failure must end in status failed, never stuck in processing
        reason = _failure_reason(error)
        logger.error(
            "recording %s of live %s: finishing failed: %s",
            recording_id,
            live_id,
            error,
            exc_info=error,
        )
        await _mark_failed(database, recording_id, reason)
        return

    # ready
    await _mark_ready(
        database,
        settings,
        recording_id,
        started_at=started_at,
        media=media,
        video_path=video_path,
        poster_path=poster_path,
    )
    await asyncio.to_thread(_remove_raw_files, raw_path)
    logger.info(
        "recording %s of live %s: ready, %.1f s",
        recording_id,
        live_id,
        media.duration_seconds,
    )
    _notify(live_id, recording_id, RecordingStatus.READY, None)


async def fail_recording(database: Database, recording_id: int, reason: str) -> None:
    """Mark a recording failed with `reason`, a French sentence shown to people, for a
    caller that gives up on it (for example after `LiveRecorder.stop()` raised)."""
    logger.warning("recording %s: marked failed by its owner: %s", recording_id, reason)
    await _mark_failed(database, recording_id, reason)


def finish_in_background(
    database: Database, settings: Settings, recording_id: int, started_at: datetime | None
) -> asyncio.Task[None]:
    """Run `finish_recording` as a task that `wait_for_finishing` awaits at shutdown."""
    return _track(
        finish_recording(database, settings, recording_id, started_at),
        f"finish-recording-{recording_id}",
    )


async def recover_interrupted(database: Database, settings: Settings) -> None:
    """Mark the lives this node was recording when its process died as interrupted, and
    start finishing their recordings from what was written.

    Returns once the lives are marked; finishing runs in background tasks, which
    `wait_for_finishing` awaits. Recordings left in processing are finished again.
    """
    async with database.session() as session:
        unfinished = (
            await session.scalars(
                select(Recording)
                .where(
                    Recording.node_name == settings.node_name,
                    Recording.status.in_([RecordingStatus.RECORDING, RecordingStatus.PROCESSING]),
                )
                .order_by(Recording.id)
            )
        ).all()
        for recording in unfinished:
            live = await session.get(Live, recording.live_id)
            if live is not None and live.state is LiveState.LIVE:
                await transition(session, live, LiveState.INTERRUPTED)

    for recording in unfinished:
        logger.warning(
            "recording %s of live %s: left in status %s by a previous process of %s; finishing it",
            recording.id,
            recording.live_id,
            recording.status.value,
            settings.node_name,
        )
        finish_in_background(database, settings, recording.id, None)


async def wait_for_finishing(timeout_secs: float = FINISH_SHUTDOWN_TIMEOUT_SECS) -> None:
    """Wait up to `timeout_secs` for this process's finishing tasks, then cancel the rest."""
    tasks = set(_finishing_tasks)
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout_secs)
    for task in pending:
        logger.warning(
            "%s: still running after %.0f s; cancelled, the next start finishes it again",
            task.get_name(),
            timeout_secs,
        )
        task.cancel()
    if pending:
        await asyncio.wait(pending)


async def latest_recording(
    session: AsyncSession, live_id: int, *, ready_only: bool = False
) -> Recording | None:
    """Return the live's most recent recording, or its most recent ready one."""
    query = select(Recording).where(Recording.live_id == live_id)
    if ready_only:
        query = query.where(Recording.status == RecordingStatus.READY)
    return await session.scalar(query.order_by(Recording.id.desc()).limit(1))


async def recent_replays(session: AsyncSession, *, limit: int = RECENT_REPLAYS_LIMIT) -> list[Live]:
    """Return up to `limit` ended lives that have a ready recording, the last to end
    first, with their hosts loaded."""
    ready = select(Recording.live_id).where(Recording.status == RecordingStatus.READY)
    lives = await session.scalars(
        select(Live)
        .options(selectinload(Live.host))
        .where(Live.state == LiveState.ENDED, Live.id.in_(ready))
        # ended_at is set by every move to ended; starts_at orders rows written without it
        .order_by(func.coalesce(Live.ended_at, Live.starts_at).desc(), Live.id.desc())
        .limit(limit)
    )
    return list(lives)


def _track(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(work, name=name)
    _finishing_tasks.add(task)
    task.add_done_callback(_on_finishing_done)
    return task


def _on_finishing_done(task: asyncio.Task[None]) -> None:
    _finishing_tasks.discard(task)
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        # finish_recording turns media errors into status failed; this is a database
        # error or a bug, and the recording stays for the next start to retry.
        logger.error("%s failed", task.get_name(), exc_info=error)


async def _load(session: AsyncSession, recording_id: int) -> Recording:
    recording = await session.get(Recording, recording_id)
    if recording is None:
        raise LookupError(f"recording {recording_id} does not exist")
    return recording


def _change_status(recording: Recording, new_status: RecordingStatus) -> None:
    if new_status not in ALLOWED_STATUS_CHANGES[recording.status]:
        raise InvalidStatusChangeError(recording.id, recording.status, new_status)
    logger.debug("recording %s: %s -> %s", recording.id, recording.status.value, new_status.value)
    recording.status = new_status


async def _mark_failed(database: Database, recording_id: int, reason: str) -> None:
    async with database.session() as session:
        recording = await _load(session, recording_id)
        _change_status(recording, RecordingStatus.FAILED)
        recording.failure_reason = reason
        recording.ended_at = recording.ended_at or utc_now()
        live_id = recording.live_id
        await session.commit()
    _notify(live_id, recording_id, RecordingStatus.FAILED, reason)


async def _mark_ready(
    database: Database,
    settings: Settings,
    recording_id: int,
    *,
    started_at: datetime | None,
    media: FinishedMedia,
    video_path: Path,
    poster_path: Path,
) -> None:
    async with database.session() as session:
        recording = await _load(session, recording_id)
        _change_status(recording, RecordingStatus.READY)
        recording.video_path = str(video_path.relative_to(settings.recordings_dir))
        recording.poster_path = (
            str(poster_path.relative_to(settings.recordings_dir)) if media.has_poster else None
        )
        recording.duration_seconds = media.duration_seconds
        recording.started_at = recording.started_at or started_at
        if recording.started_at is not None:
            recording.ended_at = recording.started_at + timedelta(seconds=media.duration_seconds)
        else:
            recording.ended_at = utc_now()
        recording.raw_path = None
        await session.commit()


def _remove_raw_files(raw_path: Path) -> None:
    """Remove the raw recording and its start time, once the MP4 replaces them."""
    raw_path.unlink(missing_ok=True)
    started_at_path(raw_path).unlink(missing_ok=True)


def _failure_reason(error: Exception) -> str:
    if isinstance(error, EmptyRecordingError):
        return EMPTY_REASON
    if isinstance(error, FileNotFoundError):
        return MISSING_FILE_REASON
    return FINISH_FAILED_REASON


def _notify(live_id: int, recording_id: int, status: RecordingStatus, reason: str | None) -> None:
    for listener in list(_status_listeners):
        try:
            listener(live_id, recording_id, status, reason)
        except Exception:  # a broken listener must not stop the recording
            logger.exception(
                "recording %s of live %s: status listener %r failed on %s",
                recording_id,
                live_id,
                listener,
                status.value,
            )
