"""Each live's media on this server process: the host peer, the media path, the viewer
peers and the recorder, and the manager that maps live ids to them (`app.state.media`).

Media path: host browser -> host peer -> PublishedTrack (one per kind) -> the live's
fan-out (signaling/media_fanout.py): by default one encoder per video layer and one for the
audio, whose packets every viewer peer and the recorder read. Browsers never connect
to each other.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import secrets
import time
import weakref
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.exc import SQLAlchemyError

from core.database import Database
from core.settings import Settings
from live.lifecycle import InvalidTransitionError, transition
from live.models import Live, LiveState
from recordings.models import RecordingStatus
from signaling.hls import LiveHls, create_live_hls
from signaling.hls_folders import HlsWriter
from signaling.host_presence import HostStatus, host_frame, record_host_away
from signaling.media_fanout import EncodeOnceFanout, Fanout, ViewerMedia, create_fanout
from signaling.peers import PeerRole, ServerPeer
from signaling.protocol import ErrorCode, ProtocolError
from signaling.quality import QualityThresholds
from signaling.recording import LiveRecording, Recordings
from signaling.sdp import InvalidOfferError, OfferPurpose, check_offer
from signaling.tasks import TaskSupervisor
from signaling.tracks import PublishedTrack

logger = logging.getLogger(__name__)

# Lives in these states never broadcast again.
FINISHED_STATES = frozenset({LiveState.ENDED, LiveState.CANCELLED})
# Lives in these states may be ended by their host.
ENDABLE_STATES = frozenset({LiveState.LIVE, LiveState.INTERRUPTED})


class Listener(Protocol):
    """An open signaling socket of a live, in the form the media manager uses."""

    user_id: int
    role: PeerRole

    def send(self, frame: dict[str, Any]) -> None:
        """Queue `frame` for the socket without waiting."""


class MediaSessionState(enum.StrEnum):
    """waiting_for_media -> live <-> host_away -> ending -> closed; any -> closed."""

    WAITING_FOR_MEDIA = "waiting_for_media"
    LIVE = "live"
    HOST_AWAY = "host_away"
    ENDING = "ending"
    CLOSED = "closed"


# Maps each session state to the states it may move to.
SESSION_TRANSITIONS: dict[MediaSessionState, frozenset[MediaSessionState]] = {
    MediaSessionState.WAITING_FOR_MEDIA: frozenset(
        {MediaSessionState.LIVE, MediaSessionState.CLOSED}
    ),
    MediaSessionState.LIVE: frozenset(
        {MediaSessionState.HOST_AWAY, MediaSessionState.ENDING, MediaSessionState.CLOSED}
    ),
    MediaSessionState.HOST_AWAY: frozenset(
        {MediaSessionState.LIVE, MediaSessionState.ENDING, MediaSessionState.CLOSED}
    ),
    MediaSessionState.ENDING: frozenset({MediaSessionState.CLOSED}),
    MediaSessionState.CLOSED: frozenset(),
}


def iso_utc(moment: datetime | None) -> str | None:
    """Format `moment` as in the protocol's frames, e.g. "2026-10-25T19:30:04.123Z"."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def state_frame(live: Live) -> dict[str, Any]:
    return {
        "type": "state",
        "state": live.state.value,
        "started_at": iso_utc(live.started_at),
        "ended_at": iso_utc(live.ended_at),
    }


class ViewerPeer:
    """A viewer's peer with the media the live's fan-out gave it."""

    def __init__(self, peer: ServerPeer, media: ViewerMedia) -> None:
        self.peer = peer
        self.media = media

    async def close(self) -> None:
        # closing the peer stops the senders, which stop their tracks; stopping them
        # here as well covers a peer whose senders never started
        await self.peer.close()
        self.media.stop()


class LiveMediaSession:
    """The media of one live on this process, from the host's publish to its end.

    Logged as `LiveMediaSession(<live id>)`. The public methods are called with the
    manager's lock of this live held. Peer callbacks and background tasks take the lock
    themselves.
    """

    def __init__(self, live_id: int, manager: MediaManager) -> None:
        self.live_id = live_id
        self.manager = manager
        self.state = MediaSessionState.WAITING_FOR_MEDIA
        self.host: ServerPeer | None = None
        self.host_listener: Listener | None = None
        self.video = PublishedTrack("video")
        self.audio = PublishedTrack("audio")
        self.fanout: Fanout = create_fanout(
            manager.settings.media_path, live_id, self.video, self.audio
        )
        # maps each watching socket to its viewer peer
        self.viewers: dict[Listener, ViewerPeer] = {}
        self.recording: LiveRecording | None = None
        # the HLS stream, on the encode-once path only
        self.hls: LiveHls | None = None
        self.tasks = TaskSupervisor(repr(self))
        self._created_monotonic = time.monotonic()
        self._host_lost_monotonic: float | None = None
        # Set when the grace period ends the live: the host left for good, so the
        # recording ends at their last frame instead of a still picture until the end.
        self._ended_by_grace = False
        self._grace_timer: asyncio.Task[None] | None = None
        self._fanout_started = False

    def __repr__(self) -> str:
        return f"LiveMediaSession({self.live_id})"

    @property
    def is_publishing(self) -> bool:
        return self.host is not None

    @property
    def is_watchable(self) -> bool:
        return self.state in {MediaSessionState.LIVE, MediaSessionState.HOST_AWAY}

    def _move(self, expected: frozenset[MediaSessionState], new_state: MediaSessionState) -> None:
        if self.state not in expected or new_state not in SESSION_TRANSITIONS[self.state]:
            raise RuntimeError(
                f"{self!r}: cannot move to {new_state.value}: expected state "
                f"{' or '.join(sorted(state.value for state in expected))}, "
                f"got {self.state.value}"
            )
        logger.debug("%r: %s -> %s", self, self.state.value, new_state.value)
        self.state = new_state

    async def publish(self, listener: Listener, offer_sdp: str) -> str:
        """Answer the host's offer with a new host peer whose tracks feed the fan-out."""
        peer = ServerPeer(
            self.manager.next_peer_id("host"),
            PeerRole.HOST,
            self.live_id,
            self.manager.settings.ice_servers,
            on_lost=self._host_lost,
        )
        try:
            answer = await peer.answer(offer_sdp, OfferPurpose.PUBLISH)
        except BaseException:
            # A rejected offer, or the socket's task cancelled while aiortc builds the answer.
            await peer.close()
            raise
        video = peer.track_of("video")
        audio = peer.track_of("audio")
        if video is None or audio is None:
            await peer.close()
            raise InvalidOfferError(
                "L'offre SDP pour animer le live doit envoyer l'audio et la vidéo."
            )

        # plug the new peer into the fan-out's sources
        self.host = peer
        self.host_listener = listener
        self.video.attach(video)
        self.audio.attach(audio)

        if self.state is MediaSessionState.WAITING_FOR_MEDIA:
            if not self._fanout_started:
                self._fanout_started = True
                self.fanout.start(self.tasks, self._fail)
            self.tasks.spawn(self._await_first_media(), "first media", self._fail)
        elif self.state is MediaSessionState.HOST_AWAY:
            self._cancel_grace_timer()
            away_secs = time.monotonic() - (self._host_lost_monotonic or time.monotonic())
            self._move(frozenset({MediaSessionState.HOST_AWAY}), MediaSessionState.LIVE)
            logger.info("%r: host back with %r after %.1f s away", self, peer, away_secs)
            await record_host_away(self.manager.database, self.live_id, away=False)
            self.manager.broadcast(self.live_id, host_frame(HostStatus.BACK))
        return answer

    async def watch(self, listener: Listener, offer_sdp: str) -> str:
        """Answer a viewer's offer with a viewer peer that sends the live's media;
        a second `watch` on the same socket replaces its previous peer."""
        previous = self.viewers.pop(listener, None)
        if previous is not None:
            await previous.close()

        summary = check_offer(offer_sdp, OfferPurpose.WATCH)
        peer = ServerPeer(
            self.manager.next_peer_id("viewer"),
            PeerRole.VIEWER,
            self.live_id,
            self.manager.settings.ice_servers,
            on_lost=self._viewer_lost,
        )
        try:
            media = self.fanout.attach_viewer(peer, summary, self.manager.quality_thresholds)
        except BaseException:
            await peer.close()
            raise
        viewer = ViewerPeer(peer, media)
        try:
            answer = await peer.answer(offer_sdp, OfferPurpose.WATCH)
        except BaseException:
            # A rejected offer, or the socket's task cancelled while aiortc builds the answer.
            await viewer.close()
            raise
        media.start()
        self.viewers[listener] = viewer
        return answer

    async def remove_viewer(self, listener: Listener) -> None:
        viewer = self.viewers.pop(listener, None)
        if viewer is not None:
            await viewer.close()

    async def host_left(self, listener: Listener) -> None:
        """Handle the host's socket closing: its peer closes with it."""
        if self.host is not None and self.host_listener is listener:
            await self._lose_host(self.host)

    async def end(self) -> datetime | None:
        """Close every peer and stop the recorder; return when the recording started."""
        self._move(
            frozenset({MediaSessionState.LIVE, MediaSessionState.HOST_AWAY}),
            MediaSessionState.ENDING,
        )
        started_at = await self._release()
        logger.info(
            "%r: ended after %.1f s",
            self,
            time.monotonic() - self._created_monotonic,
        )
        return started_at

    async def close(self) -> None:
        """Release everything without ending the live (host gone before its media
        arrived, or server shutdown)."""
        if self.state is MediaSessionState.CLOSED:
            return
        await self._release()
        logger.info("%r: closed after %.1f s", self, time.monotonic() - self._created_monotonic)

    async def _release(self) -> datetime | None:
        self.state = MediaSessionState.CLOSED
        self._cancel_grace_timer()
        viewers = list(self.viewers.values())
        self.viewers.clear()
        for viewer in viewers:
            await viewer.close()

        started_at: datetime | None = None
        if self.recording is not None:
            try:
                started_at = await self.recording.stop(until_now=not self._ended_by_grace)
            except Exception:
                logger.exception("%r: the recorder failed to stop", self)
        await self._stop_hls()

        if self.host is not None:
            host, self.host = self.host, None
            await host.close()
        self.video.stop()
        self.audio.stop()
        await self.tasks.close()
        await self.fanout.close()
        return started_at

    async def _await_first_media(self) -> None:
        await self.fanout.wait_for_first_media()
        async with self.manager.lock_of(self.live_id):
            if self.state is not MediaSessionState.WAITING_FOR_MEDIA:
                return
            await self._media_arrived()

    async def _media_arrived(self) -> None:
        live = await self.manager.move_live(self.live_id, LiveState.LIVE)
        if live is None:
            await self.manager.drop_session(self)
            return
        self._move(frozenset({MediaSessionState.WAITING_FOR_MEDIA}), MediaSessionState.LIVE)
        logger.info(
            "%r: media arrived %.2f s after publish; live started",
            self,
            time.monotonic() - self._created_monotonic,
        )
        self.manager.broadcast(self.live_id, state_frame(live))
        await self._start_recording()
        await self._start_hls()

    async def _start_recording(self) -> None:
        recordings = self.manager.recordings
        if recordings is None:
            logger.warning("%r: not recorded: recording is off on this process", self)
            return
        recording = LiveRecording(recordings, self.live_id)
        video, audio = self.fanout.recorder_tracks()
        try:
            await recording.start(video, audio, video_packets=self.fanout.recorder_takes_packets)
        except Exception:
            # the live goes on without a recording rather than not at all
            logger.exception("%r: the recording could not start", self)
            started_at = await recording.stop()
            recording.finish_in_background(started_at)
            return
        self.recording = recording

    async def _start_hls(self) -> None:
        if not isinstance(self.fanout, EncodeOnceFanout):
            logger.info("%r: no HLS stream on the %s path", self, self.manager.settings.media_path)
            return
        hls = create_live_hls(
            self.live_id,
            self.fanout.broadcast,
            self.manager.settings.hls_dir,
            self.manager.hls_writer,
        )
        try:
            await hls.start()
        except OSError:
            # the live goes on for its WebRTC viewers
            logger.exception("%r: the HLS stream could not start", self)
            await hls.close()
            return
        self.hls = hls

    async def _stop_hls(self) -> None:
        """End the HLS playlists, and delete the files once the last HLS viewers are
        done with them (at once when the server stops)."""
        hls, self.hls = self.hls, None
        if hls is None:
            return
        await hls.close()
        if self.manager.is_closed:
            await hls.remove_files(0)
        else:
            self.manager.tasks.spawn(hls.remove_files(), f"remove {hls!r} files")

    def _host_lost(self, peer: ServerPeer) -> None:
        if self.state is MediaSessionState.CLOSED:
            return
        self.tasks.spawn(self._lose_host_locked(peer), f"lose {peer!r}", self._fail)

    async def _lose_host_locked(self, peer: ServerPeer) -> None:
        async with self.manager.lock_of(self.live_id):
            await self._lose_host(peer)

    async def _lose_host(self, peer: ServerPeer) -> None:
        if peer is not self.host:
            return
        self.host = None
        self.host_listener = None
        for track in peer.remote_tracks:
            self.video.detach(track)
            self.audio.detach(track)
        await peer.close()

        if self.state is MediaSessionState.WAITING_FOR_MEDIA:
            logger.info("%r: host left before its media arrived", self)
            await self.manager.drop_session(self)
            return
        if self.state is not MediaSessionState.LIVE:
            return
        grace_secs = self.manager.settings.host_reconnect_grace_secs
        self._move(frozenset({MediaSessionState.LIVE}), MediaSessionState.HOST_AWAY)
        self._host_lost_monotonic = time.monotonic()
        logger.warning(
            "%r: host peer %r lost; the live ends unless the host publishes within %.0f s",
            self,
            peer,
            grace_secs,
        )
        self._grace_timer = self.tasks.spawn(
            self._end_after_grace(grace_secs), "host reconnect grace", self._fail
        )
        await record_host_away(self.manager.database, self.live_id, away=True)
        self.manager.broadcast(self.live_id, host_frame(HostStatus.AWAY))

    async def _end_after_grace(self, grace_secs: float) -> None:
        await asyncio.sleep(grace_secs)
        logger.warning("%r: host did not come back within %.0f s; ending", self, grace_secs)
        self._ended_by_grace = True
        try:
            await self.manager.end(self.live_id)
        except ProtocolError as error:
            # ended or cancelled meanwhile by another path
            logger.info("%r: not ended after the grace period: %s", self, error.code.value)

    def _cancel_grace_timer(self) -> None:
        timer, self._grace_timer = self._grace_timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()

    def _viewer_lost(self, peer: ServerPeer) -> None:
        if self.state is MediaSessionState.CLOSED:
            return
        for listener, viewer in list(self.viewers.items()):
            if viewer.peer is peer:
                del self.viewers[listener]
                self.tasks.spawn(viewer.close(), f"close {peer!r}", self._fail)

    def _fail(self, error: BaseException) -> None:
        # a failed task of the session leaves it in an unknown state: release it, and
        # let the host publish again if the live is still on
        logger.error("%r: closing after a failed task: %r", self, error)
        if self.state is not MediaSessionState.CLOSED and not self.manager.is_closed:
            self.manager.tasks.spawn(self.manager.drop_session_locked(self), f"drop {self!r}")


class Audience(Protocol):
    """Every open signaling socket of a live, wherever it is connected."""

    def broadcast(self, live_id: int, frame: dict[str, Any]) -> None:
        """Send `frame` to every socket of the live without waiting."""


class MediaManager:
    """Every live's media session on this server process; state changes go to the
    live's sockets through `audience`."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        recordings: Recordings | None,
        audience: Audience,
        *,
        instance: str | None = None,
    ) -> None:
        self.settings = settings
        # names this process in the HLS folders it writes; `instance` is the media
        # node's token in a cluster, else one is drawn here
        self.hls_writer = HlsWriter(settings.node_name, instance or secrets.token_hex(8))
        self.database = database
        self.recordings = recordings
        self.audience = audience
        # maps live id to its media session on this process
        self.sessions: dict[int, LiveMediaSession] = {}
        # Maps live id to the lock that orders publish, end and session changes. A lock
        # stays while a task holds or awaits it, and goes once no task refers to it.
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self.tasks = TaskSupervisor("MediaManager")
        # limits of every new viewer's quality controller; None keeps the defaults
        self.quality_thresholds: QualityThresholds | None = None
        self._peer_numbers = itertools.count(1)
        self._closed = False
        if recordings is not None:
            recordings.subscribe(self._recording_status_changed)
        logger.info(
            "MediaManager: media path %s, recording %s",
            settings.media_path.value,
            "on" if recordings else "off",
        )

    @property
    def is_closed(self) -> bool:
        return self._closed

    def next_peer_id(self, role: str) -> str:
        return f"{role}-{next(self._peer_numbers)}"

    def lock_of(self, live_id: int) -> asyncio.Lock:
        lock = self._locks.get(live_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[live_id] = lock
        return lock

    def broadcast(self, live_id: int, frame: dict[str, Any]) -> None:
        self.audience.broadcast(live_id, frame)

    async def release(self, live_id: int, listener: Listener) -> None:
        """Close the viewer peer or the host peer of a socket that closed."""
        async with self.lock_of(live_id):
            session = self.sessions.get(live_id)
            if session is not None:
                await session.remove_viewer(listener)
                await session.host_left(listener)

    def webrtc_viewer_count(self) -> int:
        """Viewer peers of all lives on this process."""
        return sum(len(session.viewers) for session in self.sessions.values())

    def is_full(self) -> bool:
        """Check whether this process serves as many WebRTC viewers as its settings allow."""
        return self.webrtc_viewer_count() >= self.settings.max_webrtc_viewers

    # media

    async def publish(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        """Answer the host's `publish`; raise ProtocolError when it is refused."""
        async with self.lock_of(live_id):
            if self._closed:
                raise ProtocolError(ErrorCode.TRY_AGAIN)
            state = await self._live_state(live_id)
            if state in FINISHED_STATES:
                raise ProtocolError(ErrorCode.LIVE_ENDED)

            session = self.sessions.get(live_id)
            if session is not None and session.is_publishing:
                raise ProtocolError(ErrorCode.ALREADY_PUBLISHING)
            created = session is None
            if session is None:
                session = LiveMediaSession(live_id, self)
                self.sessions[live_id] = session
                logger.info("%r: created for host user=%s", session, listener.user_id)

            try:
                return await session.publish(listener, offer_sdp)
            except InvalidOfferError as error:
                if created:
                    await self.drop_session(session)
                raise ProtocolError(ErrorCode.INVALID_SDP, error.message) from error

    async def watch(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        """Answer a `watch`; raise ProtocolError when it is refused."""
        async with self.lock_of(live_id):
            if self._closed:
                raise ProtocolError(ErrorCode.TRY_AGAIN)
            state = await self._live_state(live_id)
            if state in FINISHED_STATES:
                raise ProtocolError(ErrorCode.LIVE_ENDED)
            session = self.sessions.get(live_id)
            if state is not LiveState.LIVE or session is None or not session.is_watchable:
                raise ProtocolError(ErrorCode.NOT_LIVE)
            # NOTE: without an HLS stream (relay path, or its start failed) the cap is
            # not applied, because the viewer would have nothing to watch.
            if listener not in session.viewers and session.hls is not None and self.is_full():
                logger.info(
                    "%r: user=%s sent to HLS: %d WebRTC viewers on this process",
                    session,
                    listener.user_id,
                    self.webrtc_viewer_count(),
                )
                raise ProtocolError(ErrorCode.LIVE_FULL)
            try:
                return await session.watch(listener, offer_sdp)
            except InvalidOfferError as error:
                raise ProtocolError(ErrorCode.INVALID_SDP, error.message) from error

    async def end(self, live_id: int) -> None:
        """End the live: close its peers, stop its recorder, move it to ended,
        broadcast that, and finish the recording in the background."""
        async with self.lock_of(live_id):
            state = await self._live_state(live_id)
            if state in FINISHED_STATES:
                raise ProtocolError(ErrorCode.LIVE_ENDED)
            if state not in ENDABLE_STATES:
                raise ProtocolError(ErrorCode.NOT_LIVE)

            session = self.sessions.pop(live_id, None)
            started_at: datetime | None = None
            if session is not None and session.is_watchable:
                started_at = await session.end()
            elif session is not None:
                # published, but its media never arrived: nothing was recorded
                await session.close()

            live = await self.move_live(live_id, LiveState.ENDED)
            if live is not None:
                self.broadcast(live_id, state_frame(live))

            if session is not None and session.recording is not None:
                session.recording.finish_in_background(started_at)
            elif self.recordings is not None:
                # ended while interrupted: the parts recorded before may all be finished
                self.recordings.join_in_background(live_id)

    async def recording_status(self, live_id: int) -> dict[str, Any]:
        """Return the `recording` object of the welcome frame."""
        if self.recordings is None:
            return {"status": None, "reason": None}
        return await self.recordings.latest_status(live_id)

    def _recording_status_changed(
        self, live_id: int, recording_id: int, status: RecordingStatus, reason: str | None
    ) -> None:
        self.broadcast(live_id, {"type": "recording", "status": status.value, "reason": reason})

    async def drop_session(self, session: LiveMediaSession) -> None:
        """Close `session` without ending its live; the caller holds its lock."""
        if self.sessions.get(session.live_id) is session:
            del self.sessions[session.live_id]
        await session.close()

    async def drop_session_locked(self, session: LiveMediaSession) -> None:
        async with self.lock_of(session.live_id):
            await self.drop_session(session)

    async def move_live(self, live_id: int, new_state: LiveState) -> Live | None:
        """Move the live to `new_state` unless it is there already; return it, or None
        when the move is not allowed (the live was cancelled meanwhile)."""
        async with self.database.session() as session:
            live = await session.get(Live, live_id)
            if live is None:
                logger.warning("live %s: gone while its media was on", live_id)
                return None
            if live.state is new_state:
                if live.host_away_since is not None and new_state is LiveState.LIVE:
                    # Media arrives again in a live that stayed `live` after its session
                    # was dropped while the host was away.
                    live.host_away_since = None
                    await session.commit()
                return live
            try:
                await transition(session, live, new_state)
            except InvalidTransitionError as error:
                logger.warning("live %s: %s", live_id, error)
                return None
            return live

    async def _live_state(self, live_id: int) -> LiveState | None:
        try:
            async with self.database.session() as session:
                live = await session.get(Live, live_id)
        except SQLAlchemyError as error:
            logger.error("live %s: state could not be read: %s", live_id, error)
            raise ProtocolError(ErrorCode.TRY_AGAIN) from error
        return None if live is None else live.state

    async def close(self) -> None:
        """Release every session at server shutdown.

        A live still on moves to interrupted, from which its host may resume it. Its
        recorder is stopped, so its file is complete, and the Recording row stays
        `recording` for this node to finish when it starts again.
        """
        self._closed = True
        for live_id, session in list(self.sessions.items()):
            async with self.lock_of(live_id):
                was_on = session.is_watchable
                await self.drop_session(session)
                if was_on:
                    live = await self.move_live(live_id, LiveState.INTERRUPTED)
                    if live is not None:
                        self.broadcast(live_id, state_frame(live))
        await self.tasks.close()
        if self.recordings is not None:
            self.recordings.unsubscribe(self._recording_status_changed)
        logger.info("MediaManager: closed")


def create_media_manager(
    settings: Settings, database: Database, audience: Audience, instance: str | None = None
) -> MediaManager:
    """Create the manager of `app.state.media`, recording through the recordings package.
    `instance` is the media node's token, with several processes."""
    return MediaManager(
        settings, database, Recordings(database, settings), audience, instance=instance
    )
