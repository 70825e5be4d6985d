"""Refusals of the signaling socket: each gets its documented error frame or close code,
and the server goes on serving the same connection and others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signaling.protocol import PROTOCOL_ERRORS_MAX
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


async def test_signaling_errors_publish_fails_cleanly(data_dir: Path) -> None:
    """Guards against a refused publish that leaves a half-made session behind, so
    that the next valid publish gets `already_publishing`."""
    async with running_live(data_dir) as setting:
        host = await SignalingClient.open(setting.ws_url, setting.live_id, setting.host_cookie)
        viewer = Viewer(Publisher().video)
        # a viewer's offer is not a publish offer
        assert await refused_offer(host, "publish", await viewer.offer()) == "invalid_sdp"
        assert setting.app.state.media.sessions == {}
        await viewer.close()
        await host.close()

        host, publisher = await start_publishing(setting)
        assert set(setting.app.state.media.sessions) == {setting.live_id}
        await host.close()
        await publisher.close()
