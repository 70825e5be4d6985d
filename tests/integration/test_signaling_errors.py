"""Refusals of the signaling socket: each gets its documented error frame or close code,
and the server goes on serving the same connection and others."""

from __future__ import annotations

import enum
import json
import logging
import re
from pathlib import Path

import pytest
from aiortc import RTCSessionDescription

from signaling.peers import PeerRole, PeerState, ServerPeer
from signaling.protocol import PROTOCOL_ERRORS_MAX
from signaling.sdp import InvalidOfferError, OfferPurpose
from tests.support.signaling_peers import (
    Publisher,
    SignalingClient,
    Viewer,
    running_live,
    start_publishing,
)

# The parts of an SDP offer that aiortc itself writes, to build invalid variants.
SESSION_LINES = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
AUDIO_SECTION = (
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=sendonly\r\n"
)

# Each row: a frame (a JSON value, or raw text) and the error code it must get.
FRAME_ERRORS: list[tuple[object, str]] = [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_json"),
    ('"publish"', "invalid_json"),
    ({"sdp": "v=0"}, "invalid_frame"),
    ({"type": 7}, "invalid_frame"),
    ({"type": "send", "client_id": "c-1"}, "unknown_type"),
    ({"type": "publish"}, "invalid_frame"),
    ({"type": "publish", "sdp": 12}, "invalid_frame"),
    ({"type": "publish", "sdp": "x" * 20_000}, "too_large"),
    ({"type": "publish", "sdp": "garbage"}, "invalid_sdp"),
    ({"type": "publish", "sdp": SESSION_LINES}, "invalid_sdp"),
    (
        {"type": "publish", "sdp": SESSION_LINES + "m=audio x UDP/TLS/RTP/SAVPF 111\r\n"},
        "invalid_sdp",
    ),
    ({"type": "publish", "sdp": SESSION_LINES + AUDIO_SECTION}, "invalid_sdp"),
    (
        {"type": "publish", "sdp": SESSION_LINES + AUDIO_SECTION + "a=setup:bogus\r\n"},
        "invalid_sdp",
    ),
    (
        {"type": "publish", "sdp": SESSION_LINES + AUDIO_SECTION + "a=fmtp:112 x=1\r\n"},
        "invalid_sdp",
    ),
    (
        {"type": "publish", "sdp": SESSION_LINES + AUDIO_SECTION + "a=ssrc:abc cname:x\r\n"},
        "invalid_sdp",
    ),
]

pytestmark = pytest.mark.slow


async def assert_still_serves(client: SignalingClient) -> None:
    await client.send({"type": "ping"})
    assert (await client.recv_type("pong")) == {"type": "pong"}


async def test_signaling_errors_frame_codes(data_dir: Path) -> None:
    """Guards against a malformed, oversized or unparsable frame that crashes the
    handler, closes the connection, or gets an undocumented code."""
    async with running_live(data_dir) as setting:
        host = await SignalingClient.open(setting.ws_url, setting.live_id, setting.host_cookie)

        for frame, code in FRAME_ERRORS:
            await host.send_raw(frame if isinstance(frame, str) else json.dumps(frame))
            error = await host.recv_type("error")
            assert error["code"] == code, (frame, error)
            assert error["message"], (frame, error)
            await assert_still_serves(host)

        await host.connection.send(b"\x00\x01")
        assert (await host.recv_type("error"))["code"] == "invalid_json"
        await host.send({"type": "nope", "client_id": "c-42"})
        assert (await host.recv_type("error"))["ref"] == "c-42"

        # a new connection, because the frames above used most of the error budget
        await host.close()
        host = await SignalingClient.open(setting.ws_url, setting.live_id, setting.host_cookie)

        # a real offer that waited for no candidate, then with broken candidates
        publisher = Publisher()
        offer = await publisher.offer()
        without_candidates = "".join(
            line + "\r\n"
            for line in offer.splitlines()
            if line and not line.startswith("a=candidate")
        )
        await host.send({"type": "publish", "sdp": without_candidates})
        assert (await host.recv_type("error"))["code"] == "invalid_sdp"
        candidate = next(line for line in offer.splitlines() if line.startswith("a=candidate"))
        for broken in (
            "a=candidate:bad",
            "a=candidate:1 1 udp x 192.0.2.2 9 typ host",
            "a=candidate:1 1 udp 1 192.0.2.2 9 typ",
            "a=candidate:1 1 udp 1 192.0.2.2 65536 typ host",
            "a=candidate:1 1 udp 1 192.0.2.2 -1 typ host",
        ):
            await host.send({"type": "publish", "sdp": offer.replace(candidate, broken)})
            assert (await host.recv_type("error"))["code"] == "invalid_sdp", broken
        await publisher.close()

        other = await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
        await assert_still_serves(other)
        await assert_still_serves(host)
        assert setting.app.state.media.sessions == {}
        await host.close()
        await other.close()


async def test_signaling_errors_close_codes(data_dir: Path) -> None:
    """Guards against refused people being let in, or refused with a code that sends
    the browser to the wrong page."""
    async with running_live(data_dir) as setting:
        cases: list[tuple[int | str, str | None, dict[str, str], int]] = [
            (setting.live_id, None, {}, 4401),
            (setting.live_id, setting.stranger_cookie, {}, 4403),
            (999_999, setting.viewer_cookie, {}, 4404),
            (f"0{setting.live_id}", setting.viewer_cookie, {}, 4404),
            ("douze", setting.viewer_cookie, {}, 4404),
            (setting.live_id, setting.viewer_cookie, {"Origin": "http://ailleurs.example"}, 4403),
        ]
        for live_id, cookie, headers, code in cases:
            client = await SignalingClient.connect(
                setting.ws_url, live_id, cookie, origin=headers.get("Origin")
            )
            assert await client.close_code() == code, (live_id, cookie, headers)

        # a frame above the WebSocket layer's limit closes the connection with 1009
        viewer = await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
        await viewer.send_raw("x" * 70_000)
        assert await viewer.close_code() == 1009

        host = await SignalingClient.open(setting.ws_url, setting.live_id, setting.host_cookie)
        assert host.welcome == {
            "type": "welcome",
            "live_id": setting.live_id,
            "role": "host",
            "state": "scheduled",
            "host": "present",
            "ice_servers": [],
            "recording": {"status": None, "reason": None},
        }
        await assert_still_serves(host)
        await host.close()


async def test_signaling_errors_too_many_close_4400(data_dir: Path) -> None:
    """Guards against a client that loops on invalid frames and is never stopped."""
    async with running_live(data_dir) as setting:
        client = await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
        for _ in range(PROTOCOL_ERRORS_MAX - 1):
            await client.send_raw("{")
            assert (await client.recv_type("error"))["code"] == "invalid_json"
        await assert_still_serves(client)

        await client.send_raw("{")
        assert (await client.recv_type("error"))["code"] == "invalid_json"
        assert await client.close_code() == 4400

        other = await SignalingClient.open(setting.ws_url, setting.live_id, setting.viewer_cookie)
        await assert_still_serves(other)
        await other.close()


async def refused_offer(client: SignalingClient, frame_type: str, sdp: str) -> str:
    await client.send({"type": frame_type, "sdp": sdp})
    error = await client.recv_type("error")
    code: str = error["code"]
    return code


async def test_signaling_errors_roles_and_states(data_dir: Path) -> None:
    """Guards against a viewer who publishes or ends a live, a watch before the live,
    and a second publish that replaces the host's camera."""
    async with running_live(data_dir) as setting:
        viewer_client = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.viewer_cookie
        )
        assert viewer_client.welcome["role"] == "viewer"
        publisher = Publisher()
        viewer = Viewer(publisher.video)

        assert await refused_offer(viewer_client, "publish", await publisher.offer()) == "forbidden"
        assert await refused_offer(viewer_client, "watch", await viewer.offer()) == "not_live"
        await viewer_client.send({"type": "end"})
        assert (await viewer_client.recv_type("error"))["code"] == "forbidden"

        host = await SignalingClient.open(setting.ws_url, setting.live_id, setting.host_cookie)
        await host.send({"type": "end"})
        assert (await host.recv_type("error"))["code"] == "not_live"
        await host.close()
        await publisher.close()

        host, publisher = await start_publishing(setting)
        await viewer_client.until("state", state="live")
        second_tab = await SignalingClient.open(
            setting.ws_url, setting.live_id, setting.host_cookie
        )
        second_publisher = Publisher()
        second_offer = await second_publisher.offer()
        code = await refused_offer(second_tab, "publish", second_offer)
        assert code == "already_publishing"

        await host.send({"type": "end"})
        await viewer_client.until("state", state="ended")
        await viewer.close()
        viewer = Viewer(publisher.video)
        assert await refused_offer(viewer_client, "watch", await viewer.offer()) == "live_ended"
        code = await refused_offer(second_tab, "publish", second_offer)
        assert code == "live_ended"

        for client in (host, viewer_client, second_tab):
            await client.close()
        for peer in (publisher, second_publisher, viewer):
            await peer.close()


def with_missing_first_bundle_mid(offer: str) -> str:
    """Return `offer` with a BUNDLE group whose first mid names no section. aiortc 1.16
    accepts it, then leaves both sections without a transport."""
    bundled = re.sub(r"a=group:BUNDLE ", "a=group:BUNDLE 7 ", offer, count=1)
    assert bundled != offer
    return bundled


def without_common_video_codec(offer: str) -> str:
    """Return `offer` with its video codecs renamed to one aiortc does not know, so that
    setRemoteDescription fails on the video section after applying the audio one."""
    renamed = re.sub(r"(a=rtpmap:\d+ )(VP8|H264)/90000", r"\1X-NONE/90000", offer)
    assert renamed != offer
    return renamed


async def test_signaling_errors_publish_fails_cleanly(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against a refused publish, also one refused halfway through negotiation,
    that leaves a half-made session or an open peer behind, so that the next valid
    publish gets `already_publishing`."""
    caplog.set_level(logging.INFO, logger="signaling.peers")
    async with running_live(data_dir) as setting:
        host = await SignalingClient.open(setting.ws_url, setting.live_id, setting.host_cookie)
        viewer = Viewer(Publisher().video)
        # a viewer's offer is not a publish offer
        assert await refused_offer(host, "publish", await viewer.offer()) == "invalid_sdp"
        publisher = Publisher()
        offer = await publisher.offer()
        for broken in (with_missing_first_bundle_mid(offer), without_common_video_codec(offer)):
            assert await refused_offer(host, "publish", broken) == "invalid_sdp"
        await assert_still_serves(host)
        assert setting.app.state.media.sessions == {}
        await viewer.close()
        await publisher.close()
        await host.close()

        host, publisher = await start_publishing(setting)
        assert set(setting.app.state.media.sessions) == {setting.live_id}
        await host.close()
        await publisher.close()

    # each refused offer's server peer was closed, and closing raised nothing
    messages = [record.getMessage() for record in caplog.records]
    for peer_id in ("host-1", "host-2", "host-3"):
        assert any(
            f"ServerPeer({peer_id}) live=" in message and ": closed after" in message
            for message in messages
        ), peer_id
    assert not any("failed to close" in message for message in messages)


class Negotiation(enum.Enum):
    """How far a ServerPeer's negotiation got before it is closed."""

    NONE = "none"
    # check_offer rejected the offer before aiortc saw it
    OFFER_REJECTED = "offer_rejected"
    # aiortc applied the audio section, then failed on the video one
    VIDEO_FAILED = "video_failed"
    # aiortc applied a BUNDLE group with a missing first mid, which its close trips on
    BUNDLE_HALF_APPLIED = "bundle_half_applied"
    ANSWERED = "answered"


@pytest.mark.parametrize("negotiation", list(Negotiation), ids=lambda value: value.value)
async def test_server_peer_close_any_state(
    negotiation: Negotiation, caplog: pytest.LogCaptureFixture
) -> None:
    """Guards against a ServerPeer.close that raises, or leaves tracks running, after a
    negotiation that stopped partway, which would abort the release of the live's other
    peers and tasks."""
    caplog.set_level(logging.WARNING, logger="signaling.peers")
    publisher = Publisher()
    offer = await publisher.offer()
    peer = ServerPeer("host-1", PeerRole.HOST, 1, [], on_lost=lambda lost: None)

    if negotiation is Negotiation.OFFER_REJECTED:
        with pytest.raises(InvalidOfferError):
            await peer.answer(with_missing_first_bundle_mid(offer), OfferPurpose.PUBLISH)
    elif negotiation is Negotiation.VIDEO_FAILED:
        with pytest.raises(InvalidOfferError):
            await peer.answer(without_common_video_codec(offer), OfferPurpose.PUBLISH)
    elif negotiation is Negotiation.BUNDLE_HALF_APPLIED:
        # check_offer rejects this offer, so it goes to aiortc directly, which accepts it
        description = RTCSessionDescription(with_missing_first_bundle_mid(offer), "offer")
        await peer.pc.setRemoteDescription(description)
    elif negotiation is Negotiation.ANSWERED:
        await publisher.accept(await peer.answer(offer, OfferPurpose.PUBLISH))

    await peer.close()

    assert peer.state is PeerState.CLOSED
    assert all(track.readyState == "ended" for track in peer.remote_tracks)
    failures = [record for record in caplog.records if "failed to close" in record.getMessage()]
    # only the half-applied BUNDLE group trips aiortc's own close, which is logged
    assert len(failures) == (1 if negotiation is Negotiation.BUNDLE_HALF_APPLIED else 0)
    # a second close returns at once, where aiortc's would wait forever after a failure
    await peer.close()
    assert peer.state is PeerState.CLOSED
    await publisher.close()
