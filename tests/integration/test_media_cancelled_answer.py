"""A `publish` or `watch` whose task is cancelled while aiortc builds the answer (the
socket closed meanwhile) closes the peer it created, instead of leaving its ICE transport
and sockets open."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from signaling.media import LiveMediaSession
from signaling.peers import PeerRole, PeerState, ServerPeer
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    Publisher,
    rtc_configuration,
    running_live,
    start_publishing,
)

pytestmark = pytest.mark.slow


@dataclass(eq=False)
class SocketListener:
    """The media manager's view of a signaling socket, without the socket."""

    user_id: int
    role: PeerRole
    frames: list[dict[str, Any]] = field(default_factory=list)

    def send(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)


def server_peers(role: PeerRole) -> list[ServerPeer]:
    # type() rather than isinstance(): the heap contains weak proxies, whose __class__
    # raises ReferenceError once their object is gone.
    return [item for item in gc.get_objects() if type(item) is ServerPeer and item.role is role]


async def cancel_while_answering(role: PeerRole, answering: asyncio.Task[str]) -> ServerPeer:
    """Cancel `answering` once its new peer of `role` is negotiating, wait for the
    task, and return that peer."""
    already = {id(peer) for peer in server_peers(role)}
    new: list[ServerPeer] = []
    async with asyncio.timeout(EVENT_TIMEOUT_SECS):
        while not new:
            assert not answering.done(), "the answer came before the peer was seen negotiating"
            await asyncio.sleep(0)
            new = [
                peer
                for peer in server_peers(role)
                if id(peer) not in already and peer.state is PeerState.CONNECTING
            ]
    answering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await answering
    [peer] = new
    return peer


async def viewer_offer() -> str:
    pc = RTCPeerConnection(rtc_configuration())
    pc.addTransceiver("audio", direction="recvonly")
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    offer: str = pc.localDescription.sdp
    await pc.close()
    return offer


async def test_cancelled_watch_closes_its_peer(data_dir: Path) -> None:
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        try:
            session: LiveMediaSession = setting.app.state.media.sessions[setting.live_id]
            listener = SocketListener(user_id=2, role=PeerRole.VIEWER)
            answering = asyncio.create_task(session.watch(listener, await viewer_offer()))
            peer = await cancel_while_answering(PeerRole.VIEWER, answering)

            assert session.viewers == {}
            assert peer.state is PeerState.CLOSED
        finally:
            await host.close()
            await publisher.close()


async def test_cancelled_publish_closes_its_peer(data_dir: Path) -> None:
    async with running_live(data_dir) as setting:
        host, publisher = await start_publishing(setting)
        second = Publisher()
        try:
            session: LiveMediaSession = setting.app.state.media.sessions[setting.live_id]
            first_host = session.host
            listener = SocketListener(user_id=1, role=PeerRole.HOST)
            answering = asyncio.create_task(session.publish(listener, await second.offer()))
            peer = await cancel_while_answering(PeerRole.HOST, answering)

            assert session.host is first_host
            assert peer.state is PeerState.CLOSED
        finally:
            await second.close()
            await host.close()
            await publisher.close()
