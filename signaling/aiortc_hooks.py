"""The places where the encode-once path reaches into aiortc, kept together.

Public API: `RTCRtpTransceiver.setCodecPreferences`, which limits a viewer's video to
H.264 constrained baseline, and RTCRtpSender's handling of a track that yields
`av.Packet`s, which it packetizes with `Encoder.pack` instead of encoding.

Private API of aiortc 1.16, pinned in pyproject.toml and checked by
tests/unit/test_aiortc_hooks.py:

- `RTCRtpSender._handle_rtcp_packet(packet)`, the coroutine the DTLS transport awaits
  for every RTCP packet routed to the sender. aiortc handles PLI and FIR there by
  flagging its own encoder, which a track of packets never uses, and it exposes
  receiver reports only through `getStats`, as polled snapshots. Wrapping it on the
  sender instance lets the shared encoder and the quality controller see each packet.
- `RTCRtpSender._ssrc`, the sender's SSRC, which picks its block out of a receiver
  report that covers several streams.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.rtp import AnyRtcpPacket

# Constrained baseline, level 3.1, and packetization mode 1 (fragmented NAL units):
# what the shared H.264 encoder produces and what every WebRTC browser decodes.
H264_PROFILE_LEVEL_ID = "42e01f"
H264_PACKETIZATION_MODE = "1"

# Called with each RTCP packet routed to a sender, before aiortc handles it.
RtcpListener = Callable[[AnyRtcpPacket], None]


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


def prefer_h264(transceiver: RTCRtpTransceiver) -> None:
    """Limit the video `transceiver` to H.264 constrained baseline; call it before the
    remote offer is applied, so that the answer carries nothing else."""
    transceiver.setCodecPreferences(h264_preferences())


def listen_to_rtcp(sender: RTCRtpSender, listener: RtcpListener) -> None:
    """Call `listener` with every RTCP packet routed to `sender`, then let aiortc handle
    the packet as before. `listener` runs on the event loop and must not block."""
    handle: Callable[[AnyRtcpPacket], Awaitable[None]] = sender._handle_rtcp_packet

    async def handle_with_listener(packet: AnyRtcpPacket) -> None:
        listener(packet)
        await handle(packet)

    # NOTE: an instance attribute shadows the method for this sender only.
    sender._handle_rtcp_packet = handle_with_listener  # type: ignore[method-assign]


def sender_ssrc(sender: RTCRtpSender) -> int:
    """Return the SSRC of the RTP stream `sender` sends."""
    ssrc: int = sender._ssrc
    return ssrc
