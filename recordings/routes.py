"""Replay page, a recording's files through signed links, and the recording JSON APIs.

Replays are open to every logged-in member, registered for the live or not.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from chat.service import list_messages
from core.routing import Access, Route
from core.settings import Settings
from core.web import database_of, render, require_user, settings_of
from live.models import Live, LiveState
from recordings.links import (
    SIGNED_LINK_LIFETIME_SECS,
    LinkProblem,
    RecordingFile,
    check_link,
    signed_url,
)
from recordings.models import Recording, RecordingStatus
from recordings.service import file_path, latest_recording

logger = logging.getLogger(__name__)

LIVE_NOT_FOUND = "Ce live n'existe pas."
NOT_RECORDED = "Ce live n'a pas été enregistré."
FILE_NOT_FOUND = "Ce fichier n'existe pas ou le replay n'est pas encore prêt."
# Maps what is wrong with a file link to the sentence shown to the person.
LINK_MESSAGES = {
    LinkProblem.MISSING: "Ce lien n'est pas valide. Ouvrez la vidéo depuis la page du replay.",
    LinkProblem.INVALID: "Ce lien n'est pas valide. Ouvrez la vidéo depuis la page du replay.",
    LinkProblem.EXPIRED: (
        "Ce lien a expiré. Rechargez la page du replay pour en obtenir un nouveau."
    ),
}
MEDIA_TYPES = {RecordingFile.VIDEO: "video/mp4", RecordingFile.POSTER: "image/jpeg"}
# Browsers may keep a file for an hour; the link inside it stays signed and the file
# never changes once ready. "private": it is only served to logged-in members.
FILE_CACHE_CONTROL = "private, max-age=3600"


async def replay_page(request: Request) -> Response:
    await require_user(request)
    live_id: int = request.path_params["live_id"]
    async with database_of(request).session() as session:
        live = await _live_or_404(session, live_id)
        recording = await _replay_recording(session, live_id)
    return await render(
        request,
        "recordings/replay.html",
        {
            "live": live,
            "recording": recording,
            "replay_api": f"/api/lives/{live_id}/replay",
            "LiveState": LiveState,
        },
    )


async def recording_status(request: Request) -> Response:
    """Return the status of the live's latest recording, for the live page."""
    await require_user(request)
    live_id: int = request.path_params["live_id"]
    async with database_of(request).session() as session:
        await _live_or_404(session, live_id)
        recording = await latest_recording(session, live_id)
    return JSONResponse(_recording_json(settings_of(request), recording))


async def replay_data(request: Request) -> Response:
    """Return the replay's video and poster links, its duration, and the live's chat
    messages with their offset in seconds from the start of the recording."""
    await require_user(request)
    live_id: int = request.path_params["live_id"]
    async with database_of(request).session() as session:
        live = await _live_or_404(session, live_id)
        recording = await _replay_recording(session, live_id)
        if recording is None:
            raise HTTPException(404, NOT_RECORDED)
        body = _recording_json(settings_of(request), recording)
        # A recording of an ended live stays in status recording until its node finishes it.
        body["live_state"] = live.state.value
        if recording.status is RecordingStatus.READY:
            origin = _replay_origin(recording)
            body["started_at"] = _iso(origin)
            body["messages"] = [
                {
                    "seq": message.seq,
                    "author": {"id": message.author.id, "name": message.author.name},
                    "text": message.text,
                    "sent_at": _iso(message.created_at),
                    "offset_seconds": _offset_seconds(
                        message.created_at, origin, recording.duration_seconds
                    ),
                }
                for message in await list_messages(session, live.channel)
            ]
    return JSONResponse(body)


async def video_file(request: Request) -> Response:
    return await _serve_file(request, RecordingFile.VIDEO)


async def poster_file(request: Request) -> Response:
    return await _serve_file(request, RecordingFile.POSTER)


async def _serve_file(request: Request, file: RecordingFile) -> Response:
    """Serve a ready recording's file to a logged-in member holding a valid link.

    FileResponse handles Range requests (206, multipart/byteranges for several ranges,
    416 with the size when unsatisfiable) and honours If-Range.
    NOTE: Starlette 1.10 replies 400 to a Range header in a unit other than bytes, where
    RFC 9110 section 14.2 requires a server to ignore it and send the whole file.
    """
    user = await require_user(request)
    recording_id: int = request.path_params["recording_id"]
    settings = settings_of(request)
    problem = check_link(
        settings.secret_key,
        recording_id,
        file,
        request.query_params.get("expires"),
        request.query_params.get("signature"),
    )
    if problem is not None:
        logger.warning(
            "recording %s: %s link rejected for user %s: %s",
            recording_id,
            file.value,
            user.id,
            problem.value,
        )
        raise HTTPException(403, LINK_MESSAGES[problem])

    async with database_of(request).session() as session:
        recording = await session.get(Recording, recording_id)
    relative = None
    if recording is not None and recording.status is RecordingStatus.READY:
        relative = recording.video_path if file is RecordingFile.VIDEO else recording.poster_path
    if relative is None:
        raise HTTPException(404, FILE_NOT_FOUND)
    path = file_path(settings, relative)
    if not await asyncio.to_thread(path.is_file):
        logger.error("recording %s: ready but %s is missing", recording_id, path)
        raise HTTPException(404, FILE_NOT_FOUND)
    return FileResponse(
        path, media_type=MEDIA_TYPES[file], headers={"Cache-Control": FILE_CACHE_CONTROL}
    )


async def _live_or_404(session: AsyncSession, live_id: int) -> Live:
    live = await session.get(Live, live_id)
    if live is None:
        raise HTTPException(404, LIVE_NOT_FOUND)
    return live


async def _replay_recording(session: AsyncSession, live_id: int) -> Recording | None:
    """The recording a replay shows: the latest ready one, else the latest one, whose
    status the page then explains.

    TODO: a live resumed after an interruption has one recording per stretch. The
    replay shows only the latest until it can play the stretches one after another.
    """
    return await latest_recording(session, live_id, ready_only=True) or await latest_recording(
        session, live_id
    )


def _recording_json(settings: Settings, recording: Recording | None) -> dict[str, Any]:
    if recording is None:
        return {
            "recording_id": None,
            "status": None,
            "reason": None,
            "duration_seconds": None,
            "video_url": None,
            "poster_url": None,
        }
    ready = recording.status is RecordingStatus.READY
    return {
        "recording_id": recording.id,
        "status": recording.status.value,
        "reason": recording.failure_reason,
        "duration_seconds": recording.duration_seconds,
        "video_url": (
            signed_url(settings.secret_key, recording.id, RecordingFile.VIDEO) if ready else None
        ),
        "poster_url": (
            signed_url(settings.secret_key, recording.id, RecordingFile.POSTER)
            if ready and recording.poster_path
            else None
        ),
        "links_expire_in_seconds": SIGNED_LINK_LIFETIME_SECS if ready else None,
    }


def _replay_origin(recording: Recording) -> datetime:
    """Return the wall-clock time of the video's first frame."""
    if recording.started_at is not None:
        return recording.started_at
    # The recorder's start time was lost (a crash before it was stored): count back
    # from the end.
    if recording.ended_at is not None and recording.duration_seconds is not None:
        return recording.ended_at - timedelta(seconds=recording.duration_seconds)
    return recording.created_at


def _offset_seconds(sent_at: datetime, origin: datetime, duration: float | None) -> float:
    """Seconds from the video's start to a message, kept within the video: a message
    written in the lobby before the first frame shows from the start."""
    offset = max(0.0, (sent_at - origin).total_seconds())
    if duration is not None:
        offset = min(offset, duration)
    return round(offset, 3)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


routes = [
    Route("/lives/{live_id:id}/replay", replay_page, access=Access.MEMBER, name="replay"),
    Route(
        "/api/lives/{live_id:id}/recording",
        recording_status,
        access=Access.MEMBER,
        name="recording_status",
    ),
    Route("/api/lives/{live_id:id}/replay", replay_data, access=Access.MEMBER, name="replay_data"),
    Route(
        "/recordings/{recording_id:id}/video.mp4",
        video_file,
        access=Access.SIGNED_LINK,
        name="recording_video",
    ),
    Route(
        "/recordings/{recording_id:id}/poster.jpg",
        poster_file,
        access=Access.SIGNED_LINK,
        name="recording_poster",
    ),
]
