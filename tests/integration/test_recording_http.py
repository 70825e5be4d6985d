"""Replay page, recording files and recording JSON, driven in-process over ASGI.

The app contains the accounts routes (to log in), the recordings routes and server.py's
error handler, on a real SQLite database with a real finished recording.
"""

from __future__ import annotations

import email.utils
import html
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware

import accounts.routes
import recordings.routes
import server
from chat.models import ChannelEvent, EventKind
from core.database import Database, utc_now
from core.settings import Settings
from core.web import build_templates
from live.models import Live
from recordings import service
from recordings.links import RecordingFile, signed_url
from recordings.models import Recording, RecordingStatus
from tests.support.clients import csrf_from
from tests.support.recording_setup import (
    MEMBER_PASSWORD,
    SYNTHETIC_RAW_SECS,
    TEST_SECRET_KEY,
    create_live,
    create_member,
    open_database,
    recording_settings,
    write_synthetic_raw,
)


@dataclass
class ReadyRecording:
    id: int
    live: Live
    started_at: datetime
    video_bytes: bytes


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return recording_settings(data_dir)


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = await open_database(settings)
    yield db
    await db.dispose()


@pytest.fixture
def app(settings: Settings, database: Database) -> Starlette:
    application = Starlette(
        routes=[*accounts.routes.routes, *recordings.routes.routes],
        middleware=[Middleware(SessionMiddleware, secret_key=settings.secret_key)],
        exception_handlers={HTTPException: server.handle_http_error},
    )
    application.state.settings = settings
    application.state.database = database
    application.state.templates = build_templates()
    return application


@pytest.fixture
async def anonymous(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def ready(database: Database, settings: Settings) -> ReadyRecording:
    """A live hosted by Claire with a finished three-second recording."""
    host = await create_member(database, "claire@example.org", "Claire")
    live = await create_live(database, host)
    recording_id, raw_path = await service.begin_recording(database, settings, live.id)
    started_at = utc_now() - timedelta(minutes=30)
    write_synthetic_raw(raw_path, started_at)
    await service.finish_recording(database, settings, recording_id, None)
    async with database.session() as session:
        recording = await session.get(Recording, recording_id)
    assert recording is not None and recording.video_path is not None
    video_bytes = (settings.recordings_dir / recording.video_path).read_bytes()
    return ReadyRecording(recording_id, live, started_at, video_bytes)


@pytest.fixture
async def member(
    app: Starlette, database: Database, ready: ReadyRecording
) -> AsyncIterator[httpx.AsyncClient]:
    """A logged-in member who is neither the host nor registered for the live."""
    await create_member(database, "bruno@example.org", "Bruno")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await client.get("/login")
        response = await client.post(
            "/login",
            data={
                "csrf_token": csrf_from(page.text),
                "email": "bruno@example.org",
                "password": MEMBER_PASSWORD,
            },
        )
        assert response.status_code == 303
        yield client


def video_link(recording_id: int, now: float | None = None) -> str:
    return signed_url(TEST_SECRET_KEY, recording_id, RecordingFile.VIDEO, now=now)


# access


async def test_replay_page_redirects_anonymous_to_login(
    anonymous: httpx.AsyncClient, ready: ReadyRecording
) -> None:
    response = await anonymous.get(f"/lives/{ready.live.id}/replay")
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next=/lives/{ready.live.id}/replay"


async def test_replay_page_open_to_unregistered_member(
    member: httpx.AsyncClient, ready: ReadyRecording
) -> None:
    """Guards against restricting replays to the live's host and registered attendees."""
    response = await member.get(f"/lives/{ready.live.id}/replay")
    assert response.status_code == 200
    assert ready.live.title in response.text
    assert f'data-replay-api="/api/lives/{ready.live.id}/replay"' in response.text


async def test_replay_page_unknown_live_is_404(member: httpx.AsyncClient) -> None:
    response = await member.get("/lives/999/replay")
    assert response.status_code == 404
    assert "Ce live n'existe pas." in html.unescape(response.text)


@pytest.mark.parametrize(
    "path",
    ["/api/lives/{live}/recording", "/api/lives/{live}/replay"],
)
async def test_recording_api_rejects_anonymous(
    anonymous: httpx.AsyncClient, ready: ReadyRecording, path: str
) -> None:
    response = await anonymous.get(path.format(live=ready.live.id))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "http_401"


async def test_video_rejects_anonymous_with_valid_link(
    anonymous: httpx.AsyncClient, ready: ReadyRecording
) -> None:
    """Guards against a signed link that lets anyone in without logging in."""
    response = await anonymous.get(video_link(ready.id))
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


# signed links


async def test_video_served_whole_to_member(
    member: httpx.AsyncClient, ready: ReadyRecording
) -> None:
    response = await member.get(video_link(ready.id))
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == str(len(ready.video_bytes))
    assert response.headers["cache-control"].startswith("private")
    assert response.content == ready.video_bytes


async def test_video_rejects_expired_link(member: httpx.AsyncClient, ready: ReadyRecording) -> None:
    expired = video_link(ready.id, now=datetime(2020, 1, 1).timestamp())
    response = await member.get(expired)
    assert response.status_code == 403
    assert "Ce lien a expiré." in html.unescape(response.text)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda url: re.sub(r"signature=[^&]+", "signature=AAAA", url), id="signature"),
        pytest.param(
            lambda url: re.sub(r"expires=(\d+)", lambda m: f"expires={int(m[1]) + 3600}", url),
            id="expires",
        ),
        pytest.param(lambda url: url.split("?")[0], id="missing-query"),
        pytest.param(lambda url: url.replace("video.mp4", "poster.jpg"), id="other-file"),
        pytest.param(lambda url: re.sub(r"/recordings/\d+/", "/recordings/7/", url), id="other-id"),
    ],
)
async def test_video_rejects_tampered_link(
    member: httpx.AsyncClient, ready: ReadyRecording, tamper: Callable[[str], str]
) -> None:
    response = await member.get(tamper(video_link(ready.id)))
    assert response.status_code == 403
    assert "Ce lien n'est pas valide." in html.unescape(response.text)


async def test_poster_served_as_jpeg(member: httpx.AsyncClient, ready: ReadyRecording) -> None:
    link = signed_url(TEST_SECRET_KEY, ready.id, RecordingFile.POSTER)
    response = await member.get(link)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content.startswith(b"\xff\xd8")


async def test_video_of_unfinished_recording_is_404(
    member: httpx.AsyncClient, database: Database, settings: Settings, ready: ReadyRecording
) -> None:
    recording_id, _ = await service.begin_recording(database, settings, ready.live.id)
    response = await member.get(video_link(recording_id))
    assert response.status_code == 404


# Range requests (RFC 9110 section 14)


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        pytest.param("bytes=0-99", 0, 99, id="single"),
        pytest.param("bytes=100-", 100, None, id="open-ended"),
        pytest.param("bytes=-100", -100, None, id="suffix"),
        pytest.param("bytes=50-999999999", 50, None, id="end-past-size"),
        pytest.param("bytes=0-0", 0, 0, id="first-byte"),
    ],
)
async def test_video_range_returns_partial_content(
    member: httpx.AsyncClient, ready: ReadyRecording, header: str, first: int, last: int | None
) -> None:
    size = len(ready.video_bytes)
    start = first if first >= 0 else size + first
    end = last if last is not None else size - 1

    response = await member.get(video_link(ready.id), headers={"Range": header})

    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{size}"
    assert response.headers["content-length"] == str(end - start + 1)
    assert response.content == ready.video_bytes[start : end + 1]


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("bytes={size}-", id="start-at-size"),
        pytest.param("bytes={beyond}-{far}", id="past-end"),
        pytest.param("bytes=-0", id="empty-suffix"),
    ],
)
async def test_video_unsatisfiable_range_is_416(
    member: httpx.AsyncClient, ready: ReadyRecording, header: str
) -> None:
    size = len(ready.video_bytes)
    range_header = header.format(size=size, beyond=size + 10, far=size + 20)

    response = await member.get(video_link(ready.id), headers={"Range": range_header})

    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"


@pytest.mark.parametrize("header", ["items=0-9", "pages=1-2", "BYTES0-9"])
async def test_video_range_in_another_unit_sends_whole_file(
    member: httpx.AsyncClient, ready: ReadyRecording, header: str
) -> None:
    """Guards against a 400 for a Range unit the server does not know. Under RFC 9110
    section 14.2 a server ignores such a header and sends the whole file."""
    response = await member.get(video_link(ready.id), headers={"Range": header})

    assert response.status_code == 200
    assert response.content == ready.video_bytes


async def test_video_multiple_ranges_are_multipart(
    member: httpx.AsyncClient, ready: ReadyRecording
) -> None:
    size = len(ready.video_bytes)

    response = await member.get(video_link(ready.id), headers={"Range": "bytes=0-9,20-29"})

    assert response.status_code == 206
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1].encode()
    assert response.headers["content-length"] == str(len(response.content))
    assert response.content.endswith(b"--" + boundary + b"--")
    parts = response.content.split(b"--" + boundary + b"\r\n")
    assert parts[0] == b""
    assert len(parts) == 3
    for part, (start, end) in zip(parts[1:], [(0, 9), (20, 29)], strict=True):
        head, content = part.split(b"\r\n\r\n", 1)
        assert b"Content-Type: video/mp4" in head
        assert f"Content-Range: bytes {start}-{end}/{size}".encode() in head
        assert content[: end - start + 1] == ready.video_bytes[start : end + 1]
        assert content[end - start + 1 :].startswith(b"\r\n")


async def test_if_range_current_etag_gives_range(
    member: httpx.AsyncClient, ready: ReadyRecording
) -> None:
    whole = await member.get(video_link(ready.id))
    etag = whole.headers["etag"]

    response = await member.get(
        video_link(ready.id), headers={"Range": "bytes=0-99", "If-Range": etag}
    )

    assert response.status_code == 206
    assert response.content == ready.video_bytes[:100]


async def test_if_range_current_date_gives_range(
    member: httpx.AsyncClient, ready: ReadyRecording
) -> None:
    whole = await member.get(video_link(ready.id))
    last_modified = whole.headers["last-modified"]
    assert email.utils.parsedate_to_datetime(last_modified) is not None

    response = await member.get(
        video_link(ready.id), headers={"Range": "bytes=0-99", "If-Range": last_modified}
    )

    assert response.status_code == 206


@pytest.mark.parametrize(
    "validator",
    [
        pytest.param('"stale-etag"', id="stale-etag"),
        pytest.param('W/"weak-etag"', id="weak-etag"),
        pytest.param("Wed, 01 Jan 2020 00:00:00 GMT", id="stale-date"),
    ],
)
async def test_if_range_mismatch_gives_whole_file(
    member: httpx.AsyncClient, ready: ReadyRecording, validator: str
) -> None:
    """Guards against splicing a range of a changed file onto an old copy (RFC 9110
    section 13.1.5: a failed If-Range condition means the whole representation)."""
    response = await member.get(
        video_link(ready.id), headers={"Range": "bytes=0-99", "If-Range": validator}
    )
    assert response.status_code == 200
    assert response.content == ready.video_bytes


# JSON


async def test_recording_status_of_ready_recording(
    member: httpx.AsyncClient, ready: ReadyRecording
) -> None:
    response = await member.get(f"/api/lives/{ready.live.id}/recording")
    assert response.status_code == 200
    body = response.json()
    assert body["recording_id"] == ready.id
    assert body["status"] == "ready"
    assert body["reason"] is None
    assert abs(body["duration_seconds"] - SYNTHETIC_RAW_SECS) < 0.5
    video = await member.get(body["video_url"])
    assert video.status_code == 200
    poster = await member.get(body["poster_url"])
    assert poster.status_code == 200


async def test_status_of_unrecorded_live(member: httpx.AsyncClient, database: Database) -> None:
    host = await create_member(database, "dora@example.org", "Dora")
    live = await create_live(database, host)
    response = await member.get(f"/api/lives/{live.id}/recording")
    assert response.status_code == 200
    assert response.json()["status"] is None
    replay = await member.get(f"/api/lives/{live.id}/replay")
    assert replay.status_code == 404


async def test_failed_recording_status_has_reason(
    member: httpx.AsyncClient, database: Database, settings: Settings, ready: ReadyRecording
) -> None:
    recording_id, _ = await service.begin_recording(database, settings, ready.live.id)
    await service.finish_recording(database, settings, recording_id, None)

    body = (await member.get(f"/api/lives/{ready.live.id}/recording")).json()

    assert body["recording_id"] == recording_id
    assert body["status"] == RecordingStatus.FAILED.value
    assert body["reason"] == service.EMPTY_REASON
    assert body["video_url"] is None


async def test_replay_json_offsets_from_recording_start(
    member: httpx.AsyncClient, database: Database, ready: ReadyRecording
) -> None:
    """Guards against chat offsets measured from the live's scheduled start instead of
    the first recorded frame, and against replaying deleted messages."""
    channel = ready.live.channel
    host_id = ready.live.host_id
    events = [
        # seq, kind, seconds after the recording's start, text, deleted
        (1, EventKind.MESSAGE, -60.0, "Bonsoir, on commence bientôt ?", False),
        (2, EventKind.MESSAGE, 1.5, "Bienvenue à toutes et à tous", False),
        (3, EventKind.MESSAGE, 2.0, "message supprimé", True),
        (4, EventKind.DELETION, 2.2, "", False),
        (5, EventKind.MESSAGE, 2.75, "Merci pour la carte mentale !", False),
    ]
    async with database.session() as session:
        for seq, kind, seconds, text, deleted in events:
            session.add(
                ChannelEvent(
                    channel=channel,
                    seq=seq,
                    kind=kind,
                    author_id=host_id,
                    client_id=f"c-{seq}" if kind is EventKind.MESSAGE else None,
                    text=text,
                    deleted_seq=3 if kind is EventKind.DELETION else None,
                    deleted=deleted,
                    created_at=ready.started_at + timedelta(seconds=seconds),
                )
            )
        await session.commit()

    response = await member.get(f"/api/lives/{ready.live.id}/replay")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["started_at"] == ready.started_at.isoformat().replace("+00:00", "Z")
    assert abs(body["duration_seconds"] - SYNTHETIC_RAW_SECS) < 0.5
    assert body["video_url"].startswith(f"/recordings/{ready.id}/video.mp4?expires=")
    assert body["poster_url"].startswith(f"/recordings/{ready.id}/poster.jpg?expires=")
    messages = body["messages"]
    assert [message["seq"] for message in messages] == [1, 2, 5]
    assert [message["offset_seconds"] for message in messages] == [0.0, 1.5, 2.75]
    assert [message["text"] for message in messages] == [
        "Bonsoir, on commence bientôt ?",
        "Bienvenue à toutes et à tous",
        "Merci pour la carte mentale !",
    ]
    assert messages[1]["author"] == {"id": host_id, "name": "Claire"}
