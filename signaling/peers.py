"""The server's side of one WebRTC peer connection with a browser: the host's
publishing peer or a viewer's watching peer."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.exceptions import InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamTrack

from signaling.sdp import SDP_PARSE_ERRORS, InvalidOfferError, OfferPurpose, check_offer

logger = logging.getLogger(__name__)

# Exceptions that aiortc 1.16 raises when an offer that passed `check_offer` cannot be
# negotiated: no codec in common, mismatched sections, a peer closed meanwhile.
NEGOTIATION_ERRORS = (
    *SDP_PARSE_ERRORS,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)


class PeerRole(enum.StrEnum):
    HOST = "host"
    VIEWER = "viewer"


class PeerState(enum.StrEnum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


# Maps each peer state to the states it may move to.
PEER_TRANSITIONS: dict[PeerState, frozenset[PeerState]] = {
    PeerState.NEW: frozenset({PeerState.CONNECTING, PeerState.CLOSED}),
    PeerState.CONNECTING: frozenset({PeerState.CONNECTED, PeerState.CLOSED}),
    PeerState.CONNECTED: frozenset({PeerState.CLOSED}),
    PeerState.CLOSED: frozenset(),
}


def ice_configuration(ice_servers: Iterable[Mapping[str, str]]) -> RTCConfiguration:
    """Build the RTCConfiguration for the configured ICE servers.

    The list is always passed, even when empty: without `iceServers` aiortc 1.16 adds
    a public STUN server of its own.
    """
    servers = [
        RTCIceServer(
            urls=server["urls"],
            username=server.get("username"),
            credential=server.get("credential"),
        )
        for server in ice_servers
    ]
    return RTCConfiguration(iceServers=servers)


class ServerPeer:
    """One aiortc RTCPeerConnection and its lifecycle, logged as `ServerPeer(<peer id>)`.

    `on_lost` is called once when the connection fails or the remote side closes it,
    but not when the server calls `close`.
    """

    def __init__(
        self,
        peer_id: str,
        role: PeerRole,
        live_id: int,
        ice_servers: Iterable[Mapping[str, str]],
        on_lost: Callable[[ServerPeer], None],
    ) -> None:
        self.peer_id = peer_id
        self.role = role
        self.live_id = live_id
        self.state = PeerState.NEW
        self.remote_tracks: list[MediaStreamTrack] = []
        # set once the connection is up (ICE and DTLS), and stays set
        self.connected = asyncio.Event()
        self._on_lost = on_lost
        self._lost_reported = False
        self._created_monotonic = time.monotonic()
        self._connected_monotonic: float | None = None
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self.pc.on("track", self._track_received)
        self.pc.on("connectionstatechange", self._connection_state_changed)

    def __repr__(self) -> str:
        return f"ServerPeer({self.peer_id})"

    def add_track(self, track: MediaStreamTrack) -> RTCRtpSender:
        """Send `track` to the browser; call before `answer`."""
        sender: RTCRtpSender = self.pc.addTrack(track)
        return sender

    def transceiver_of(self, sender: RTCRtpSender) -> RTCRtpTransceiver:
        """Return the transceiver of one of this peer's senders."""
        for transceiver in self.pc.getTransceivers():
            if transceiver.sender is sender:
                found: RTCRtpTransceiver = transceiver
                return found
        raise ValueError(f"{self!r}: {sender!r} is not one of this peer's senders")

    async def answer(self, offer_sdp: str, purpose: OfferPurpose) -> str:
        """Apply the browser's offer and return the answer with all of its candidates.

        Raise InvalidOfferError when the offer cannot be negotiated; the peer is then
        left for the caller to close.
        """
        summary = check_offer(offer_sdp, purpose)
        self._move(PeerState.NEW, PeerState.CONNECTING)

        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            answer = await self.pc.createAnswer()
            # aiortc's setLocalDescription returns once ICE gathering is complete,
            # so the answer carries every candidate
            await self.pc.setLocalDescription(answer)
        except NEGOTIATION_ERRORS as error:
            logger.warning(
                "%r live=%s: offer rejected by aiortc: %s: %s",
                self,
                self.live_id,
                type(error).__name__,
                error,
            )
            raise InvalidOfferError("L'offre SDP n'a pas pu être négociée.") from error

        description = self.pc.localDescription
        if description is None:
            raise InvalidOfferError("L'offre SDP n'a pas pu être négociée.")
        logger.info(
            "%r live=%s: answered %s offer with %d candidates in %.2f s",
            self,
            self.live_id,
            purpose.value,
            summary.candidate_count,
            time.monotonic() - self._created_monotonic,
        )
        sdp: str = description.sdp
        return sdp

    async def close(self) -> None:
        """Close the connection, stop its senders and end its remote tracks.

        Raises nothing but cancellation, in any state. aiortc 1.16's own close can
        raise partway, for example AttributeError on a connection whose offer had a
        BUNDLE group naming a missing first mid. Such a failure is logged, and the
        transports aiortc had not reached yet are stopped here.
        """
        if self.state is PeerState.CLOSED:
            return
        self._move(self.state, PeerState.CLOSED)
        try:
            await self.pc.close()
        except Exception as error:  # noqa: BLE001 - logged; the rest is stopped below
            logger.warning(
                "%r live=%s: aiortc failed to close the connection: %s: %s",
                self,
                self.live_id,
                type(error).__name__,
                error,
            )
            await self._stop_transports()
        # aiortc's close ends a pending recv() on the track of a started receiver. A
        # stopped track also makes every later recv() raise MediaStreamError at once.
        for track in self.remote_tracks:
            track.stop()
        logger.info(
            "%r live=%s: closed after %.1f s",
            self,
            self.live_id,
            time.monotonic() - self._created_monotonic,
        )

    async def _stop_transports(self) -> None:
        """Stop the DTLS and ICE transports that a failed `pc.close()` may have left
        running, each on its own so that one failure does not keep the others open."""
        for transceiver in self.pc.getTransceivers():
            dtls_transport = transceiver.receiver.transport
            if dtls_transport is None:
                continue
            for transport in (dtls_transport, dtls_transport.transport):
                try:
                    await transport.stop()
                except Exception as error:  # noqa: BLE001 - logged, the others go on
                    logger.warning(
                        "%r live=%s: stopping %s failed: %s: %s",
                        self,
                        self.live_id,
                        type(transport).__name__,
                        type(error).__name__,
                        error,
                    )

    def _track_received(self, track: MediaStreamTrack) -> None:
        logger.debug("%r live=%s: remote %s track received", self, self.live_id, track.kind)
        self.remote_tracks.append(track)

    def _connection_state_changed(self) -> None:
        connection_state = self.pc.connectionState
        logger.debug("%r live=%s: connection %s", self, self.live_id, connection_state)
        if connection_state == "connected" and self.state is PeerState.CONNECTING:
            self._move(PeerState.CONNECTING, PeerState.CONNECTED)
            self._connected_monotonic = time.monotonic()
            self.connected.set()
            logger.info(
                "%r live=%s: %s peer connected in %.2f s",
                self,
                self.live_id,
                self.role.value,
                self._connected_monotonic - self._created_monotonic,
            )
        elif connection_state in {"failed", "closed"} and self.state is not PeerState.CLOSED:
            logger.warning("%r live=%s: connection %s", self, self.live_id, connection_state)
            if not self._lost_reported:
                self._lost_reported = True
                self._on_lost(self)

    def _move(self, expected: PeerState, new_state: PeerState) -> None:
        if self.state is not expected or new_state not in PEER_TRANSITIONS[expected]:
            raise RuntimeError(
                f"{self!r}: cannot move to {new_state.value}: "
                f"expected state {expected.value}, got {self.state.value}"
            )
        logger.debug("%r: %s -> %s", self, self.state.value, new_state.value)
        self.state = new_state

    def track_of(self, kind: str) -> MediaStreamTrack | None:
        """Return the remote track of `kind` received from the browser, if any."""
        return next((track for track in self.remote_tracks if track.kind == kind), None)
