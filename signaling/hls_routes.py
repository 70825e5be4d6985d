"""The HLS stream over HTTP: a signed link for a live's host and registered attendees,
and the stream's files for anyone holding a valid link (docs/protocol.md, "HLS stream").

The files need no session cookie, so that an HTTP cache or CDN in front of the service
can store and serve them. The signed link is their only credential, and the cache
keeps each file for no longer than its link stays valid.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from core.routing import Access, Route
from core.web import database_of, require_user, settings_of
from live.access import live_role
from live.models import Live, LiveState
from recordings.links import LinkProblem
from signaling.hls_links import (
    HLS_FILE_NAME,
    HLS_LINK_REFRESH_MARGIN_SECS,
    check_hls_link,
    hls_link_prefix,
)
from signaling.hls_muxer import MASTER_PLAYLIST

logger = logging.getLogger(__name__)

# Playlists change with every segment (about every 2 s): a cache may reuse one for a
# second, half a segment, so that players still see each new segment in time.
PLAYLIST_CACHE_CONTROL = "public, max-age=1"
# A segment never changes once written, but its URL stops working when its link
# expires, so a cache keeps it until then and no longer.
SEGMENT_CACHE_CONTROL = "public, max-age={seconds}, immutable"
# Errors are not stored: a playlist missing now appears a moment later.
ERROR_CACHE_CONTROL = "no-store"
# Maps each file extension to its media type: HLS playlists, and the ISO base media
# file format of the initialization and media segments.
MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
}

LIVE_NOT_FOUND = "Ce live n'existe pas."
NOT_REGISTERED = "Inscrivez-vous à ce live pour le suivre."
NOT_LIVE = "Le live n'est pas en cours."
FILE_NOT_FOUND = "Ce fichier du live n'existe pas ou plus."
# Maps what is wrong with a link to the sentence sent with the 403.
LINK_MESSAGES = {
    LinkProblem.MISSING: "Ce lien vers le live n'est pas valide. Rechargez la page du live.",
    LinkProblem.INVALID: "Ce lien vers le live n'est pas valide. Rechargez la page du live.",
    LinkProblem.EXPIRED: "Ce lien vers le live a expiré. Rechargez la page du live.",
}


async def hls_link(request: Request) -> Response:
    """Return a signed link to the live's master playlist for its host or a registered
    attendee, whether the stream has started, and when to ask for a new link."""
    user = await require_user(request)
    live_id: int = request.path_params["live_id"]
    async with database_of(request).session() as session:
        live = await session.get(Live, live_id)
        if live is None:
            raise HTTPException(404, LIVE_NOT_FOUND)
        role = await live_role(session, live, user.id)
    if role is None:
        logger.warning("HLS link rejected: live=%s user=%s not registered", live_id, user.id)
        raise HTTPException(403, NOT_REGISTERED)
    if live.state is not LiveState.LIVE:
        raise HTTPException(409, NOT_LIVE)

    settings = settings_of(request)
    now = time.time()
    prefix, expires = hls_link_prefix(settings.secret_key, live_id, now=now)
    master = settings.hls_dir / str(live_id) / MASTER_PLAYLIST
    ready = await asyncio.to_thread(master.is_file)
    return JSONResponse(
        {
            "master_url": prefix + MASTER_PLAYLIST,
            "link_prefix": prefix,
            "ready": ready,
            "expires_at": expires,
            "refresh_in_seconds": max(1, int(expires - now) - HLS_LINK_REFRESH_MARGIN_SECS),
        },
        headers={"Cache-Control": ERROR_CACHE_CONTROL},
    )


async def hls_file(request: Request) -> Response:
    """Serve one file of the live's stream to the holder of a valid link."""
    live_id: int = request.path_params["live_id"]
    expires: str = request.path_params["expires"]
    name: str = request.path_params["name"]
    settings = settings_of(request)
    now = time.time()

    problem = check_hls_link(
        settings.secret_key, live_id, expires, request.path_params["signature"], now=now
    )
    if problem is not None:
        logger.warning("HLS link rejected: live=%s file=%s: %s", live_id, name, problem.value)
        return _error(403, LINK_MESSAGES[problem])
    if HLS_FILE_NAME.fullmatch(name) is None:
        return _error(404, FILE_NOT_FOUND)

    path = settings.hls_dir / str(live_id) / name
    # Read at once rather than streamed: a segment is a few hundred kilobytes, and the
    # muxer may delete it or replace a playlist between a stat and a later read.
    content = await asyncio.to_thread(_read_or_none, path)
    if content is None:
        return _error(404, FILE_NOT_FOUND)
    if path.suffix == ".m3u8":
        cache_control = PLAYLIST_CACHE_CONTROL
    else:
        cache_control = SEGMENT_CACHE_CONTROL.format(seconds=max(0, int(expires) - int(now)))
    return Response(
        content, media_type=MEDIA_TYPES[path.suffix], headers={"Cache-Control": cache_control}
    )


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _error(status_code: int, message: str) -> Response:
    return Response(
        message,
        status_code=status_code,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": ERROR_CACHE_CONTROL},
    )


routes = [
    Route("/api/lives/{live_id:id}/hls", hls_link, access=Access.LIVE_PARTICIPANT, name="hls_link"),
    Route(
        "/hls/{live_id:id}/{expires}/{signature}/{name}",
        hls_file,
        access=Access.TOKEN,
        name="hls_file",
    ),
]
