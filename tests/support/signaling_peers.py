"""An in-process server, signaling clients and real aiortc publisher and viewer peers.

The publisher sends a numbered picture: each frame carries its number in a row of
black and white blocks, which survive VP8 compression, so a viewer can tell which of
the frames sent it decoded. Tests count frames by number and never rely on the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack
from aiortc.sdp import SessionDescription
from av import AudioFrame, VideoFrame
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from accounts import service as accounts_service
from core.database import Database
from core.settings import Settings
from server import create_app
from tests.support.chat_clients import create_live
from tests.support.clients import csrf_from
from tests.support.processes import free_port
from tests.support.synthetic_media import TONE_FRAME_SAMPLES, ToneTrack

# Every wait ends as soon as its event happens; this bounds a wait on a loaded CI machine.
EVENT_TIMEOUT_SECS = 20.0
PASSWORD = "cahier de textes"

PICTURE_WIDTH = 640
PICTURE_HEIGHT = 360
# Chromium's fake camera sends about 20 frames per second.
PICTURE_FRAME_RATE = 20
# RTP clock rate of video: pts count 1/90000 s.
VIDEO_CLOCK_RATE = 90_000
# The frame number is written as NUMBER_BITS blocks of BLOCK_WIDTH x BLOCK_HEIGHT pixels,
# most significant first. Numbers repeat every 2**NUMBER_BITS frames (51 s at 20 fps).
NUMBER_BITS = 10
BLOCK_WIDTH = PICTURE_WIDTH // NUMBER_BITS
BLOCK_HEIGHT = 48
BAR_WIDTH = 16
LUMA_DARK = 16
LUMA_BRIGHT = 235
# Frames counted per viewer by `count_window`: three seconds of picture.
WINDOW_FRAMES = 3 * PICTURE_FRAME_RATE
# Share of the frames sent that a viewer must decode. Frames are lost only to packet
# loss or a congested machine, so a correct relay stays well above it.
MIN_DECODED_SHARE = 2 / 3


class NumberedPictureTrack(VideoStreamTrack):
    """A 640x360 picture at 20 fps, paced like a camera: a moving white bar under a row
    of blocks that spell the frame's number. `frames_sent` counts the frames handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.frames_sent = 0
        self._first_sent_at: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._first_sent_at is None:
            self._first_sent_at = time.monotonic()
        else:
            due = self._first_sent_at + self.frames_sent / PICTURE_FRAME_RATE
            await asyncio.sleep(max(0.0, due - time.monotonic()))

        number = self.frames_sent
        frame = VideoFrame.from_ndarray(draw_numbered_picture(number), format="yuv420p")
        frame.pts = number * VIDEO_CLOCK_RATE // PICTURE_FRAME_RATE
        frame.time_base = Fraction(1, VIDEO_CLOCK_RATE)
        self.frames_sent += 1
        return frame


def draw_numbered_picture(number: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """The yuv420p planes of frame `number`, as one array of 1.5 x height rows."""
    picture = np.full((PICTURE_HEIGHT * 3 // 2, PICTURE_WIDTH), 128, dtype=np.uint8)
    luma = picture[:PICTURE_HEIGHT]
    luma[:] = LUMA_DARK
    for bit in range(NUMBER_BITS):
        if number >> (NUMBER_BITS - 1 - bit) & 1:
            luma[:BLOCK_HEIGHT, bit * BLOCK_WIDTH : (bit + 1) * BLOCK_WIDTH] = LUMA_BRIGHT
    left = (number * 8) % (PICTURE_WIDTH - BAR_WIDTH)
    luma[BLOCK_HEIGHT * 2 :, left : left + BAR_WIDTH] = LUMA_BRIGHT
    return picture


def read_frame_number(frame: VideoFrame) -> int:
    """The number drawn by `draw_numbered_picture`, modulo 2**NUMBER_BITS, read from the
    middle of each block so that blurred block edges do not matter. A picture of
    another size (a lower layer) is scaled back to the size it was drawn at."""
    luma = frame.reformat(format="gray", width=PICTURE_WIDTH, height=PICTURE_HEIGHT).to_ndarray()
    number = 0
    for bit in range(NUMBER_BITS):
        centre = luma[
            BLOCK_HEIGHT // 4 : BLOCK_HEIGHT * 3 // 4,
            bit * BLOCK_WIDTH + BLOCK_WIDTH // 4 : (bit + 1) * BLOCK_WIDTH - BLOCK_WIDTH // 4,
        ]
        number = number << 1 | int(centre.mean() > (LUMA_DARK + LUMA_BRIGHT) / 2)
    return number


def with_video_bandwidth(sdp: str, kbps: int) -> str:
    """Add `b=AS:<kbps>` to the video section of `sdp`, after its `c=` line."""
    lines = sdp.split("\r\n")
    in_video = False
    for index, line in enumerate(lines):
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("c="):
            lines.insert(index + 1, f"b=AS:{kbps}")
            return "\r\n".join(lines)
    raise ValueError("the SDP has no video section with a c= line")


def rtc_configuration() -> RTCConfiguration:
    # always an explicit empty list: without it aiortc contacts a public STUN server
    return RTCConfiguration(iceServers=[])


@dataclass
class Publisher:
    """The host's side: an aiortc peer sending a numbered picture and a tone."""

    video: NumberedPictureTrack = field(default_factory=NumberedPictureTrack)
    audio: ToneTrack = field(default_factory=ToneTrack)
    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(rtc_configuration()))

    async def offer(self) -> str:
        self.pc.addTransceiver(self.audio, direction="sendonly")
        self.pc.addTransceiver(self.video, direction="sendonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp: str = self.pc.localDescription.sdp
        return sdp

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def close(self) -> None:
        await self.pc.close()


class Viewer:
    """A viewer's aiortc peer that decodes what it receives and records the number of
    each video frame and the count and loudness of audio frames."""

    def __init__(self, publisher_video: NumberedPictureTrack) -> None:
        self.publisher_video = publisher_video
        self.pc = RTCPeerConnection(rtc_configuration())
        self.frame_numbers: list[int] = []
        # pts of each decoded video frame, in the order decoded
        self.frame_pts: list[int] = []
        # (width, height) of each decoded video frame, in the order decoded
        self.frame_sizes: list[tuple[int, int]] = []
        self.audio_frames = 0
        # samples of the decoded audio, which counts its duration whatever the frame size
        self.audio_samples = 0
        self.loudest_audio_rms = 0.0
        self.first_frame = asyncio.Event()
        self.connected = asyncio.Event()
        self._frame_waiters: list[tuple[int, asyncio.Event]] = []
        self._size_waiters: list[tuple[tuple[int, int], asyncio.Event]] = []
        self._consumers: list[asyncio.Task[None]] = []
        self.bandwidth_kbps: int | None = None
        self.answer_sdp = ""
        self._video_ssrc: int | None = None
        # with a value n, every n-th video RTP packet is dropped before the receiver
        # sees it, as a lossy link would
        self.drop_every: int | None = None
        self.video_packets_dropped = 0
        self.pc.on("track", self._track_received)
        self.pc.on("connectionstatechange", self._connection_state_changed)

    async def offer(self) -> str:
        """Return the offer to send; with `bandwidth_kbps`, its video section declares
        that bandwidth (`b=AS`), as a browser on a slow link would be made to."""
        self.pc.addTransceiver("audio", direction="recvonly")
        video = self.pc.addTransceiver("video", direction="recvonly")
        self._wrap_video_receiver(video.receiver)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp: str = self.pc.localDescription.sdp
        if self.bandwidth_kbps is not None:
            sdp = with_video_bandwidth(sdp, self.bandwidth_kbps)
        return sdp

    async def accept(self, answer_sdp: str) -> None:
        self.answer_sdp = answer_sdp
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    def video_ssrc(self) -> int:
        """The SSRC of the video stream the server sends this viewer, from its answer."""
        if self._video_ssrc is not None:
            return self._video_ssrc
        video = next(
            media
            for media in SessionDescription.parse(self.answer_sdp).media
            if media.kind == "video"
        )
        ssrc = video.ssrc_group[0].items[0] if video.ssrc_group else video.ssrc[0].ssrc
        self._video_ssrc = int(ssrc)
        return self._video_ssrc

    async def send_picture_loss(self) -> None:
        """Send an RTCP picture loss indication (PLI) for the video stream."""
        receiver = next(
            transceiver.receiver
            for transceiver in self.pc.getTransceivers()
            if transceiver.kind == "video"
        )
        # aiortc's receiver sends a PLI itself only after it sees a gap before a keyframe
        await receiver._send_rtcp_pli(self.video_ssrc())

    def _wrap_video_receiver(self, receiver: Any) -> None:
        # NOTE: wraps a private aiortc method, on the test's own viewer only, to drop
        # packets the way a lossy link would. Retransmissions (RTX, another SSRC) pass:
        # aiortc's jitter buffer stalls for 512 packets on a gap that is never filled.
        handle = receiver._handle_rtp_packet

        async def handle_or_drop(packet: Any, arrival_time_ms: int) -> None:
            if (
                self.drop_every is not None
                and packet.sequence_number % self.drop_every == 0
                and packet.ssrc == self.video_ssrc()
            ):
                self.video_packets_dropped += 1
                return
            await handle(packet, arrival_time_ms=arrival_time_ms)

        receiver._handle_rtp_packet = handle_or_drop

    def _connection_state_changed(self) -> None:
        if self.pc.connectionState == "connected":
            self.connected.set()

    def _track_received(self, track: MediaStreamTrack) -> None:
        consume = self._consume_video if track.kind == "video" else self._consume_audio
        self._consumers.append(asyncio.ensure_future(consume(track)))

    async def _consume_video(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, VideoFrame)
                number = self._absolute_number(read_frame_number(frame))
                if number < 0:
                    # A frame of the track before `follow()`, decoded late: the new
                    # track has not sent it, so it belongs to no count of the new one.
                    continue
                self.frame_numbers.append(number)
                if frame.pts is not None:
                    self.frame_pts.append(frame.pts)
                self.frame_sizes.append((frame.width, frame.height))
                self.first_frame.set()
                for number, event in self._frame_waiters:
                    if self.frame_numbers[-1] >= number:
                        event.set()
                for size, event in self._size_waiters:
                    if self.frame_sizes[-1] == size:
                        event.set()

    async def _consume_audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, AudioFrame)
                samples = frame.to_ndarray().astype(np.float64)
                rms = math.sqrt(float(np.mean(samples**2)))
                self.loudest_audio_rms = max(self.loudest_audio_rms, rms)
                self.audio_frames += 1
                self.audio_samples += frame.samples

    def _absolute_number(self, number_modulo: int) -> int:
        # the frame was sent at most a few hundred frames ago: take the latest number
        # sent so far that has these low bits
        period = 1 << NUMBER_BITS
        latest = self.publisher_video.frames_sent - 1
        return latest - ((latest - number_modulo) % period)

    def follow(self, publisher_video: NumberedPictureTrack) -> None:
        """Number frames after `publisher_video` from now on: a new host peer's track
        counts from 0 again."""
        self.publisher_video = publisher_video
        self.frame_numbers.clear()

    async def wait_for_frame_number(self, number: int) -> None:
        """Return once a frame numbered `number` or later has been decoded."""
        if self.frame_numbers and self.frame_numbers[-1] >= number:
            return
        event = asyncio.Event()
        self._frame_waiters.append((number, event))
        await asyncio.wait_for(event.wait(), EVENT_TIMEOUT_SECS)

    async def wait_for_frame_size(self, width: int, height: int) -> None:
        """Return once a frame of `width` x `height` has been decoded from now on."""
        event = asyncio.Event()
        waiter = ((width, height), event)
        self._size_waiters.append(waiter)
        try:
            await asyncio.wait_for(event.wait(), EVENT_TIMEOUT_SECS)
        finally:
            self._size_waiters.remove(waiter)

    def numbers_between(self, first: int, last: int) -> set[int]:
        return {number for number in self.frame_numbers if first <= number <= last}

    async def close(self) -> None:
        await self.pc.close()
        for consumer in self._consumers:
            consumer.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)


async def count_window(viewer: Viewer, publisher: Publisher) -> tuple[int, int, int]:
    """Count, over the next WINDOW_FRAMES frames sent, the video frames the viewer
    decodes, and the audio samples sent and received meanwhile. Samples, not frames:
    the server may pack audio into longer frames than the publisher's 20 ms.

    Returns (video frames decoded of the window, audio samples sent, audio received).
    """
    first = publisher.video.frames_sent
    last = first + WINDOW_FRAMES - 1
    audio_sent_before = publisher.audio.frames_sent * TONE_FRAME_SAMPLES
    audio_received_before = viewer.audio_samples

    # frames arrive in order, so once a later frame is decoded, no window frame is in flight
    await viewer.wait_for_frame_number(last + 1)

    decoded = len(viewer.numbers_between(first, last))
    audio_sent = publisher.audio.frames_sent * TONE_FRAME_SAMPLES - audio_sent_before
    audio_received = viewer.audio_samples - audio_received_before
    return decoded, audio_sent, audio_received


class SignalingClient:
    """One signaling socket, read frame by frame with a timeout on every wait."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.welcome: dict[str, Any] = {}
        # the reason of the server's close frame, once close_code() has read it
        self.close_reason: str | None = None

    @classmethod
    async def connect(
        cls, ws_url: str, live_id: int | str, cookie: str | None, **options: Any
    ) -> SignalingClient:
        headers = {"Cookie": cookie} if cookie else {}
        connection = await connect(
            f"{ws_url}/ws/live/{live_id}/signaling", additional_headers=headers, **options
        )
        return cls(connection)

    @classmethod
    async def open(cls, ws_url: str, live_id: int, cookie: str) -> SignalingClient:
        """Connect and read the welcome frame."""
        client = await cls.connect(ws_url, live_id, cookie)
        client.welcome = await client.recv_type("welcome")
        return client

    async def recv(self, timeout: float = EVENT_TIMEOUT_SECS) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.connection.recv(), timeout)
        frame = json.loads(raw)
        assert isinstance(frame, dict)
        return frame

    async def recv_type(self, frame_type: str) -> dict[str, Any]:
        """Return the next frame of `frame_type`, skipping `viewers`, `recording`,
        `state` and `host` frames, which arrive whenever the server has news."""
        while True:
            frame = await self.recv()
            if frame["type"] == frame_type:
                return frame
            assert frame["type"] in {"viewers", "recording", "state", "host"}, frame

    async def until(self, frame_type: str, **fields: Any) -> dict[str, Any]:
        """Return the first frame of `frame_type` with these field values, skipping others."""
        while True:
            frame = await self.recv()
            if frame["type"] == frame_type and all(frame.get(k) == v for k, v in fields.items()):
                return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(frame))

    async def send_raw(self, text: str) -> None:
        await self.connection.send(text)

    async def request_answer(self, frame_type: str, sdp: str) -> str:
        await self.send({"type": frame_type, "sdp": sdp})
        frame = await self.recv_type("answer")
        answer: str = frame["sdp"]
        return answer

    async def close_code(self, timeout: float = EVENT_TIMEOUT_SECS) -> int | None:
        """Read until the server closes; return the close code it sent."""
        try:
            while True:
                await asyncio.wait_for(self.connection.recv(), timeout)
        except ConnectionClosed as closed:
            self.close_reason = closed.rcvd.reason if closed.rcvd is not None else None
            return closed.rcvd.code if closed.rcvd is not None else None

    async def close(self) -> None:
        await self.connection.close()


@dataclass
class LiveSetting:
    """A running in-process server with a live, its host, a registered viewer and a
    stranger, each with a session cookie."""

    app: Any
    database: Database
    base_url: str
    ws_url: str
    live_id: int
    host_cookie: str
    viewer_cookie: str
    second_viewer_cookie: str
    stranger_cookie: str


async def log_in(base_url: str, email: str) -> str:
    """Log in through the form and return the Cookie header of the session."""
    async with httpx.AsyncClient(base_url=base_url, timeout=EVENT_TIMEOUT_SECS) as client:
        page = await client.get("/login")
        response = await client.post(
            "/login",
            data={"csrf_token": csrf_from(page.text), "email": email, "password": PASSWORD},
        )
        assert response.status_code == 303, response.text[:300]
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Any]:
    """Serve the application for `settings` with uvicorn in this event loop, on
    `settings.port` of the loopback interface; yield the application."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=settings.port,
        lifespan="on",
        ws_max_size=64 * 1024,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving_task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving_task.done():
                serving_task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.02)
        yield app
    finally:
        server.should_exit = True
        await serving_task


async def create_live_setting(app: Any, port: int) -> LiveSetting:
    """Create the accounts and the scheduled live of a LiveSetting through `app`, which
    serves on `port`, and log everyone in."""
    database: Database = app.state.database
    user_ids = []
    async with database.session() as session:
        for name in ("hote", "spectatrice", "spectateur", "inconnu"):
            user = await accounts_service.create_user(
                session,
                email=f"{name}@example.org",
                display_name=name.capitalize(),
                password=PASSWORD,
            )
            user_ids.append(user.id)
    live_id = await create_live(database, user_ids[0], user_ids[1:3])

    base_url = f"http://127.0.0.1:{port}"
    return LiveSetting(
        app=app,
        database=database,
        base_url=base_url,
        ws_url=f"ws://127.0.0.1:{port}",
        live_id=live_id,
        host_cookie=await log_in(base_url, "hote@example.org"),
        viewer_cookie=await log_in(base_url, "spectatrice@example.org"),
        second_viewer_cookie=await log_in(base_url, "spectateur@example.org"),
        stranger_cookie=await log_in(base_url, "inconnu@example.org"),
    )


@contextlib.asynccontextmanager
async def running_live(data_dir: Path, **settings_fields: Any) -> AsyncIterator[LiveSetting]:
    """Serve the application with uvicorn in this event loop on a free loopback port,
    with a scheduled live, until the block ends."""
    settings = Settings(
        port=free_port(), data_dir=data_dir, secret_key="test-secret", **settings_fields
    )
    async with serving(settings) as app:
        yield await create_live_setting(app, settings.port)


async def start_publishing(setting: LiveSetting) -> tuple[SignalingClient, Publisher]:
    """Connect as the host, publish, and return once the live is `live` (at once when
    the host publishes again into a live in progress)."""
    host = await SignalingClient.open(setting.ws_url, setting.live_id, setting.host_cookie)
    publisher = Publisher()
    answer = await host.request_answer("publish", await publisher.offer())
    await publisher.accept(answer)
    if host.welcome["state"] != "live":
        await host.until("state", state="live")
    return host, publisher


async def start_watching(
    setting: LiveSetting, cookie: str, publisher: Publisher, bandwidth_kbps: int | None = None
) -> tuple[SignalingClient, Viewer]:
    """Connect as a viewer and watch; return once the viewer's peer is connected. With
    `bandwidth_kbps`, the offer declares that bandwidth for the video."""
    client = await SignalingClient.open(setting.ws_url, setting.live_id, cookie)
    viewer = Viewer(publisher.video)
    viewer.bandwidth_kbps = bandwidth_kbps
    answer = await client.request_answer("watch", await viewer.offer())
    await viewer.accept(answer)
    await asyncio.wait_for(viewer.connected.wait(), EVENT_TIMEOUT_SECS)
    return client, viewer


async def watch_on(socket: SignalingClient, publisher: Publisher) -> Viewer:
    """Watch on `socket` with a new viewer peer; return once it decoded a frame."""
    viewer = Viewer(publisher.video)
    await viewer.accept(await socket.request_answer("watch", await viewer.offer()))
    await asyncio.wait_for(viewer.connected.wait(), EVENT_TIMEOUT_SECS)
    await asyncio.wait_for(viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)
    return viewer
