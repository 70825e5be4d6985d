"""The files of a live's HLS stream: fMP4 segments (CMAF), a media playlist per quality
and a master playlist, muxed from packets that are already encoded.

Each quality has its own ffmpeg `hls` muxer, which carries that layer's H.264 and the
live's Opus in the same segments and cuts a segment at each keyframe. It keeps a
sliding window of segments in its playlist and deletes the older ones. Chromium plays Opus in
fMP4 through Media Source Extensions, so the audio is the viewers' Opus as it is. These
classes are not thread-safe: the HLS writer thread of the live owns them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream

from signaling.encoding import (
    NOMINAL_FRAME_RATE,
    OPUS_BIT_RATE,
    OPUS_FRAME_MILLISECONDS,
    OPUS_LAYOUT,
    OPUS_SAMPLE_RATE,
    OPUS_TIME_BASE,
    VIDEO_TIME_BASE,
    Quality,
    VideoLayer,
)

logger = logging.getLogger(__name__)

MASTER_PLAYLIST = "master.m3u8"
# The muxer cuts a segment at the first keyframe this long after the previous cut. The
# shared encoder forces a keyframe every 1.9 s, so each segment lasts about 1.9 s, and
# shorter after a keyframe that a viewer or the recorder requested.
SEGMENT_MIN_SECS = 1
# Segments listed in a media playlist: about 11 s of live. hls.js 1.7 starts three
# target durations before the newest segment's end (its liveSyncDurationCount), which
# puts an HLS viewer 6 to 8 s behind the WebRTC viewers.
PLAYLIST_SEGMENTS = 6
# The CODECS attribute of every variant: H.264 constrained baseline level 3.1 (the
# shared encoder's profile-level-id 42e01f) and Opus.
VARIANT_CODECS = "avc1.42e01f,opus"
# BANDWIDTH of a variant is its peak bit rate. The rate control may exceed its target
# for a keyframe, so the peak is estimated at a quarter above the target: an estimate,
# not a measurement.
PEAK_BIT_RATE_FACTOR = 1.25
# The duration of the last video packet of a stream, which has no successor to take it
# from: one frame at the nominal rate, in 90 kHz ticks.
LAST_FRAME_TICKS = int(1 / (NOMINAL_FRAME_RATE * VIDEO_TIME_BASE))


def variant_files(quality: Quality) -> tuple[str, str, str]:
    """Return the media playlist, initialization segment and segment pattern names of
    `quality`, such as ("high.m3u8", "high-init.mp4", "high-%d.m4s")."""
    return f"{quality.value}.m3u8", f"{quality.value}-init.mp4", f"{quality.value}-%d.m4s"


def master_playlist(layers: dict[Quality, VideoLayer]) -> str:
    """Return the master playlist that lists a variant per layer, the high one first."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for quality in Quality:
        layer = layers[quality]
        average = layer.bit_rate + OPUS_BIT_RATE
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={int(average * PEAK_BIT_RATE_FACTOR)},"
            f"AVERAGE-BANDWIDTH={average},RESOLUTION={layer.width}x{layer.height},"
            f'CODECS="{VARIANT_CODECS}"'
        )
        lines.append(variant_files(quality)[0])
    return "\n".join(lines) + "\n"


def write_master_playlist(directory: Path, layers: dict[Quality, VideoLayer]) -> None:
    """Write the master playlist through a temporary file, so that a reader never sees
    half of it."""
    temporary = directory / f".{MASTER_PLAYLIST}.tmp"
    temporary.write_text(master_playlist(layers))
    os.replace(temporary, directory / MASTER_PLAYLIST)


class VariantMuxer:
    """One quality of the stream: the layer's H.264 packets and the live's Opus packets,
    stamped on the stream's timeline, muxed into fMP4 segments and a playlist.

    The muxer needs each packet's duration, and a video packet's duration is the gap to
    the next one, so each video packet is held until the next arrives.
    """

    def __init__(self, directory: Path, layer: VideoLayer) -> None:
        self.layer = layer
        playlist, init, segments = variant_files(layer.quality)
        self.playlist_path = directory / playlist
        self.playlist_written = False
        self.video_packets = 0
        self.audio_packets = 0
        self._pending_video: Packet[Any] | None = None

        container = av.open(
            str(self.playlist_path),
            "w",
            format="hls",
            options={
                "hls_time": str(SEGMENT_MIN_SECS),
                "hls_list_size": str(PLAYLIST_SEGMENTS),
                "hls_segment_type": "fmp4",
                "hls_fmp4_init_filename": init,
                "hls_segment_filename": str(directory / segments),
                # Delete the segments that left the playlist, but one, for players still
                # loading it. Write each segment under a temporary name and rename it
                # once complete, so the server never sends half of one.
                "hls_flags": "delete_segments+independent_segments+temp_file",
                # the interleaver keeps packets until each stream has one, so without
                # a limit a video stall would delay 10 s of audio
                "max_interleave_delta": "1000000",  # microseconds
            },
        )

        # no encoder for the video: the muxer takes its SPS and PPS from the first keyframe
        self._video: Stream = container.add_mux_stream(
            "h264",
            rate=NOMINAL_FRAME_RATE,
            width=layer.width,
            height=layer.height,
            time_base=VIDEO_TIME_BASE,
        )

        # NOTE: a libopus encoder that never encodes: PyAV 18 sets a stream's channel
        # layout and Opus header (extradata) only through a codec context, and the
        # muxer needs both. Its settings match the live's Opus encoder.
        audio = container.add_stream("libopus", rate=OPUS_SAMPLE_RATE, layout=OPUS_LAYOUT)
        assert isinstance(audio, AudioStream)
        audio.codec_context.format = "s16"
        audio.codec_context.bit_rate = OPUS_BIT_RATE
        audio.codec_context.time_base = OPUS_TIME_BASE
        audio.codec_context.options = {"frame_duration": str(OPUS_FRAME_MILLISECONDS)}
        self._audio: Stream = audio
        self._container: OutputContainer = container

    def __repr__(self) -> str:
        return f"VariantMuxer({self.layer.quality.value})"

    def write_video(self, packet: Packet[Any]) -> None:
        """Mux the H.264 `packet`, whose pts is on the stream's timeline in 90 kHz ticks;
        the first one is a keyframe."""
        previous, self._pending_video = self._pending_video, packet
        if previous is not None and previous.pts is not None and packet.pts is not None:
            previous.duration = max(1, packet.pts - previous.pts)
            self._mux(previous, self._video)
            self.video_packets += 1

    def write_audio(self, packet: Packet[Any]) -> None:
        """Mux the Opus `packet`, whose pts is on the stream's timeline in samples."""
        self._mux(packet, self._audio)
        self.audio_packets += 1

    def close(self) -> None:
        """Mux the pending video packet and close the muxer, which writes the last segment and
        ends the playlist with #EXT-X-ENDLIST."""
        last, self._pending_video = self._pending_video, None
        if last is not None:
            last.duration = LAST_FRAME_TICKS
            self._mux(last, self._video)
            self.video_packets += 1
        self._container.close()

    def abort(self) -> None:
        """Close the muxer after a failure, without raising a second error."""
        try:
            self._container.close()
        except (av.FFmpegError, OSError) as error:
            logger.warning("%r: closing after a failure failed too: %s", self, error)

    def _mux(self, packet: Packet[Any], stream: Stream) -> None:
        packet.stream = stream
        self._container.mux(packet)
        if not self.playlist_written:
            self.playlist_written = self.playlist_path.is_file()
