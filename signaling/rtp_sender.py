"""A lean RTP sender: the live's packetized frames to one viewer, without aiortc's
per-packet sender loop.

aiortc's RTCRtpSender builds an RtpPacket object per packet, serializes its header
extensions, reads the clock twice through `datetime` and awaits three coroutine layers
before the socket. For a viewer who only receives frames encoded once for everyone,
that loop is most of what the viewer costs the server. `LeanRtpSender` writes each
header with one `struct` call and sends it, as soon as the live's encoder publishes
the packet, through the same SRTP session and ICE socket. aiortc's sender stays in
place, reading a `HeldTrack` that yields nothing, and keeps its RTCP. It sends the
sender reports from the counters this sender updates, and the viewer's RTCP reaches
it as before.

Private pieces used here are guarded by tests/unit/test_aiortc_hooks.py. From aiortc
1.16 they are `RTCDtlsTransport._tx_srtp` (the outbound SRTP session),
`RTCIceTransport._connection` (the aioice Connection) and the name-mangled counters of
RTCRtpSender that its sender reports read (`__ntp_timestamp`, `__rtp_timestamp`,
`__packet_count`, `__octet_count`). From aioice 0.13, it is `Connection._nominated`,
whose pair gives the socket and the address. When one is missing, the viewer falls back
to aiortc's own sender, which then reads the real track.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time
from dataclasses import dataclass
from typing import Any

from aiortc import RTCRtpSender
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription
from av.frame import Frame
from av.packet import Packet

from signaling.aiortc_hooks import PacketizedFrame

logger = logging.getLogger(__name__)

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
# RTP version 2 in the first byte, and the bit that announces header extensions.
RTP_VERSION_2 = 0x80
HAS_EXTENSION = 0x10
MARKER = 0x80
RTP_HEADER = struct.Struct("!BBHII")
# RFC 8285's one-byte header extensions, and its 4-byte extension header.
ONE_BYTE_PROFILE = 0xBEDE
EXTENSION_HEADER = struct.Struct("!HH")
# Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET_SECS = 2_208_988_800
# Packets kept for retransmission on a NACK: at 30 frames per second and 2 to 3 packets
# a frame, about 4 s of video, more than any NACK waits (aiortc keeps 128 packets).
HISTORY_SIZE = 256
SEQUENCE_MODULO = 1 << 16
TIMESTAMP_MODULO = 1 << 32
# Bytes a viewer's socket may hold unsent (the kernel's buffer was full) before frames
# are dropped: about 2 s of the high layer of a 720p live.
SOCKET_BACKLOG_MAX_BYTES = 512 * 1024


@dataclass(frozen=True)
class RtpStreamParameters:
    """What the answer negotiated for one stream the server sends."""

    ssrc: int
    payload_type: int
    clock_rate: int
    mid: str | None = None
    mid_id: int | None = None
    abs_send_time_id: int | None = None
    rtx_ssrc: int | None = None
    rtx_payload_type: int | None = None


def negotiated_parameters(local_sdp: str, mid: str) -> RtpStreamParameters | None:
    """Read the parameters of the section `mid` from the server's answer, or None when
    it has no SSRC or codec."""
    media = next(
        (
            section
            for section in SessionDescription.parse(local_sdp).media
            if section.rtp.muxId == mid
        ),
        None,
    )
    if media is None or not media.ssrc or not media.rtp.codecs:
        return None
    codec = media.rtp.codecs[0]
    if codec.payloadType is None:
        return None
    rtx = next(
        (
            candidate
            for candidate in media.rtp.codecs
            if candidate.mimeType.lower().endswith("/rtx")
            and candidate.parameters.get("apt") == codec.payloadType
        ),
        None,
    )
    rtx_ssrc = None
    for group in media.ssrc_group:
        if group.semantic == "FID" and len(group.items) == 2:
            rtx_ssrc = int(group.items[1])
    extension_ids = {extension.uri: extension.id for extension in media.rtp.headerExtensions}
    return RtpStreamParameters(
        ssrc=int(media.ssrc[0].ssrc),
        payload_type=codec.payloadType,
        clock_rate=codec.clockRate,
        mid=mid,
        mid_id=extension_ids.get(MID_URI),
        abs_send_time_id=extension_ids.get(ABS_SEND_TIME_URI),
        rtx_ssrc=rtx_ssrc if rtx is not None else None,
        rtx_payload_type=rtx.payloadType if rtx is not None else None,
    )


def ntp_now() -> int:
    """Return the wall clock as a 64-bit NTP timestamp (32.32 fixed point seconds)."""
    return int((time.time() + NTP_UNIX_OFFSET_SECS) * (1 << 32))


class RtpHeaderWriter:
    """Writes RTP headers for one stream, with the mid and abs-send-time extensions when
    the answer negotiated them, byte for byte as aiortc's RtpPacket.serialize does."""

    def __init__(self, parameters: RtpStreamParameters) -> None:
        self.parameters = parameters
        self._mid_element = b""
        if parameters.mid_id is not None and parameters.mid:
            mid = parameters.mid.encode()
            self._mid_element = bytes([(parameters.mid_id << 4) | (len(mid) - 1)]) + mid
        self._abs_send_time_byte = (
            None
            if parameters.abs_send_time_id is None
            else bytes([(parameters.abs_send_time_id << 4) | 2])
        )

    def extensions(self, ntp_time: int) -> bytes:
        """Return the extension block (header and padded elements) for a packet sent at
        `ntp_time`, or b"" when no extension was negotiated."""
        elements = self._mid_element
        if self._abs_send_time_byte is not None:
            # abs-send-time: 6.18 fixed point seconds, 24 bits
            elements += self._abs_send_time_byte + ((ntp_time >> 14) & 0xFFFFFF).to_bytes(3)
        if not elements:
            return b""
        elements += b"\x00" * (-len(elements) % 4)
        return EXTENSION_HEADER.pack(ONE_BYTE_PROFILE, len(elements) // 4) + elements

    def header(
        self,
        *,
        payload_type: int,
        marker: bool,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        extensions: bytes,
    ) -> bytes:
        first = RTP_VERSION_2 | (HAS_EXTENSION if extensions else 0)
        second = (MARKER if marker else 0) | payload_type
        return RTP_HEADER.pack(first, second, sequence_number, timestamp, ssrc) + extensions


class HeldTrack(MediaStreamTrack):
    """The track aiortc's sender reads: nothing while a LeanRtpSender sends the media,
    or the real track once `pass_through` is called (the lean sender could not run)."""

    def __init__(self, real: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = real.kind
        self._real = real
        self._released = asyncio.Event()

    async def recv(self) -> Frame | Packet[Any]:
        if not self._released.is_set():
            await self._released.wait()
        if self.readyState != "live":
            raise MediaStreamError
        frame: Frame | Packet[Any] = await self._real.recv()
        return frame

    def pass_through(self) -> None:
        self._released.set()

    def stop(self) -> None:
        # aiortc's sender stops its track when it stops; the real track goes with it
        super().stop()
        self._released.set()
        self._real.stop()


class LeanRtpSender:
    """Sends one viewer stream: takes each packet of the live's encoder (whose `opaque`
    is a PacketizedFrame) as its track hands it over, and writes each payload as an SRTP
    packet straight to the viewer's socket.

    Logged as `LeanRtpSender(<name>)`. Not thread-safe: the event loop calls `send`.
    """

    def __init__(self, name: str, sender: RTCRtpSender, parameters: RtpStreamParameters) -> None:
        self.name = name
        self.sender = sender
        self.parameters = parameters
        self.packets_sent = 0
        self.bytes_sent = 0
        self.packets_retransmitted = 0
        self.packets_dropped = 0
        self._writer = RtpHeaderWriter(parameters)
        # aiortc starts sequence numbers in the lower half of the range, because some
        # receivers mishandle an early wraparound; so does this sender
        self._sequence_number = random.randrange(SEQUENCE_MODULO // 2)
        self._rtx_sequence_number = random.randrange(SEQUENCE_MODULO // 2)
        self._timestamp_origin = random.randrange(TIMESTAMP_MODULO)
        # (sequence number, timestamp, marker, payload) of the last packets sent
        self._history: list[tuple[int, int, bool, bytes] | None] = [None] * HISTORY_SIZE
        self._srtp: Any = None
        self._socket: Any = None
        self._address: tuple[str, int] = ("", 0)

    def __repr__(self) -> str:
        return f"LeanRtpSender({self.name})"

    def attach(self) -> None:
        """Take the SRTP session and the socket of the sender's transport, once the peer
        is connected. Raise AttributeError when aiortc or aioice no longer has them."""
        dtls = self.sender.transport
        self._srtp = dtls._tx_srtp
        # the ICE pair nominated for the RTP component, whose socket sends the media
        pair = dtls.transport._connection._nominated.get(1)
        if self._srtp is None or pair is None:
            raise AttributeError(f"{self!r}: the transport of the sender is not connected")
        self._socket = pair.protocol.transport
        self._address = pair.remote_addr
        for counter in ("ntp_timestamp", "rtp_timestamp", "packet_count", "octet_count"):
            getattr(self.sender, f"_RTCRtpSender__{counter}")

    def send(self, packet: Packet[Any]) -> bool:
        """Send `packet`'s payloads and return True. Return False, sending nothing,
        when the socket still has more than SOCKET_BACKLOG_MAX_BYTES unsent."""
        info = packet.opaque
        if not isinstance(info, PacketizedFrame):
            raise TypeError(f"{self!r}: the packet has no RTP payloads: {info!r}")
        if packet.pts is None or packet.time_base is None:
            raise TypeError(f"{self!r}: the packet has no timestamp")
        if self._socket.get_write_buffer_size() > SOCKET_BACKLOG_MAX_BYTES:
            self.packets_dropped += 1
            return False

        parameters = self.parameters
        time_base = packet.time_base
        rtp_time = packet.pts * parameters.clock_rate * time_base.numerator // time_base.denominator
        timestamp = (self._timestamp_origin + rtp_time) % TIMESTAMP_MODULO
        ntp_time = ntp_now()
        extensions = self._writer.extensions(ntp_time)

        last = len(info.payloads) - 1
        for index, payload in enumerate(info.payloads):
            sequence_number = self._sequence_number
            marker = index == last
            header = self._writer.header(
                payload_type=parameters.payload_type,
                marker=marker,
                sequence_number=sequence_number,
                timestamp=timestamp,
                ssrc=parameters.ssrc,
                extensions=extensions,
            )
            self._history[sequence_number % HISTORY_SIZE] = (
                sequence_number,
                timestamp,
                marker,
                payload,
            )
            self._sequence_number = (sequence_number + 1) % SEQUENCE_MODULO
            self._socket.sendto(self._srtp.protect(header + payload), self._address)
            self.packets_sent += 1
            self.bytes_sent += len(payload)

        # the counters aiortc's sender reports in its RTCP sender reports
        sender: Any = self.sender
        sender._RTCRtpSender__ntp_timestamp = ntp_time
        sender._RTCRtpSender__rtp_timestamp = timestamp
        sender._RTCRtpSender__packet_count = self.packets_sent
        sender._RTCRtpSender__octet_count = self.bytes_sent
        return True

    def retransmit(self, lost: list[int]) -> None:
        """Send again, over RTX, the packets a NACK reports lost that are still in the
        history; without negotiated RTX, nothing is sent."""
        parameters = self.parameters
        if parameters.rtx_payload_type is None or parameters.rtx_ssrc is None:
            return
        for sequence_number in lost:
            entry = self._history[sequence_number % HISTORY_SIZE]
            if entry is None or entry[0] != sequence_number:
                continue
            _, timestamp, marker, payload = entry
            header = self._writer.header(
                payload_type=parameters.rtx_payload_type,
                marker=marker,
                sequence_number=self._rtx_sequence_number,
                timestamp=timestamp,
                ssrc=parameters.rtx_ssrc,
                extensions=self._writer.extensions(ntp_now()),
            )
            self._rtx_sequence_number = (self._rtx_sequence_number + 1) % SEQUENCE_MODULO
            rtx_payload = struct.pack("!H", sequence_number) + payload
            self._socket.sendto(self._srtp.protect(header + rtx_payload), self._address)
            self.packets_retransmitted += 1
