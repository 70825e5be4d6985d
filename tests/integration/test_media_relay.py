"""Media through the server: a publisher aiortc peer, the signaling socket, the server's
host peer and media path, and viewer aiortc peers that decode what they receive."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from core.settings import MediaPath
from live.models import Live, LiveState
from recordings.models import Recording
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    MIN_DECODED_SHARE,
    PICTURE_FRAME_RATE,
    WINDOW_FRAMES,
    SignalingClient,
    count_window,
    running_live,
    start_publishing,
    start_watching,
)

# A viewer who joins a live in progress must see a picture this soon after its peer
# connects: its encoder on the server starts with a keyframe.
LATE_VIEWER_PICTURE_MAX_SECS = 2.0
# Loudness (RMS of s16 samples) above which the decoded audio is the tone, not silence;
# the tone's amplitude is 8000.
TONE_MIN_RMS = 1000.0

pytestmark = pytest.mark.slow


async def test_media_relay_viewers_decode_frames_sent(data_dir: Path) -> None:
    """Guards against a relay that drops or corrupts frames, a viewer who joins late and
    waits for a keyframe, and audio that does not reach viewers."""
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        first_client, first_viewer = await start_watching(setting, setting.viewer_cookie, publisher)
        await asyncio.wait_for(first_viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)

        decoded, audio_sent, audio_received = await count_window(first_viewer, publisher)
        assert decoded >= MIN_DECODED_SHARE * WINDOW_FRAMES
        assert audio_received >= MIN_DECODED_SHARE * audio_sent
        assert first_viewer.loudest_audio_rms > TONE_MIN_RMS

        # a second viewer joins the live in progress
        late_client, late_viewer = await start_watching(
            setting, setting.second_viewer_cookie, publisher
        )
        connected_at = time.monotonic()
        await asyncio.wait_for(late_viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)
        assert time.monotonic() - connected_at < LATE_VIEWER_PICTURE_MAX_SECS

        late_decoded, _, _ = await count_window(late_viewer, publisher)
        assert late_decoded >= MIN_DECODED_SHARE * WINDOW_FRAMES
        first_decoded, _, _ = await count_window(first_viewer, publisher)
        assert first_decoded >= MIN_DECODED_SHARE * WINDOW_FRAMES

        for client in (host, first_client, late_client):
            await client.close()
        for peer in (publisher, first_viewer, late_viewer):
            await peer.close()


@pytest.mark.parametrize("media_path", list(MediaPath))
async def test_media_relay_end_closes_live(data_dir: Path, media_path: MediaPath) -> None:
    """Guards against an `end` that leaves peers, the session or the recording running,
    or that some socket of the live never hears about, on either media path."""
    async with running_live(data_dir, media_path=media_path) as setting:
        host, publisher = await start_publishing(setting)
        client, viewer = await start_watching(setting, setting.viewer_cookie, publisher)
        await viewer.wait_for_frame_number(publisher.video.frames_sent + PICTURE_FRAME_RATE)
        waiting = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.second_viewer_cookie
        )
        assert waiting.welcome["state"] == "live"
        assert waiting.welcome["recording"]["status"] == "recording"

        await host.send({"type": "end"})
        for socket in (host, client, waiting):
            ended = await socket.until("state", state="ended")
            assert ended["started_at"] is not None
            assert ended["ended_at"] is not None

        assert setting.app.state.media.sessions == {}
        async with setting.database.session() as session:
            live = await session.get(Live, setting.live_id)
            assert live is not None
            assert live.state is LiveState.ENDED

        # the recording is finished into an on-demand video, and every socket hears of it
        await client.until("recording", status="processing")
        await client.until("recording", status="ready")
        async with setting.database.session() as session:
            recording = await session.scalar(
                select(Recording).where(Recording.live_id == setting.live_id)
            )
            assert recording is not None
            assert recording.duration_seconds is not None

        for socket in (host, client, waiting):
            await socket.close()
        await publisher.close()
        await viewer.close()
