"""The places where the encode-once path reaches into aiortc, kept together.

Public API: `RTCRtpTransceiver.setCodecPreferences` limits a viewer's video to H.264
constrained baseline. RTCRtpSender packetizes with `Encoder.pack`, instead of
encoding, what a track yields as `av.Packet`s. The live calls `H264Encoder.pack` once
per packet, so that senders do not each packetize it.

Private API of aiortc 1.16, pinned in pyproject.toml and checked by
tests/unit/test_aiortc_hooks.py:

- `RTCRtpSender._handle_rtcp_packet(packet)`, the coroutine the DTLS transport awaits
  for every RTCP packet routed to the sender. aiortc handles PLI and FIR there by
  flagging its own encoder, which a track of packets never uses, and it exposes
  receiver reports only through `getStats`, as polled snapshots. Wrapping it on the
  sender instance lets the shared encoder and the quality controller see each packet.
- `RTCRtpSender._ssrc`, the sender's SSRC, which picks its block out of a receiver
  report that covers several streams.
- `RTCRtpSender.__encoder` (name-mangled `_RTCRtpSender__encoder`), the encoder the
  sender creates on its first frame unless one is set. A `SharedPacketizer` set there
  before the sender starts hands out the payloads computed once for all viewers.
"""

from __future__ import annotations

import fractions
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.base import Encoder
from aiortc.codecs.h264 import H264Encoder
from aiortc.mediastreams import convert_timebase
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.rtp import AnyRtcpPacket
from av.frame import Frame
from av.packet import Packet

# Constrained baseline, level 3.1, and packetization mode 1 (fragmented NAL units):
# what the shared H.264 encoder produces and what every WebRTC browser decodes.
H264_PROFILE_LEVEL_ID = "42e01f"
H264_PACKETIZATION_MODE = "1"

# Called with each RTCP packet routed to a sender, before aiortc handles it; what it
# returns, when not None, is awaited first.
RtcpListener = Callable[[AnyRtcpPacket], Awaitable[None] | None]


class NoH264Error(Exception):
    """aiortc offers no H.264 codec with the profile the shared encoder produces."""


def h264_preferences() -> list[RTCRtpCodecCapability]:
    """Return the codec preferences that allow only H.264 constrained baseline in
    packetization mode 1, with its retransmission format (RTX)."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [
        codec
        for codec in codecs
        if codec.mimeType.lower() == "video/h264"
        and str(codec.parameters.get("profile-level-id", "")).lower() == H264_PROFILE_LEVEL_ID
        and str(codec.parameters.get("packetization-mode", "")) == H264_PACKETIZATION_MODE
    ]
    if not h264:
        raise NoH264Error(f"aiortc offers no H.264 {H264_PROFILE_LEVEL_ID} in mode 1")
    rtx = [codec for codec in codecs if codec.mimeType.lower() == "video/rtx"]
    return [h264[0], *rtx]


def prefer_opus(transceiver: RTCRtpTransceiver) -> None:
    """Limit the audio `transceiver` to Opus, which the live's audio encoder produces,
    whatever order of codecs the viewer's offer gives."""
    opus = [
        codec
        for codec in RTCRtpSender.getCapabilities("audio").codecs
        if codec.mimeType.lower() == "audio/opus"
    ]
    transceiver.setCodecPreferences(opus)


def prefer_h264(transceiver: RTCRtpTransceiver) -> None:
    """Limit the video `transceiver` to H.264 constrained baseline; call it before the
    remote offer is applied, so that the answer carries nothing else."""
    transceiver.setCodecPreferences(h264_preferences())


def listen_to_rtcp(sender: RTCRtpSender, listener: RtcpListener) -> None:
    """Call `listener` with every RTCP packet routed to `sender`, then let aiortc handle
    the packet as before. `listener` runs on the event loop and must not block."""
    handle: Callable[[AnyRtcpPacket], Awaitable[None]] = sender._handle_rtcp_packet

    async def handle_with_listener(packet: AnyRtcpPacket) -> None:
        work = listener(packet)
        if work is not None:
            await work
        await handle(packet)

    # NOTE: an instance attribute shadows the method for this sender only.
    sender._handle_rtcp_packet = handle_with_listener  # type: ignore[method-assign]


def sender_ssrc(sender: RTCRtpSender) -> int:
    """Return the SSRC of the RTP stream `sender` sends."""
    ssrc: int = sender._ssrc
    return ssrc


@dataclass(frozen=True)
class PacketizedFrame:
    """An encoded frame's RTP payloads, computed once for every viewer's sender, stored
    in the `opaque` field of its `av.Packet`."""

    payloads: list[bytes]
    # `time.monotonic()` when the frame this packet encodes reached the server
    arrived: float


def video_payloads(packet: Packet[Any]) -> list[bytes]:
    """Split an H.264 packet into RTP payloads, as aiortc does in packetization mode 1
    (NAL units aggregated or fragmented into payloads of at most 1,300 bytes)."""
    payloads, _ = _H264_PACKETIZER.pack(packet)
    return payloads


def audio_payloads(packet: Packet[Any]) -> list[bytes]:
    """Return an Opus packet's RTP payload: the packet itself."""
    return [bytes(packet)]


def packetize_video(packet: Packet[Any], arrived: float) -> None:
    """Store the RTP payloads of an H.264 packet with `arrived` in `packet.opaque`."""
    packet.opaque = PacketizedFrame(video_payloads(packet), arrived)


def packetize_audio(packet: Packet[Any], arrived: float) -> None:
    """Store the RTP payload of an Opus packet with `arrived` in `packet.opaque`."""
    packet.opaque = PacketizedFrame(audio_payloads(packet), arrived)


# Its `pack` keeps no state between packets: one instance serves every live.
_H264_PACKETIZER = H264Encoder()


class SharedPacketizer(Encoder):
    """The encoder of one viewer's sender on the encode-once path: it hands out the
    payloads stored in each packet, with the packet's RTP timestamp, and never encodes.

    A packet without stored payloads is packetized by `fallback`, and counted, rather
    than stopping the sender: aiortc ends a sender whose encoder raises.
    """

    def __init__(self, clock_rate: int, fallback: Callable[[Packet[Any]], list[bytes]]) -> None:
        self.time_base = fractions.Fraction(1, clock_rate)
        self.fallback = fallback
        self.packets_packed = 0
        self.packets_packetized_here = 0

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise TypeError(f"expected an encoded av.Packet, got a decoded {type(frame).__name__}")

    def pack(self, packet: Packet[Any]) -> tuple[list[bytes], int]:
        if packet.pts is None or packet.time_base is None:
            raise TypeError("expected a packet with pts and time_base")
        info = packet.opaque
        if isinstance(info, PacketizedFrame):
            payloads = info.payloads
        else:
            payloads = self.fallback(packet)
            self.packets_packetized_here += 1
        self.packets_packed += 1
        timestamp: int = convert_timebase(packet.pts, packet.time_base, self.time_base)
        return payloads, timestamp


def use_shared_packetizer(sender: RTCRtpSender, clock_rate: int) -> SharedPacketizer:
    """Make `sender` send the payloads stored in its track's packets; call it before the
    sender starts, which is before the peer connection connects."""
    fallback = video_payloads if sender.kind == "video" else audio_payloads
    packetizer = SharedPacketizer(clock_rate, fallback)
    # NOTE: sets a private attribute, which the sender only fills when it is empty.
    sender._RTCRtpSender__encoder = packetizer  # type: ignore[attr-defined]
    return packetizer
