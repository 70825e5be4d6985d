"""Light viewers for benchmarks/media_fanout.py and the soak test: aiortc peers that
count the video frames they receive complete, without decoding them.

    python benchmarks/media_viewers.py --ws-url ws://127.0.0.1:PORT --live-id N --count 50

Started through `ViewerProcess`, with the session cookie in VEILLEE_BENCHMARK_COOKIE. Each
viewer opens a signaling socket, sends `watch` and negotiates a real peer connection
(ICE, DTLS, SRTP), so the server does for it what it does for a browser. Only the
receiving end is cut short. Each RTP packet is counted from its 12-byte header, which
SRTP leaves in clear, as it leaves the socket: it is neither decrypted nor parsed,
buffered or decoded by aiortc. So one process can hold dozens of viewers on a shared
2-core machine. The receivers still send RTCP receiver reports, from the same sequence
numbers and timestamps, but no NACK, PLI or REMB.

The process prints `ready` once every viewer has received a complete frame, or after
READY_TIMEOUT_SECS, when those still waiting count as receiving nothing. It then replies
to each `report` line on stdin with a JSON list of the complete video frames of each
viewer so far, and closes everything when stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_DIR))

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics  # noqa: E402
from aiortc.sdp import SessionDescription  # noqa: E402

from tests.support.signaling_peers import SignalingClient, rtc_configuration  # noqa: E402

# Viewers of one process negotiate this many at a time, so that a process of 50 does
# not send 50 offers to the server in the same instant.
CONNECT_BATCH = 10
READY_TIMEOUT_SECS = 60.0
# RTP header fields after the first byte: marker and payload type, sequence number,
# timestamp, SSRC (RFC 3550 section 5.1).
RTP_HEADER = struct.Struct("!BHII")
RTP_HEADER_BYTES = 12
MARKER_BIT = 0x80
# RTP and RTCP share the port (RFC 5761): a first byte from 128 to 191 is RTP or RTCP,
# and RTCP's packet types put 192 to 223 in the second byte.
RTP_FIRST_BYTES = range(128, 192)
RTCP_SECOND_BYTES = range(192, 224)
VIDEO_CLOCK_RATE = 90_000
AUDIO_CLOCK_RATE = 48_000
# How long the driving process waits for the reply to a `report` line.
REPORT_TIMEOUT_SECS = 30.0


@dataclass
class HeaderFields:
    """The fields of an RTP packet that aiortc's receiver statistics read."""

    sequence_number: int
    timestamp: int


class FrameCounter:
    """Counts the video frames whose packets all arrived, from sequence numbers and the
    marker bit that ends each frame. A gap breaks the frame it falls in."""

    def __init__(self) -> None:
        self.complete = 0
        self.packets = 0
        self.lost = 0
        self._next: int | None = None
        self._broken = False

    def add(self, sequence_number: int, marker: bool) -> None:
        self.packets += 1
        if self._next is not None and sequence_number != self._next:
            self.lost += (sequence_number - self._next) & 0xFFFF
            self._broken = True
        self._next = (sequence_number + 1) & 0xFFFF
        if marker:
            if not self._broken:
                self.complete += 1
            self._broken = False


class LightViewer:
    """One viewer: a signaling socket and a peer connection whose RTP is only counted."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(rtc_configuration())
        self.video = FrameCounter()
        self.audio_packets = 0
        self.client: SignalingClient | None = None
        self._video_ssrc = -1
        self._audio_ssrc = -1
        # maps SSRC to the statistics aiortc's receiver reports on in its RTCP, and to
        # that receiver's own map of statistics, which gets the entry on the first packet
        # (aiortc's report cannot describe a stream without one)
        self._statistics: dict[int, StreamStatistics] = {}
        self._report_streams: dict[int, dict[int, StreamStatistics]] = {}
        self._pass_datagram: Callable[[bytes, int], None] = lambda data, component: None

    async def watch(self, ws_url: str, live_id: int, cookie: str) -> None:
        self.client = await SignalingClient.open(ws_url, live_id, cookie)
        audio = self.pc.addTransceiver("audio", direction="recvonly")
        video = self.pc.addTransceiver("video", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await self.client.request_answer("watch", self.pc.localDescription.sdp)
        self._read_ssrcs(answer)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        # bundling settles on one transport for both sections once the answer is set
        self._count_instead_of_decoding(audio.receiver, video.receiver)

    def _take_datagram(self, data: bytes, component: int) -> None:
        """Count an RTP datagram from its header, and pass DTLS and RTCP datagrams on to
        aiortc. STUN messages never get here: aioice handles them before."""
        if (
            len(data) >= RTP_HEADER_BYTES
            and data[0] in RTP_FIRST_BYTES
            and data[1] not in RTCP_SECOND_BYTES
        ):
            self._count(data)
            return
        self._pass_datagram(data, component)

    def _read_ssrcs(self, answer: str) -> None:
        for media in SessionDescription.parse(answer).media:
            if not media.ssrc:
                continue
            ssrc = int(media.ssrc_group[0].items[0]) if media.ssrc_group else media.ssrc[0].ssrc
            if media.kind == "video":
                self._video_ssrc = ssrc
                self._statistics[ssrc] = StreamStatistics(VIDEO_CLOCK_RATE)
            elif media.kind == "audio":
                self._audio_ssrc = ssrc
                self._statistics[ssrc] = StreamStatistics(AUDIO_CLOCK_RATE)

    def _count_instead_of_decoding(self, audio: RTCRtpReceiver, video: RTCRtpReceiver) -> None:
        # NOTE: private aiortc 1.16 and aioice internals, in this benchmark only. The
        # receivers' RTCP task reports on their private statistics, which the counter
        # feeds, and the ICE connection hands each datagram to the counter first.
        for receiver, kind in ((audio, "audio"), (video, "video")):
            ssrc = self._audio_ssrc if kind == "audio" else self._video_ssrc
            streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
            self._report_streams[ssrc] = streams
        connection = video.transport.transport._connection
        self._pass_datagram = connection.data_received
        connection.data_received = self._take_datagram  # type: ignore[method-assign]

    def _count(self, data: bytes) -> None:
        marker_and_type, sequence_number, timestamp, ssrc = RTP_HEADER.unpack_from(data, 1)
        statistics = self._statistics.get(ssrc)
        if statistics is not None:
            # StreamStatistics.add reads only these two fields of its packet
            statistics.add(HeaderFields(sequence_number, timestamp))  # type: ignore[arg-type]
            report_streams = self._report_streams.get(ssrc)
            if report_streams is not None and ssrc not in report_streams:
                report_streams[ssrc] = statistics
        if ssrc == self._video_ssrc:
            self.video.add(sequence_number, bool(marker_and_type & MARKER_BIT))
        elif ssrc == self._audio_ssrc:
            self.audio_packets += 1

    async def close(self) -> None:
        await self.pc.close()
        if self.client is not None:
            await self.client.close()


async def connect_all(ws_url: str, live_id: int, cookie: str, count: int) -> list[LightViewer]:
    viewers = [LightViewer() for _ in range(count)]
    for start in range(0, count, CONNECT_BATCH):
        batch = viewers[start : start + CONNECT_BATCH]
        await asyncio.gather(*(viewer.watch(ws_url, live_id, cookie) for viewer in batch))
    deadline = time.monotonic() + READY_TIMEOUT_SECS
    while any(viewer.video.complete == 0 for viewer in viewers):
        if time.monotonic() > deadline:
            # they stay, and count as receiving nothing: the measure says it
            waiting = sum(1 for viewer in viewers if viewer.video.complete == 0)
            print(
                f"media_viewers: {waiting} of {count} viewers received no complete frame "
                f"in {READY_TIMEOUT_SECS:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            break
        await asyncio.sleep(0.1)
    return viewers


async def serve(ws_url: str, live_id: int, cookie: str, count: int) -> None:
    viewers = await connect_all(ws_url, live_id, cookie, count)
    print("ready", flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        report: dict[str, Any] = {
            "frames": [viewer.video.complete for viewer in viewers],
            "lost_packets": sum(viewer.video.lost for viewer in viewers),
            "video_packets": sum(viewer.video.packets for viewer in viewers),
            "audio_packets": sum(viewer.audio_packets for viewer in viewers),
        }
        print(json.dumps(report), flush=True)

    for viewer in viewers:
        await viewer.close()


class ViewerProcess:
    """A process of `count` light viewers of this module, driven over its stdin and
    stdout."""

    def __init__(self, ws_url: str, live_id: int, cookie: str, count: int) -> None:
        self.count = count
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--ws-url",
                ws_url,
                "--live-id",
                str(live_id),
                "--count",
                str(count),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "VEILLEE_BENCHMARK_COOKIE": cookie},
            text=True,
        )

    async def read_line(self, timeout_secs: float) -> str:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout_secs)
        if not line:
            raise RuntimeError(f"viewer process exited with code {self.process.wait()}")
        return line.strip()

    async def report(self) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        report: dict[str, Any] = json.loads(await self.read_line(REPORT_TIMEOUT_SECS))
        return report

    def stop(self) -> None:
        """Close stdin, which ends the process; kill it by its PID if it lingers."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ws-url", required=True, help="the server's ws:// origin")
    parser.add_argument("--live-id", type=int, required=True, help="the live to watch")
    parser.add_argument("--count", type=int, required=True, help="viewers in this process")
    arguments = parser.parse_args()
    cookie = os.environ["VEILLEE_BENCHMARK_COOKIE"]
    asyncio.run(serve(arguments.ws_url, arguments.live_id, cookie, arguments.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
