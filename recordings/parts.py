"""A live recorded in several parts, one Recording per stretch between interruptions:
which process finishes each part, and the one video that replays them all.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import av
from sqlalchemy import select, update

from core.database import Database
from core.settings import Settings
from live.models import Live, LiveState
from recordings.joining import IncompatiblePartsError, RecordingPart, join_parts
from recordings.models import Recording, RecordingStatus

logger = logging.getLogger(__name__)

# File names inside a recording's folder, as in recordings.service.
VIDEO_FILE_NAME = "video.mp4"
# The whole live as one video, in the folder of its last ready part, once it has several.
JOINED_FILE_NAME = "joined.mp4"


async def claim_recording(
    database: Database, recording_id: int, owner: str, new_owner: str
) -> bool:
    """Move a recording of `owner` from status recording to processing under
    `new_owner`, in one conditional update; return whether this call did it."""
    async with database.session() as session:
        result = await session.execute(
            update(Recording)
            .where(
                Recording.id == recording_id,
                Recording.node_name == owner,
                Recording.status == RecordingStatus.RECORDING,
            )
            .values(node_name=new_owner, status=RecordingStatus.PROCESSING)
        )
        await session.commit()
    return bool(getattr(result, "rowcount", 0) == 1)


async def join_if_complete(database: Database, settings: Settings, live_id: int) -> None:
    """Once the live has ended and none of its recordings is unfinished, join its ready
    parts into one video that its last ready Recording points to.

    That row then covers the whole live: `started_at` becomes the first part's, so chat
    replay offsets stay measured from the first recorded frame. The other rows keep
    their own part. A failed join is logged and leaves each part as it was.
    """
    async with database.session() as session:
        live = await session.get(Live, live_id)
        if live is None or live.state is not LiveState.ENDED:
            return
        recordings = (
            await session.scalars(
                select(Recording).where(Recording.live_id == live_id).order_by(Recording.id)
            )
        ).all()
    unfinished = {RecordingStatus.RECORDING, RecordingStatus.PROCESSING}
    if any(recording.status in unfinished for recording in recordings):
        return
    ready = [
        recording
        for recording in recordings
        if recording.status is RecordingStatus.READY and recording.started_at is not None
    ]
    if len(ready) < 2:
        return

    # NOTE: two processes that finish the last two parts at the same moment may both
    # join. Each writes the same file from the same parts, through its own partial file.
    starts = [recording.started_at for recording in ready if recording.started_at is not None]
    first_started_at = starts[0]
    parts = [
        RecordingPart(
            settings.recordings_dir / str(recording.id) / VIDEO_FILE_NAME,
            (started_at - first_started_at).total_seconds(),
        )
        for recording, started_at in zip(ready, starts, strict=True)
    ]
    last = ready[-1]
    joined_path = settings.recordings_dir / str(last.id) / JOINED_FILE_NAME
    try:
        duration = await asyncio.to_thread(join_parts, parts, joined_path)
    except (IncompatiblePartsError, OSError, av.FFmpegError) as error:
        # a part with other streams than the first (no sound, say) cannot be joined
        logger.error(
            "live %s: recordings %s not joined, the replay shows only the last part: %s",
            live_id,
            [recording.id for recording in ready],
            error,
        )
        return

    async with database.session() as session:
        recording = await session.get(Recording, last.id)
        if recording is None:
            return
        recording.video_path = str(joined_path.relative_to(settings.recordings_dir))
        recording.started_at = first_started_at
        recording.duration_seconds = duration
        recording.ended_at = first_started_at + timedelta(seconds=duration)
        await session.commit()
    logger.info(
        "live %s: recordings %s joined into recording %s, %.1f s",
        live_id,
        [recording.id for recording in ready],
        last.id,
        duration,
    )
