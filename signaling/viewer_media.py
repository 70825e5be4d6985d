"""One viewer's media on the encode-once path: the layer they start on, the senders of
their two streams, and what their receiver's RTCP changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from signaling.aiortc_hooks import (
    listen_to_rtcp,
    prefer_h264,
    prefer_opus,
    sender_ssrc,
    use_shared_packetizer,
)
from signaling.encoding import OPUS_BIT_RATE, OPUS_SAMPLE_RATE, Quality, VideoLayer, plan_layers
from signaling.feeds import EncodedAudioTrack, EncodedVideoTrack
from signaling.peers import ServerPeer
from signaling.quality import QualityController, QualityThresholds
from signaling.rtp_sender import HeldTrack, LeanRtpSender, negotiated_parameters
from signaling.sdp import OfferSummary

logger = logging.getLogger(__name__)

# RTP's clock rate for video.
VIDEO_CLOCK_RATE = 90_000
# The layers assumed before the host's first picture gives their sizes: those of a
# 720p camera, whose high layer needs the most bandwidth.
ASSUMED_LAYERS = plan_layers(1280, 720)


def start_quality(offer: OfferSummary, layers: dict[Quality, VideoLayer] | None) -> Quality:
    """Return the layer a viewer starts on: the high one, unless the bandwidth their
    offer declares (`b=AS` or `b=TIAS` in the video section) cannot carry it."""
    if offer.video_bandwidth_bps is None:
        return Quality.HIGH
    high = (layers or ASSUMED_LAYERS)[Quality.HIGH]
    if offer.video_bandwidth_bps >= high.bit_rate + OPUS_BIT_RATE:
        return Quality.HIGH
    return Quality.LOW


class ViewerFeedback:
    """Turns the RTCP that one viewer's receiver sends about its video into keyframe
    requests to the shared encoder, moves between layers and retransmissions."""

    def __init__(
        self,
        track: EncodedVideoTrack,
        controller: QualityController,
        ssrc: int,
        viewer: EncodeOnceViewer,
    ) -> None:
        self.track = track
        self.controller = controller
        self.ssrc = ssrc
        self.viewer = viewer
        self.loss_reports = 0
        self.receiver_reports = 0
        self.bandwidth_estimates = 0
        self.nacks = 0

    def __call__(self, packet: AnyRtcpPacket) -> None:
        now = time.monotonic()
        move: Quality | None = None
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            self.loss_reports += 1
            self.track.request_keyframe()
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            move = self._bandwidth_estimate(now, packet)
        elif isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    self.receiver_reports += 1
                    move = self.controller.receiver_report(now, report.fraction_lost, report.jitter)
        elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            self.nacks += 1
            self.viewer.retransmit_video(packet.lost)
        if move is not None:
            self.track.switch(move)

    def _bandwidth_estimate(self, now: float, packet: RtcpPsfbPacket) -> Quality | None:
        try:
            bit_rate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            return None
        feed = self.track.feed
        if self.ssrc not in ssrcs or feed is None:
            return None
        self.bandwidth_estimates += 1
        return self.controller.bandwidth_estimate(now, bit_rate, feed.meter.bit_rate(now))


class EncodeOnceViewer:
    """The tracks of one viewer, sent by a LeanRtpSender each from the moment their peer
    connects, or by aiortc's own senders when a lean sender cannot run or fails.

    aiortc's senders read HeldTracks, which stay empty while the lean senders send, and
    use a SharedPacketizer as their encoder, so that they send the live's packets as
    they are should they take over.
    """

    def __init__(
        self,
        peer: ServerPeer,
        audio: EncodedAudioTrack,
        video: EncodedVideoTrack,
        quality: Quality,
        thresholds: QualityThresholds | None,
    ) -> None:
        self.peer = peer
        self.audio = audio
        self.video = video
        self.lean_senders: dict[str, LeanRtpSender] = {}
        self._held = {"audio": HeldTrack(audio), "video": HeldTrack(video)}
        self._tasks: set[asyncio.Task[None]] = set()

        audio_sender = peer.add_track(self._held["audio"])
        video_sender = peer.add_track(self._held["video"])
        self._senders = {"audio": audio_sender, "video": video_sender}
        prefer_opus(peer.transceiver_of(audio_sender))
        prefer_h264(peer.transceiver_of(video_sender))
        use_shared_packetizer(audio_sender, OPUS_SAMPLE_RATE)
        use_shared_packetizer(video_sender, VIDEO_CLOCK_RATE)

        controller = QualityController(quality, time.monotonic(), thresholds, peer.peer_id)
        self.feedback = ViewerFeedback(video, controller, sender_ssrc(video_sender), self)
        listen_to_rtcp(video_sender, self.feedback)

    def start(self) -> None:
        self._spawn(self._send_when_connected(), "connect")

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for track in (*self._held.values(), self.audio, self.video):
            track.stop()

    def retransmit_video(self, lost: list[int]) -> None:
        sender = self.lean_senders.get("video")
        if sender is not None:
            sender.retransmit(lost)

    async def _send_when_connected(self) -> None:
        await self.peer.connected.wait()
        description = self.peer.pc.localDescription
        for kind, track in (("audio", self.audio), ("video", self.video)):
            sender = self._senders[kind]
            mid = self.peer.transceiver_of(sender).mid
            parameters = None
            if description is not None and mid is not None:
                parameters = negotiated_parameters(description.sdp, mid)
            lean = None
            if parameters is not None:
                lean = LeanRtpSender(f"{self.peer.peer_id} {kind}", sender, parameters)
                try:
                    lean.attach()
                except AttributeError as error:
                    logger.warning("%r: aiortc's own sender sends %s: %s", self.peer, kind, error)
                    lean = None
            if lean is None:
                self._held[kind].pass_through()
                continue
            self.lean_senders[kind] = lean
            track.set_sink(lean.send, self._fallback_to_aiortc(kind))

    def _fallback_to_aiortc(self, kind: str) -> Callable[[BaseException], None]:
        def fall_back(error: BaseException) -> None:
            logger.error(
                "%r: the lean %s sender failed; aiortc's sender takes over",
                self.peer,
                kind,
                exc_info=error,
            )
            self.lean_senders.pop(kind, None)
            self._held[kind].pass_through()

        return fall_back

    def _spawn(self, coroutine: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            if not done.cancelled() and done.exception() is not None:
                logger.error("%r: task %s failed", self.peer, name, exc_info=done.exception())

        task.add_done_callback(finished)
