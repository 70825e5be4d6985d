"""What the server reads from a viewer's offer on the encode-once path: the bandwidth it
declares, whether it can receive H.264 constrained baseline, and the starting layer."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCRtpSender

from signaling.encoding import Quality, plan_layers
from signaling.sdp import (
    InvalidOfferError,
    OfferPurpose,
    OfferSummary,
    check_offer,
    declared_bandwidth,
)
from signaling.viewer_media import start_quality
from tests.support.signaling_peers import rtc_configuration, with_video_bandwidth

OFFER_HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def sections(video_lines: str) -> str:
    return (
        OFFER_HEAD
        + "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\nb=AS:64\r\n"
        + "m=video 9 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\n"
        + video_lines
    )


@pytest.mark.parametrize(
    ("video_lines", "expected"),
    [
        ("", None),
        ("b=AS:300\r\n", 300_000),
        ("b=TIAS:250000\r\n", 250_000),
        ("b=AS:300\r\nb=TIAS:250000\r\n", 250_000),
        ("b=AS:beaucoup\r\n", None),
        ("b=CT:1000\r\n", None),
    ],
)
def test_declared_bandwidth_of_video_section(video_lines: str, expected: int | None) -> None:
    assert declared_bandwidth(sections(video_lines), "video") == expected


def test_declared_bandwidth_ignores_other_sections() -> None:
    # the audio section's b=AS:64 is not the video's
    assert declared_bandwidth(sections(""), "audio") == 64_000
    assert declared_bandwidth(sections(""), "video") is None


def summary(bandwidth_bps: int | None) -> OfferSummary:
    return OfferSummary("recvonly", "recvonly", 1, bandwidth_bps, True)


def test_start_quality_from_declared_bandwidth() -> None:
    layers = plan_layers(640, 360)
    assert start_quality(summary(None), layers) is Quality.HIGH
    assert start_quality(summary(5_000_000), layers) is Quality.HIGH
    assert start_quality(summary(300_000), layers) is Quality.LOW
    # before the host's first picture, a 720p camera's high layer is assumed
    assert start_quality(summary(1_000_000), None) is Quality.LOW
    assert start_quality(summary(1_000_000), layers) is Quality.HIGH


async def test_check_offer_reads_viewer_offer() -> None:
    """Guards against an aiortc or browser offer whose H.264 or bandwidth the server
    fails to see, which would refuse viewers or start them on the wrong layer."""
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("audio", direction="recvonly")
    video = pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    checked = check_offer(with_video_bandwidth(offer, 300), OfferPurpose.WATCH)
    assert checked.offers_h264_baseline
    assert checked.video_bandwidth_bps == 300_000

    vp8_only = [
        codec
        for codec in RTCRtpSender.getCapabilities("video").codecs
        if codec.mimeType in {"video/VP8", "video/rtx"}
    ]
    video.setCodecPreferences(vp8_only)
    await pc.setLocalDescription(await pc.createOffer())
    assert not check_offer(pc.localDescription.sdp, OfferPurpose.WATCH).offers_h264_baseline
    await pc.close()


@pytest.mark.parametrize(
    ("port", "accepted"), [(0, True), (65535, True), (65536, False), (-1, False)]
)
async def test_check_offer_rejects_candidate_port_out_of_range(port: int, accepted: bool) -> None:
    """Guards against an offer whose candidate port makes the peer's ICE checks raise
    OverflowError once the server accepted it."""
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    line = next(line for line in offer.splitlines() if line.startswith("a=candidate"))
    fields = line.split(" ")
    fields[5] = str(port)
    offer = offer.replace(line, " ".join(fields))
    if accepted:
        assert check_offer(offer, OfferPurpose.WATCH).candidate_count > 0
    else:
        with pytest.raises(InvalidOfferError):
            check_offer(offer, OfferPurpose.WATCH)
