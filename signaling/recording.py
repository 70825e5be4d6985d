"""The recording of a media session, through the recordings package.

The session gives the recorder two tracks of its own from the live's media path, never
the host's own tracks, so that stopping the recorder stops nothing else. On the
encode-once path the video track yields the high layer's H.264 packets, which a
PacketRecorder muxes without encoding them again. On the relay path the tracks are
relay subscriptions with private copies of the decoded frames.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from core.database import Database
from core.settings import Settings
from recordings import service
from recordings.recorder import LiveRecorder, PacketRecorder, RecordingError
from recordings.service import StatusListener

logger = logging.getLogger(__name__)


class Recordings:
    """The recordings package as the media sessions of one process use it."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings

    def subscribe(self, listener: StatusListener) -> None:
        service.add_status_listener(listener)

    def unsubscribe(self, listener: StatusListener) -> None:
        service.remove_status_listener(listener)

    async def adopt(self, live_id: int, dead_node: str) -> list[int]:
        """Finish on this process the recordings of `live_id` that the dead node
        `dead_node` left in status recording; return their ids."""
        return await service.adopt_recordings(self.database, self.settings, live_id, dead_node)

    def join_in_background(self, live_id: int) -> None:
        """Start joining the live's finished recordings into one replay video, for a
        live that ended without a recording to finish."""
        service.join_in_background(self.database, self.settings, live_id)

    async def latest_status(self, live_id: int) -> dict[str, Any]:
        """Return the `recording` object of the welcome frame: the status of the live's
        latest recording and its French failure reason, both None when it has none."""
        async with self.database.session() as session:
            recording = await service.latest_recording(session, live_id)
        if recording is None:
            return {"status": None, "reason": None}
        return {"status": recording.status.value, "reason": recording.failure_reason}


class LiveRecording:
    """One recorded stretch of a live: its Recording row, its recorder and the two
    tracks the recorder reads. Logged as `LiveRecording(<recording id>)`."""

    def __init__(self, recordings: Recordings, live_id: int) -> None:
        self.recordings = recordings
        self.live_id = live_id
        self.recording_id: int | None = None
        self._recorder: LiveRecorder | None = None
        self._tracks: list[MediaStreamTrack] = []
        self._started_monotonic: float | None = None

    def __repr__(self) -> str:
        return f"LiveRecording({self.recording_id})"

    async def start(
        self, video: MediaStreamTrack, audio: MediaStreamTrack, *, video_packets: bool
    ) -> None:
        """Create the Recording row (which notifies the status listeners) and start the
        recorder on `video` and `audio`, which it stops when it stops. With
        `video_packets` the video track yields H.264 packets rather than frames."""
        self._tracks = [video, audio]
        self.recording_id, path = await service.begin_recording(
            self.recordings.database, self.recordings.settings, self.live_id
        )
        recorder_class = PacketRecorder if video_packets else LiveRecorder
        self._recorder = recorder_class(self.live_id, path)
        await self._recorder.start(video, audio)
        self._started_monotonic = time.monotonic()
        logger.info("%r live=%s: recording to %s", self, self.live_id, path)

    async def stop(self, until_now: bool = True) -> datetime | None:
        """Stop the recorder, which flushes and closes its file; return the UTC time of
        its first frame, or None when it wrote none. With `until_now`, the file lasts
        until this call; without it, the file ends at its last frame."""
        recorder, self._recorder = self._recorder, None
        try:
            if recorder is not None:
                await recorder.stop(until_now)
        except RecordingError as error:
            # the recorder logged it; finishing turns what was written into a video or
            # marks the recording failed
            logger.warning("%r live=%s: the recorder had failed: %s", self, self.live_id, error)
        finally:
            for track in self._tracks:
                track.stop()
        if recorder is None:
            return None
        logger.info(
            "%r live=%s: stopped after %.1f s",
            self,
            self.live_id,
            time.monotonic() - (self._started_monotonic or time.monotonic()),
        )
        return recorder.started_at

    def finish_in_background(self, started_at: datetime | None) -> None:
        """Start turning the recording into an on-demand video; the recordings package
        supervises the task and waits for it at shutdown."""
        if self.recording_id is None:
            return
        service.finish_in_background(
            self.recordings.database, self.recordings.settings, self.recording_id, started_at
        )
