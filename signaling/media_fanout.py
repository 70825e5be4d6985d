"""The two media paths between a live's published tracks and its viewers and recorder.

`EncodeOnceFanout` (the default) encodes each video layer and the audio once per live,
and packetizes each packet once. Each viewer's lean RTP sender (signaling.rtp_sender)
only writes RTP headers and encrypts those payloads. `RelayFanout` is aiortc's
MediaRelay, where every viewer's sender encodes on its own; it stays for comparison
(benchmarks/media_fanout.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from core.settings import MediaPath
from signaling.broadcast import LiveBroadcast
from signaling.peers import ServerPeer
from signaling.quality import QualityThresholds
from signaling.sdp import InvalidOfferError, OfferSummary
from signaling.tasks import TaskSupervisor
from signaling.tracks import PublishedTrack, RelaySubscription
from signaling.viewer_media import EncodeOnceViewer, start_quality

logger = logging.getLogger(__name__)

# Called with the exception of a fan-out task that failed.
FailureHandler = Callable[[BaseException], None]


class ViewerMedia(Protocol):
    """The tracks a viewer peer sends, and how it follows the viewer's link."""

    def start(self) -> None:
        """Start sending, once the peer's answer is set."""

    def stop(self) -> None:
        """Stop sending and stop the tracks; the peer connection is closed by its owner."""


class Fanout(Protocol):
    """One live's media path, between its two published tracks and its consumers."""

    # True when the recorder's video track yields H.264 packets, not decoded frames
    recorder_takes_packets: bool

    def start(self, tasks: TaskSupervisor, on_failure: FailureHandler) -> None:
        """Start reading the published tracks, in tasks of `tasks`."""

    async def wait_for_first_media(self) -> None:
        """Return once the first audio or video frame of the host has arrived."""

    def attach_viewer(
        self, peer: ServerPeer, offer: OfferSummary, thresholds: QualityThresholds | None
    ) -> ViewerMedia:
        """Add the live's tracks to a viewer's `peer`, before it creates its answer to
        `offer`. Raise InvalidOfferError when the offer cannot receive them."""

    def recorder_tracks(self) -> tuple[MediaStreamTrack, MediaStreamTrack]:
        """Return new (video, audio) tracks for the recorder, which stops them."""

    async def close(self) -> None:
        """Release what the path holds; the tracks it handed out are stopped already."""


def create_fanout(
    media_path: MediaPath, live_id: int, video: PublishedTrack, audio: PublishedTrack
) -> Fanout:
    if media_path is MediaPath.RELAY:
        return RelayFanout(video, audio)
    return EncodeOnceFanout(live_id, video, audio)


class RelayViewer:
    def __init__(self, tracks: list[MediaStreamTrack]) -> None:
        self.tracks = tracks

    def start(self) -> None:
        pass

    def stop(self) -> None:
        for track in self.tracks:
            track.stop()


class RelayFanout:
    """aiortc's MediaRelay: each consumer gets a copy of every decoded frame, and each
    viewer's sender encodes it (VP8 or H.264, as negotiated)."""

    recorder_takes_packets = False

    def __init__(self, video: PublishedTrack, audio: PublishedTrack) -> None:
        self.relay = MediaRelay()
        self.video = video
        self.audio = audio

    def start(self, tasks: TaskSupervisor, on_failure: FailureHandler) -> None:
        pass

    async def wait_for_first_media(self) -> None:
        # Two probes start the relay's reading of both tracks, which drains the host
        # peer's receive queues from now on. The first frame of either means media.
        probes = [self.relay.subscribe(track, buffered=False) for track in (self.video, self.audio)]
        waits = [asyncio.ensure_future(probe.recv()) for probe in probes]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
            for probe in probes:
                probe.stop()
            await asyncio.gather(*waits, return_exceptions=True)

    def attach_viewer(
        self, peer: ServerPeer, offer: OfferSummary, thresholds: QualityThresholds | None
    ) -> RelayViewer:
        tracks: list[MediaStreamTrack] = [
            RelaySubscription(self.relay.subscribe(self.audio, buffered=False)),
            RelaySubscription(self.relay.subscribe(self.video, buffered=False)),
        ]
        for track in tracks:
            peer.add_track(track)
        return RelayViewer(tracks)

    def recorder_tracks(self) -> tuple[MediaStreamTrack, MediaStreamTrack]:
        # unbuffered: a recorder that falls behind skips frames instead of growing a queue
        return (
            RelaySubscription(self.relay.subscribe(self.video, buffered=False)),
            RelaySubscription(self.relay.subscribe(self.audio, buffered=False)),
        )

    async def close(self) -> None:
        pass


class EncodeOnceFanout:
    """The live's shared encoders (`LiveBroadcast`), with each viewer's video limited to
    H.264 and followed by a quality controller."""

    recorder_takes_packets = True

    def __init__(self, live_id: int, video: PublishedTrack, audio: PublishedTrack) -> None:
        self.broadcast = LiveBroadcast(live_id, video, audio)

    def start(self, tasks: TaskSupervisor, on_failure: FailureHandler) -> None:
        self.broadcast.start(tasks, on_failure)

    async def wait_for_first_media(self) -> None:
        await self.broadcast.first_media.wait()

    def attach_viewer(
        self, peer: ServerPeer, offer: OfferSummary, thresholds: QualityThresholds | None
    ) -> EncodeOnceViewer:
        if not offer.offers_h264_baseline:
            raise InvalidOfferError(
                "L'offre SDP ne propose pas la vidéo H.264 que le live diffuse : "
                "utilisez un navigateur récent."
            )
        quality = start_quality(offer, self.broadcast.layers)
        audio, video = self.broadcast.viewer_tracks(quality, peer.peer_id)
        viewer = EncodeOnceViewer(peer, audio, video, quality, thresholds)
        logger.info(
            "%r live=%s: starts on the %s layer (declared %s bit/s)",
            peer,
            peer.live_id,
            quality.value,
            offer.video_bandwidth_bps,
        )
        return viewer

    def recorder_tracks(self) -> tuple[MediaStreamTrack, MediaStreamTrack]:
        return self.broadcast.recorder_tracks()

    async def close(self) -> None:
        await self.broadcast.close()
