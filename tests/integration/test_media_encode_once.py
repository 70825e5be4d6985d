"""The encode-once media path with real aiortc peers: viewers share the live's encoders,
picture loss reports are rate-limited, and viewers move between layers and keep
decoding. Waits count frames or watch server counters; none sleeps a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.sdp import SessionDescription

from signaling.aiortc_hooks import SharedPacketizer
from signaling.broadcast import LiveBroadcast
from signaling.encoding import Quality
from signaling.keyframes import KeyframeCounts
from signaling.media import LiveMediaSession
from signaling.media_fanout import EncodeOnceFanout
from signaling.quality import QualityThresholds
from signaling.viewer_media import EncodeOnceViewer
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    PICTURE_FRAME_RATE,
    PICTURE_HEIGHT,
    PICTURE_WIDTH,
    LiveSetting,
    Publisher,
    SignalingClient,
    Viewer,
    rtc_configuration,
    running_live,
    start_publishing,
    start_watching,
)

# Frames counted per viewer: three seconds of picture.
WINDOW_FRAMES = 3 * PICTURE_FRAME_RATE
MIN_DECODED_SHARE = 2 / 3
# A declared bandwidth too small for the high layer of a 640x360 live (506 kbit/s of
# video and 64 kbit/s of audio).
SLOW_LINK_KBPS = 300
LOW_SIZE = (PICTURE_WIDTH // 2, PICTURE_HEIGHT // 2)
# The publisher's 640x360 picture is the high layer as it is, and the low one is half.
HIGH_SIZE = (PICTURE_WIDTH, PICTURE_HEIGHT)
# Every fourth video packet lost: a link bad enough for a move down at the first report.
LOSSY_LINK_DROP_EVERY = 4
# A viewer who joins must decode a picture sent within 2 s of its connection.
LATE_VIEWER_PICTURE_MAX_FRAMES = 2 * PICTURE_FRAME_RATE
# How long a viewer's reports stay clean before a move up, shortened for the test.
TEST_UP_WAIT_SECS = 2.0

pytestmark = pytest.mark.slow


def session_of(setting: LiveSetting) -> LiveMediaSession:
    session: LiveMediaSession = setting.app.state.media.sessions[setting.live_id]
    return session


def broadcast_of(setting: LiveSetting) -> LiveBroadcast:
    fanout = session_of(setting).fanout
    assert isinstance(fanout, EncodeOnceFanout)
    return fanout.broadcast


def server_viewers(setting: LiveSetting) -> list[EncodeOnceViewer]:
    viewers = []
    for viewer in session_of(setting).viewers.values():
        assert isinstance(viewer.media, EncodeOnceViewer)
        viewers.append(viewer.media)
    return viewers


def keyframe_counts(setting: LiveSetting, quality: Quality) -> KeyframeCounts:
    policy = broadcast_of(setting).video_feeds[quality].policy
    assert policy is not None
    return policy.counts


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Return once `condition()` is true; it is checked every few milliseconds."""
    deadline = time.monotonic() + EVENT_TIMEOUT_SECS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {EVENT_TIMEOUT_SECS} s waiting for {what}")
        await asyncio.sleep(0.01)


async def decoded_share(viewer: Viewer, publisher: Publisher) -> float:
    """Return the share of the next WINDOW_FRAMES frames sent that `viewer` decodes."""
    first = publisher.video.frames_sent
    last = first + WINDOW_FRAMES - 1
    await viewer.wait_for_frame_number(last + 1)
    return len(viewer.numbers_between(first, last)) / WINDOW_FRAMES


async def watch_all(
    setting: LiveSetting, publisher: Publisher, bandwidths: list[int | None]
) -> tuple[list[SignalingClient], list[Viewer]]:
    clients, viewers = [], []
    cookies = [setting.viewer_cookie, setting.second_viewer_cookie]
    for index, bandwidth in enumerate(bandwidths):
        client, viewer = await start_watching(
            setting, cookies[index % 2], publisher, bandwidth_kbps=bandwidth
        )
        clients.append(client)
        viewers.append(viewer)
    for viewer in viewers:
        await asyncio.wait_for(viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)
    return clients, viewers


async def close_all(clients: list[SignalingClient], peers: list[Any]) -> None:
    for client in clients:
        await client.close()
    for peer in peers:
        await peer.close()


async def test_encode_once_viewers_share_layer_encoders(data_dir: Any) -> None:
    """Guards against encoding per viewer: with five viewers on two layers, each source
    frame is encoded once per layer, and no viewer's sender encodes at all."""
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        bandwidths = [None, SLOW_LINK_KBPS, None, SLOW_LINK_KBPS, None]
        clients, viewers = await watch_all(setting, publisher, bandwidths)
        broadcast = broadcast_of(setting)

        # viewers start on the layer their declared bandwidth allows
        for viewer, bandwidth in zip(viewers, bandwidths, strict=True):
            assert viewer.frame_sizes[0] == (LOW_SIZE if bandwidth else HIGH_SIZE)

        counts_before = (
            broadcast.counts.video_frames_received - broadcast.counts.video_frames_skipped
        )
        encoded_before = {q: encoder.frames_encoded for q, encoder in broadcast.encoders.items()}
        shares = await asyncio.gather(*(decoded_share(viewer, publisher) for viewer in viewers))
        counts_after = (
            broadcast.counts.video_frames_received - broadcast.counts.video_frames_skipped
        )
        encoded = {
            quality: encoder.frames_encoded - encoded_before[quality]
            for quality, encoder in broadcast.encoders.items()
        }

        frames = counts_after - counts_before
        assert frames >= WINDOW_FRAMES
        # one encode per layer and frame; the frame in the encoder thread may be counted
        # on one side of the window only
        for quality in Quality:
            assert abs(encoded[quality] - frames) <= 1, (quality, encoded, frames)
        assert all(share >= MIN_DECODED_SHARE for share in shares), shares

        # each viewer's streams went out through a lean sender, from the payloads
        # computed once per packet; aiortc's own senders sent nothing
        for media in server_viewers(setting):
            assert media.video.packets_queued > 0
            assert set(media.lean_senders) == {"audio", "video"}
            for lean in media.lean_senders.values():
                assert lean.packets_sent > 0
        for viewer_peer in session_of(setting).viewers.values():
            for transceiver in viewer_peer.peer.pc.getTransceivers():
                sender: RTCRtpSender = transceiver.sender
                encoder = sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
                assert encoder is None or isinstance(encoder, SharedPacketizer)
                if encoder is not None:
                    assert encoder.packets_packed == 0

        await close_all([host, *clients], [publisher, *viewers])


async def test_encode_once_answer_offers_h264_only(data_dir: Any) -> None:
    """Guards against a viewer negotiating VP8, which the shared encoder does not make,
    and against a private aiortc hook that no longer sees the viewer's RTCP."""
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        clients, viewers = await watch_all(setting, publisher, [None])

        video = next(
            media
            for media in SessionDescription.parse(viewers[0].answer_sdp).media
            if media.kind == "video"
        )
        names = {codec.mimeType.lower() for codec in video.rtp.codecs}
        assert names == {"video/h264", "video/rtx"}
        h264 = next(codec for codec in video.rtp.codecs if codec.mimeType == "video/H264")
        assert h264.parameters["profile-level-id"] == "42e01f"
        assert h264.parameters["packetization-mode"] == "1"

        # the wrapped sender handler passes the viewer's receiver reports on
        media = server_viewers(setting)[0]
        await wait_until(lambda: media.feedback.receiver_reports >= 2, "receiver reports")
        await viewers[0].send_picture_loss()
        await wait_until(lambda: media.feedback.loss_reports >= 1, "a picture loss report")

        await close_all([host, *clients], [publisher, *viewers])


async def test_encode_once_vp8_only_offer_rejected(data_dir: Any) -> None:
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        client = await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
        pc = RTCPeerConnection(rtc_configuration())
        pc.addTransceiver("audio", direction="recvonly")
        video = pc.addTransceiver("video", direction="recvonly")
        video.setCodecPreferences(
            [
                codec
                for codec in RTCRtpSender.getCapabilities("video").codecs
                if codec.mimeType in {"video/VP8", "video/rtx"}
            ]
        )
        await pc.setLocalDescription(await pc.createOffer())
        await client.send({"type": "watch", "sdp": pc.localDescription.sdp})
        error = await client.recv_type("error")
        assert error["code"] == "invalid_sdp"
        assert "H.264" in error["message"]
        assert session_of(setting).viewers == {}
        await close_all([host, client], [publisher, pc])


async def test_encode_once_loss_reports_cost_one_keyframe(data_dir: Any) -> None:
    """Guards against each viewer's picture loss report forcing its own keyframe: five
    viewers reporting at once get one, which each of them receives."""
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        clients, viewers = await watch_all(setting, publisher, [None] * 5)
        broadcast = broadcast_of(setting)
        counts = keyframe_counts(setting, Quality.HIGH)
        encoder = broadcast.encoders[Quality.HIGH]

        # start the burst away from any keyframe: a keyframe, then 8 frames (0.4 s)
        keyframes_seen = counts.keyframes
        await wait_until(lambda: counts.keyframes > keyframes_seen, "a keyframe")
        frames_then = encoder.frames_encoded
        await wait_until(lambda: encoder.frames_encoded >= frames_then + 8, "8 frames")

        keyframes_before = counts.keyframes
        requested_before = counts.requested
        feedbacks = [media.feedback for media in server_viewers(setting)]
        reports_before = sum(feedback.loss_reports for feedback in feedbacks)
        await asyncio.gather(*(viewer.send_picture_loss() for viewer in viewers))
        await wait_until(
            lambda: sum(feedback.loss_reports for feedback in feedbacks) >= reports_before + 5,
            "five picture loss reports",
        )

        # within the next second (20 frames) comes exactly one keyframe; the periodic
        # one is not due before 1.9 s after the previous keyframe
        frames_then = encoder.frames_encoded
        await wait_until(
            lambda: encoder.frames_encoded >= frames_then + PICTURE_FRAME_RATE, "20 frames"
        )
        assert counts.keyframes - keyframes_before == 1
        assert counts.requested - requested_before == 1
        for viewer in viewers:
            assert await decoded_share(viewer, publisher) >= MIN_DECODED_SHARE

        await close_all([host, *clients], [publisher, *viewers])


async def test_encode_once_late_viewer_gets_keyframe(data_dir: Any) -> None:
    """Guards against a viewer who joins a live in progress without asking the shared
    encoder for a keyframe, or who waits longer than 2 s for its first picture."""
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        clients, viewers = await watch_all(setting, publisher, [None])
        counts = keyframe_counts(setting, Quality.HIGH)

        # join 4 frames (0.2 s) after a keyframe, so that the periodic one is 1.7 s away
        keyframes_seen = counts.keyframes
        await wait_until(lambda: counts.keyframes > keyframes_seen, "a keyframe")
        frames_then = publisher.video.frames_sent
        await wait_until(lambda: publisher.video.frames_sent >= frames_then + 4, "4 frames")
        requests_before = counts.requests
        late_client, late_viewer = await start_watching(
            setting, setting.second_viewer_cookie, publisher
        )
        sent_when_connected = publisher.video.frames_sent

        await asyncio.wait_for(late_viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)
        # the late viewer's track asked the shared encoder for a keyframe
        assert counts.requests > requests_before
        # its first picture was sent within 2 s of its connection
        first_number = late_viewer.frame_numbers[0]
        assert first_number - sent_when_connected <= LATE_VIEWER_PICTURE_MAX_FRAMES
        assert await decoded_share(late_viewer, publisher) >= MIN_DECODED_SHARE

        await close_all([host, *clients, late_client], [publisher, *viewers, late_viewer])


async def test_encode_once_viewer_moves_down_and_back(data_dir: Any) -> None:
    """Guards against a viewer whose link degrades and recovers losing the picture:
    moved to the low layer on loss, and back up once their reports are clean, they
    keep decoding, each time from a keyframe of the new layer."""
    async with running_live(data_dir) as setting:
        setting.app.state.media.quality_thresholds = QualityThresholds(
            up_wait_secs=TEST_UP_WAIT_SECS
        )
        host, publisher = await start_publishing(setting)
        clients, viewers = await watch_all(setting, publisher, [None])
        viewer = viewers[0]
        assert viewer.frame_sizes[-1] == HIGH_SIZE

        # the link loses packets: the receiver's reports move the viewer down
        viewer.drop_every = LOSSY_LINK_DROP_EVERY
        await viewer.wait_for_frame_size(*LOW_SIZE)
        viewer.drop_every = None
        assert await decoded_share(viewer, publisher) >= MIN_DECODED_SHARE

        # the link recovers: clean reports move the viewer back up
        await viewer.wait_for_frame_size(*HIGH_SIZE)
        assert await decoded_share(viewer, publisher) >= MIN_DECODED_SHARE
        media = server_viewers(setting)[0]
        controller = media.feedback.controller
        assert controller.moves_down >= 1
        assert controller.moves_up >= 1
        assert viewer.video_packets_dropped > 0
        # the dropped packets came back through retransmissions the NACKs asked for
        assert media.feedback.nacks > 0
        assert media.lean_senders["video"].packets_retransmitted > 0

        await close_all([host, *clients], [publisher, *viewers])
