"""The encode-once media path of a live: decode the host's tracks once, encode each video
layer and the audio once, and hand the encoded packets to every viewer and the recorder.

    PublishedTrack(video) -> one reader -> LayerEncoder per layer (one worker thread)
        -> PacketFeed per layer -> EncodedVideoTrack per viewer, and one for the recorder
    PublishedTrack(audio) -> one reader -> OpusEncoder -> PacketFeed -> EncodedAudioTrack
        per viewer; and the decoded frames -> FrameQueueTrack -> the recorder (AAC)

A layer that no track reads is not encoded. A track that starts reading it requests a
keyframe, so its first packet is one.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.packet import Packet
from av.video.frame import VideoFrame

from signaling.aiortc_hooks import packetize_audio, packetize_video
from signaling.encoding import LayerEncoder, OpusEncoder, Quality, VideoLayer, plan_layers
from signaling.feeds import (
    EncodedAudioTrack,
    EncodedVideoTrack,
    FrameQueueTrack,
    PacketFeed,
)
from signaling.keyframes import KeyframePolicy
from signaling.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

# Decoded frames may wait this many for the encoder thread. Frames reach the event loop
# in bursts when it is busy, so a single slot would drop the first of two frames that
# arrive together. Above it the oldest waiting frame is dropped, so the backlog delays
# frames by at most 4 frames (133 ms at 30 frames per second).
ENCODER_BACKLOG_FRAMES = 4


@dataclass
class BroadcastCounts:
    """Frame counts of one broadcast since it started, read by tests and benchmarks."""

    video_frames_received: int = 0
    # frames dropped from a full backlog before the encoder thread took them
    video_frames_skipped: int = 0
    audio_frames_received: int = 0


class LiveBroadcast:
    """The shared encoders of one live, logged as `LiveBroadcast(<live id>)`.

    `start` begins reading the two published tracks; `close` stops the readers and the
    encoder thread. The tracks it hands out are stopped by their owners.
    """

    def __init__(
        self,
        live_id: int,
        video: MediaStreamTrack,
        audio: MediaStreamTrack,
        policy_factory: Callable[[], KeyframePolicy] = KeyframePolicy,
    ) -> None:
        self.live_id = live_id
        self._video = video
        self._audio = audio
        self.video_feeds = {
            quality: PacketFeed(f"live {live_id} {quality.value}", quality, policy_factory())
            for quality in Quality
        }
        self.audio_feed = PacketFeed(f"live {live_id} audio")
        self.layers: dict[Quality, VideoLayer] | None = None
        self.encoders: dict[Quality, LayerEncoder] = {}
        self.counts = BroadcastCounts()
        self.first_media = asyncio.Event()
        self._opus = OpusEncoder()
        self._audio_frame_tracks: list[FrameQueueTrack] = []
        # frames waiting for the encoder thread, with the time each arrived
        self._backlog: collections.deque[tuple[VideoFrame, float]] = collections.deque()
        self._frame_ready = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"encoder-live-{live_id}"
        )

    def __repr__(self) -> str:
        return f"LiveBroadcast({self.live_id})"

    def start(
        self, tasks: TaskSupervisor, on_failure: Callable[[BaseException], None] | None = None
    ) -> None:
        """Start the readers and the video encoder as tasks of `tasks`; `on_failure`
        hears of any of them failing."""
        tasks.spawn(self._read_video(), "video reader", on_failure)
        tasks.spawn(self._encode_video(), "video encoder", on_failure)
        tasks.spawn(self._read_audio(), "audio reader", on_failure)

    def viewer_tracks(
        self, quality: Quality, name: str
    ) -> tuple[EncodedAudioTrack, EncodedVideoTrack]:
        """Return a new audio and video track for one viewer, starting on `quality`."""
        return (
            EncodedAudioTrack(self.audio_feed, name),
            EncodedVideoTrack(self.video_feeds, quality, name),
        )

    def recorder_tracks(self) -> tuple[EncodedVideoTrack, FrameQueueTrack]:
        """Return the recorder's tracks: the high layer's packets, and the decoded audio
        for the recorder to encode to AAC."""
        audio = FrameQueueTrack(f"live {self.live_id} recorder")
        self._audio_frame_tracks.append(audio)
        video = EncodedVideoTrack(self.video_feeds, Quality.HIGH, f"live {self.live_id} recorder")
        return video, audio

    async def close(self) -> None:
        """Shut the encoder thread down; the caller has cancelled the reader tasks."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        for track in self._audio_frame_tracks:
            track.stop()
        logger.info(
            "%r: closed; %d video frames received, %d skipped, encoded %s",
            self,
            self.counts.video_frames_received,
            self.counts.video_frames_skipped,
            {quality.value: encoder.frames_encoded for quality, encoder in self.encoders.items()},
        )

    async def _read_video(self) -> None:
        while True:
            try:
                frame = await self._video.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, VideoFrame):
                raise TypeError(f"video track returned {type(frame).__name__}")
            self.counts.video_frames_received += 1
            self.first_media.set()
            if len(self._backlog) >= ENCODER_BACKLOG_FRAMES:
                self._backlog.popleft()
                self.counts.video_frames_skipped += 1
            self._backlog.append((frame, time.monotonic()))
            self._frame_ready.set()

    async def _encode_video(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._backlog:
                self._frame_ready.clear()
                await self._frame_ready.wait()
                continue
            frame, arrived = self._backlog.popleft()

            if self.layers is None:
                self._open_layers(frame)

            # keyframe decisions stay on the event loop, where requests arrive
            keyframes = {}
            for quality, feed in self.video_feeds.items():
                if feed.consumer_count == 0 or feed.policy is None:
                    continue
                keyframes[quality] = feed.policy.decide(arrived) is not None
            if not keyframes:
                continue

            packets = await loop.run_in_executor(
                self._executor, self._encode_layers, frame, keyframes
            )
            for quality, layer_packets in packets.items():
                for packet in layer_packets:
                    packetize_video(packet, arrived)
                    self.video_feeds[quality].publish(packet)

    def _open_layers(self, frame: VideoFrame) -> None:
        self.layers = plan_layers(frame.width, frame.height)
        self.encoders = {quality: LayerEncoder(layer) for quality, layer in self.layers.items()}
        logger.info(
            "%r: host sends %dx%d; layers %s",
            self,
            frame.width,
            frame.height,
            ", ".join(str(layer) for layer in self.layers.values()),
        )

    def _encode_layers(
        self, frame: VideoFrame, keyframes: dict[Quality, bool]
    ) -> dict[Quality, list[Packet[Any]]]:
        """Body of the encoder thread: encode `frame` in each layer that has readers."""
        return {
            quality: self.encoders[quality].encode(frame, keyframe)
            for quality, keyframe in keyframes.items()
        }

    async def _read_audio(self) -> None:
        while True:
            try:
                frame = await self._audio.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, AudioFrame):
                raise TypeError(f"audio track returned {type(frame).__name__}")
            self.counts.audio_frames_received += 1
            self.first_media.set()
            for track in self._audio_frame_tracks:
                track.push(frame)
            if self.audio_feed.consumer_count:
                # 0.1 to 0.2 ms a frame: cheaper inline than a hop to a thread
                arrived = time.monotonic()
                for packet in self._opus.encode(frame):
                    packetize_audio(packet, arrived)
                    self.audio_feed.publish(packet)
