"""The HLS stream of a live with a real aiortc publisher. The viewer beyond the WebRTC
cap is sent to HLS, the playlists appear, and the segments decode to the publisher's
numbered pictures and its audio. The links are refused to strangers, and when expired,
altered or used for another live. Waits poll the server with a deadline and count
frames; none sleeps a fixed time."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame

import signaling.hls
from signaling.encoding import OPUS_FRAME_MILLISECONDS
from signaling.hls_links import hls_link_prefix
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    PICTURE_FRAME_RATE,
    LiveSetting,
    SignalingClient,
    Viewer,
    read_frame_number,
    running_live,
    start_publishing,
    start_watching,
)

pytestmark = pytest.mark.slow

# The secret key of running_live's server.
SECRET_KEY = "test-secret"
# Segments decoded per variant: about 4 s of picture.
SEGMENTS_DECODED = 2
SEGMENT_LINE = re.compile(r"^(high|low)-\d+\.m4s$", re.MULTILINE)
# The files of an ended live go this soon in the test, instead of after 30 s.
TEST_REMOVE_AFTER_END_SECS = 0.2


async def poll(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Return the first true result of `check()`, called every 50 ms, or fail after
    EVENT_TIMEOUT_SECS."""
    deadline = time.monotonic() + EVENT_TIMEOUT_SECS
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {EVENT_TIMEOUT_SECS} s waiting for {what}")
        await asyncio.sleep(0.05)


def client_of(setting: LiveSetting, cookie: str | None) -> httpx.AsyncClient:
    headers = {"Cookie": cookie} if cookie else {}
    return httpx.AsyncClient(base_url=setting.base_url, headers=headers, timeout=10.0)


async def ready_link(client: httpx.AsyncClient, live_id: int) -> dict[str, Any]:
    async def fetch() -> dict[str, Any] | None:
        response = await client.get(f"/api/lives/{live_id}/hls")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if body["ready"] else None

    link: dict[str, Any] = await poll(fetch, "the master playlist")
    return link


async def media_playlist(client: httpx.AsyncClient, url: str, segments: int) -> str:
    async def fetch() -> str | None:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        return response.text if len(SEGMENT_LINE.findall(response.text)) >= segments else None

    text: str = await poll(fetch, f"{segments} segments in {url}")
    return text


@dataclass
class DecodedStream:
    """What a file of the stream decodes to."""

    frame_numbers: list[int] = field(default_factory=list)
    frame_pts: list[int] = field(default_factory=list)
    audio_frames: int = 0
    audio_codec: str = ""


def decode(path: Path) -> DecodedStream:
    decoded = DecodedStream()
    with av.open(str(path)) as container:
        decoded.audio_codec = container.streams.audio[0].codec_context.name
        for frame in container.decode(*container.streams.video, *container.streams.audio):
            if isinstance(frame, VideoFrame):
                decoded.frame_numbers.append(read_frame_number(frame))
                decoded.frame_pts.append(frame.pts if frame.pts is not None else -1)
            elif isinstance(frame, AudioFrame):
                decoded.audio_frames += 1
    return decoded


async def download(client: httpx.AsyncClient, prefix: str, names: list[str], path: Path) -> None:
    """Write the files `names` of the stream one after the other into `path`."""
    with path.open("wb") as output:
        for name in names:
            response = await client.get(prefix + name)
            assert response.status_code == 200, name
            output.write(response.content)


def segment_names(playlist: str, quality: str) -> list[str]:
    return re.findall(rf"^{quality}-\d+\.m4s$", playlist, re.MULTILINE)


def segment_index(name: str) -> int:
    return int(name.rsplit("-", 1)[1].split(".", maxsplit=1)[0])


async def test_viewer_beyond_cap_gets_live_full(tmp_path: Path) -> None:
    async with running_live(tmp_path, max_webrtc_viewers=1) as setting:
        host, publisher = await start_publishing(setting)
        first_client, first_viewer = await start_watching(setting, setting.viewer_cookie, publisher)
        second = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.second_viewer_cookie
        )
        second_viewer = Viewer(publisher.video)
        await second.send({"type": "watch", "sdp": await second_viewer.offer()})
        error = await second.recv_type("error")

        assert error["code"] == "live_full"
        assert "léger différé" in error["message"]
        assert len(setting.app.state.media.sessions[setting.live_id].viewers) == 1

        # the socket stays open and the first viewer's place frees a WebRTC one
        await first_client.close()
        await first_viewer.close()
        await poll(
            lambda: _no_viewers(setting),
            "the first viewer's peer to close",
        )
        await second_viewer.close()
        retried_viewer = Viewer(publisher.video)
        answer = await second.request_answer("watch", await retried_viewer.offer())
        await retried_viewer.accept(answer)
        await asyncio.wait_for(retried_viewer.connected.wait(), EVENT_TIMEOUT_SECS)
        for closable in (second, retried_viewer, host, publisher):
            await closable.close()


async def _no_viewers(setting: LiveSetting) -> bool:
    return not setting.app.state.media.sessions[setting.live_id].viewers


async def test_hls_segments_decode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signaling.hls, "REMOVE_AFTER_END_SECS", TEST_REMOVE_AFTER_END_SECS)
    async with running_live(tmp_path, max_webrtc_viewers=0) as setting:
        host, publisher = await start_publishing(setting)
        async with client_of(setting, setting.viewer_cookie) as client:
            link = await ready_link(client, setting.live_id)
            master = await client.get(link["master_url"])

            assert master.status_code == 200
            assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
            assert master.headers["cache-control"] == "public, max-age=1"
            assert 'CODECS="avc1.42e01f,opus"' in master.text
            assert "RESOLUTION=640x360" in master.text
            assert "RESOLUTION=320x180" in master.text

            for quality in ("high", "low"):
                playlist = await media_playlist(
                    client, link["link_prefix"] + f"{quality}.m3u8", SEGMENTS_DECODED + 1
                )
                assert f'#EXT-X-MAP:URI="{quality}-init.mp4"' in playlist
                names = SEGMENT_LINE.findall(playlist)
                assert set(names) == {quality}

                segments = segment_names(playlist, quality)[:SEGMENTS_DECODED]
                response = await client.get(link["link_prefix"] + segments[0])
                cache_control = response.headers["cache-control"]
                assert cache_control.startswith("public, max-age=")
                assert cache_control.endswith(", immutable")
                joined = tmp_path / f"{quality}.mp4"
                await download(
                    client, link["link_prefix"], [f"{quality}-init.mp4", *segments], joined
                )
                decoded = await asyncio.to_thread(decode, joined)

                # two segments of about 1.9 s each at 20 frames per second
                assert len(decoded.frame_numbers) >= PICTURE_FRAME_RATE
                # in the order sent, none twice
                assert decoded.frame_numbers == sorted(set(decoded.frame_numbers))
                assert decoded.audio_codec == "opus"
                # at least a second of 60 ms Opus packets
                assert decoded.audio_frames >= 1000 // OPUS_FRAME_MILLISECONDS

        await host.send({"type": "end"})
        await host.until("state", state="ended")
        live_dir = tmp_path / "hls" / str(setting.live_id)
        await poll(lambda: _gone(live_dir), "the ended live's HLS files to go")
        for closable in (host, publisher):
            await closable.close()


async def _gone(path: Path) -> bool:
    return not await asyncio.to_thread(path.exists)


async def test_hls_links_refused(tmp_path: Path) -> None:
    async with running_live(tmp_path, max_webrtc_viewers=0) as setting:
        live_id = setting.live_id
        async with client_of(setting, None) as anonymous:
            response = await anonymous.get(f"/api/lives/{live_id}/hls")
            assert response.status_code == 401
        async with client_of(setting, setting.viewer_cookie) as viewer:
            response = await viewer.get(f"/api/lives/{live_id}/hls")
            assert response.status_code == 409, "not on air yet"

        host, publisher = await start_publishing(setting)
        async with client_of(setting, setting.stranger_cookie) as stranger:
            response = await stranger.get(f"/api/lives/{live_id}/hls")
            assert response.status_code == 403
            assert "Inscrivez-vous" in response.json()["error"]["message"]

        async with client_of(setting, setting.viewer_cookie) as viewer:
            link = await ready_link(viewer, live_id)
        async with client_of(setting, None) as anyone:
            # the link alone opens the files, as an HTTP cache fetches them
            response = await anyone.get(link["master_url"])
            assert response.status_code == 200

            expired, _ = hls_link_prefix(SECRET_KEY, live_id, now=time.time() - 3600)
            response = await anyone.get(expired + "master.m3u8")
            assert response.status_code == 403
            assert "expiré" in response.text
            assert response.headers["cache-control"] == "no-store"

            other_live, _ = hls_link_prefix(SECRET_KEY, live_id + 1)
            response = await anyone.get(
                other_live.replace(f"/hls/{live_id + 1}/", f"/hls/{live_id}/") + "master.m3u8"
            )
            assert response.status_code == 403

            prefix = link["link_prefix"]
            later = str(link["expires_at"] + 3600)
            altered = prefix.replace(f"/{link['expires_at']}/", f"/{later}/")
            response = await anyone.get(altered + "master.m3u8")
            assert response.status_code == 403
            assert "pas valide" in response.text

            forged, _ = hls_link_prefix("another-key", live_id)
            response = await anyone.get(forged + "master.m3u8")
            assert response.status_code == 403

            for name in ("secret_key", "master.m3u8.tmp", "high-x.m4s"):
                response = await anyone.get(prefix + name)
                assert response.status_code == 404, name
        for closable in (host, publisher):
            await closable.close()


async def test_hls_continues_after_host_returns(tmp_path: Path) -> None:
    """Guards against a stream whose timestamps jump back when the host publishes again
    from a new peer, whose picture numbers and timestamps start from 0."""
    async with running_live(tmp_path, max_webrtc_viewers=0) as setting:
        host, publisher = await start_publishing(setting)
        async with client_of(setting, setting.viewer_cookie) as client:
            link = await ready_link(client, setting.live_id)
            playlist_url = link["link_prefix"] + "high.m3u8"
            before = await media_playlist(client, playlist_url, 2)
            last_before = segment_index(segment_names(before, "high")[-1])

            await host.close()
            await publisher.close()
            host, publisher = await start_publishing(setting)

            async def two_segments_later() -> str | None:
                response = await client.get(playlist_url)
                names = segment_names(response.text, "high")
                return response.text if segment_index(names[-1]) >= last_before + 2 else None

            after: str = await poll(two_segments_later, "two segments after the host returned")
            names = segment_names(after, "high")
            joined = tmp_path / "high.mp4"
            await download(client, link["link_prefix"], ["high-init.mp4", *names], joined)
            decoded = await asyncio.to_thread(decode, joined)

        # one restart of the picture numbers, where the new publisher begins
        numbers = decoded.frame_numbers
        restarts = [
            index for index in range(1, len(numbers)) if numbers[index] < numbers[index - 1]
        ]
        assert len(restarts) == 1, numbers
        assert len(numbers) - restarts[0] >= PICTURE_FRAME_RATE
        # the stream's timestamps go on increasing across it
        pts = decoded.frame_pts
        assert all(later > earlier for earlier, later in itertools.pairwise(pts)), pts
        for closable in (host, publisher):
            await closable.close()
