"""Guards on the private parts of aiortc and aioice that signaling/aiortc_hooks.py and
signaling/rtp_sender.py rely on.

These fail when an aiortc release renames or reshapes them, before any live does;
tests/integration/test_media_encode_once.py checks that they work with real peers.
"""

from __future__ import annotations

import inspect
from fractions import Fraction

import aioice
import aiortc
import numpy as np
import pytest
from aioice.ice import Connection, StunProtocol
from aiortc import RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter, RtpSender
from aiortc.rtcicetransport import RTCIceTransport
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket
from av import VideoFrame

from signaling.aiortc_hooks import (
    H264_PROFILE_LEVEL_ID,
    SharedPacketizer,
    h264_preferences,
    packetize_video,
    video_payloads,
)
from signaling.encoding import LayerEncoder, Quality, VideoLayer


def test_aiortc_version_is_pinned_range() -> None:
    major, minor = (int(part) for part in aiortc.__version__.split(".")[:2])
    assert (major, minor) == (1, 16)


def test_aioice_version_is_pinned_range() -> None:
    major, minor = (int(part) for part in aioice.__version__.split(".")[:2])
    assert (major, minor) == (0, 13)


def test_dtls_transport_protects_rtp_with_tx_srtp() -> None:
    """Guards against a rename of the outbound SRTP session the lean sender protects its
    packets with, or a change in how aiortc's own RTP reaches the ICE transport."""
    assert "self._tx_srtp: Session = None" in inspect.getsource(RTCDtlsTransport.__init__)
    source = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "data = self._tx_srtp.protect(data)" in source
    assert "await self.transport._send(data)" in source
    assert "self._send = self._connection.send" in inspect.getsource(RTCIceTransport)


def test_ice_connection_sends_on_nominated_pair() -> None:
    """Guards against aioice sending a component's datagrams elsewhere than through the
    socket of its nominated pair, which the lean sender writes to directly."""
    source = inspect.getsource(Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in source
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in source
    assert "self.transport.sendto(data, addr)" in inspect.getsource(StunProtocol.send_data)


def test_sender_report_counters_named() -> None:
    """Guards against a rename of the counters that aiortc's sender reports read and
    that the lean sender updates."""
    init_source = inspect.getsource(RTCRtpSender.__init__)
    rtcp_source = inspect.getsource(RTCRtpSender._run_rtcp)
    for counter in ("ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count"):
        assert f"self.__{counter} = 0" in init_source
        assert f"self.__{counter}" in rtcp_source


def test_sender_rtcp_handler_signature() -> None:
    """Guards against a rename or a new parameter of the coroutine that
    `listen_to_rtcp` wraps on each viewer's video sender."""
    handler = RTCRtpSender._handle_rtcp_packet
    assert inspect.iscoroutinefunction(handler)
    assert list(inspect.signature(handler).parameters) == ["self", "packet"]
    # the DTLS transport's own interface for senders names both private members
    assert "_handle_rtcp_packet" in dir(RtpSender)
    assert "_ssrc" in RtpSender.__annotations__


def test_dtls_transport_awaits_handler_on_instance() -> None:
    """Guards against the transport calling the handler through the class (which would
    bypass the instance attribute) or stopping to call it at all."""
    source = inspect.getsource(RTCDtlsTransport._handle_rtcp_data)
    assert "recipient._handle_rtcp_packet(packet)" in source


def test_router_sends_picture_loss_to_sender_by_ssrc() -> None:
    class Sender:
        _ssrc = 1234

        async def _handle_rtcp_packet(self, packet: object) -> None:
            pass

    router = RtpRouter()
    sender = Sender()
    router.register_sender(sender, sender._ssrc)
    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=99, media_ssrc=1234)
    assert router.route_rtcp(packet) == {sender}


def test_sender_ssrc_attribute_set_at_construction() -> None:
    source = inspect.getsource(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in source


def test_sender_keeps_encoder_set_before_start() -> None:
    """Guards against a sender that replaces the SharedPacketizer set before it starts,
    which would packetize every frame again for each viewer."""
    assert "self.__encoder: Optional[Encoder] = None" in inspect.getsource(RTCRtpSender.__init__)
    source = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "if self.__encoder is None:" in source
    assert "self.__encoder = get_encoder(codec)" in source


def test_encoders_pack_pre_encoded_packets() -> None:
    """Guards against the public behaviour the encode-once path rests on: a sender
    whose track yields packets packs them instead of encoding."""
    for encoder in (H264Encoder, OpusEncoder):
        assert list(inspect.signature(encoder.pack).parameters) == ["self", "packet"]
    source = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert "self.__encoder.pack(data)" in source


def test_h264_preferences_offer_constrained_baseline_only() -> None:
    preferences = h264_preferences()
    assert [codec.mimeType for codec in preferences] == ["video/H264", "video/rtx"]
    assert preferences[0].parameters["profile-level-id"] == H264_PROFILE_LEVEL_ID
    assert preferences[0].parameters["packetization-mode"] == "1"


def test_shared_packetizer_hands_out_stored_payloads() -> None:
    """Guards against viewers' senders receiving other payloads or timestamps than
    aiortc's own packetizer would make of the same packet."""
    encoder = LayerEncoder(VideoLayer(Quality.HIGH, 640, 360, 500_000))
    frame = VideoFrame.from_ndarray(
        np.random.default_rng(1).integers(0, 256, (540, 640), dtype=np.uint8), format="yuv420p"
    )
    frame.pts = 90_000
    frame.time_base = Fraction(1, 90_000)
    (packet,) = encoder.encode(frame, keyframe=True)
    expected_payloads, expected_timestamp = H264Encoder().pack(packet)
    assert len(expected_payloads) > 1

    packetizer = SharedPacketizer(90_000, video_payloads)
    # a packet the live did not packetize is packetized here, the same way
    assert packetizer.pack(packet) == (expected_payloads, expected_timestamp)
    assert packetizer.packets_packetized_here == 1

    packetize_video(packet, arrived=12.5)
    assert packetizer.pack(packet) == (expected_payloads, expected_timestamp)
    assert expected_timestamp == 90_000
    assert packetizer.packets_packed == 2
    assert packetizer.packets_packetized_here == 1
    with pytest.raises(TypeError, match=r"expected an encoded av\.Packet"):
        packetizer.encode(frame)
