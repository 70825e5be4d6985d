"""The open signaling sockets of each live on this server process: broadcasts reach all
of them, and the host's sockets hear how many people watch.

`LocalAudience` counts the viewers of this process only, which is the whole audience
of a single-process deployment. `signaling.fanout.ClusterAudience` extends it to every
process that shares a Redis.
"""

from __future__ import annotations

import logging
from typing import Any

from signaling.media import Listener
from signaling.peers import PeerRole

logger = logging.getLogger(__name__)


def viewers_frame(count: int) -> dict[str, Any]:
    return {"type": "viewers", "count": count}


class LocalAudience:
    """Every open signaling socket on this process, by live."""

    def __init__(self) -> None:
        # maps live id to its open signaling sockets on this process
        self.listeners: dict[int, set[Listener]] = {}

    async def join(self, live_id: int, listener: Listener) -> None:
        """Add an accepted socket; a host's socket receives the viewer count."""
        before = self.local_viewers(live_id)
        self.listeners.setdefault(live_id, set()).add(listener)
        if listener.role is PeerRole.HOST:
            self.host_joined(live_id, listener)
        if self.local_viewers(live_id) != before:
            self.viewers_changed(live_id, listener)

    async def leave(self, live_id: int, listener: Listener) -> None:
        """Forget a closed socket."""
        before = self.local_viewers(live_id)
        listeners = self.listeners.get(live_id, set())
        listeners.discard(listener)
        if not listeners:
            self.listeners.pop(live_id, None)
        if self.local_viewers(live_id) != before:
            self.viewers_changed(live_id, None)

    def local_viewers(self, live_id: int) -> frozenset[int]:
        """Return the user ids of the people with a viewer socket open on this process."""
        return frozenset(
            listener.user_id
            for listener in self.listeners.get(live_id, ())
            if listener.role is PeerRole.VIEWER
        )

    def host_joined(self, live_id: int, listener: Listener) -> None:
        """Send the viewer count to a host socket that joined."""
        listener.send(viewers_frame(len(self.local_viewers(live_id))))

    def viewers_changed(self, live_id: int, joined: Listener | None) -> None:
        """Send the new count to the live's host sockets, except `joined`, which has it."""
        count = len(self.local_viewers(live_id))
        self.send_to_hosts(live_id, viewers_frame(count), skip=joined)

    def send_to_hosts(
        self, live_id: int, frame: dict[str, Any], skip: Listener | None = None
    ) -> None:
        for listener in self.listeners.get(live_id, ()):
            if listener.role is PeerRole.HOST and listener is not skip:
                listener.send(frame)

    def has_hosts(self, live_id: int) -> bool:
        return any(listener.role is PeerRole.HOST for listener in self.listeners.get(live_id, ()))

    def deliver(self, live_id: int, frame: dict[str, Any]) -> None:
        """Send `frame` to the live's sockets on this process."""
        for listener in list(self.listeners.get(live_id, ())):
            listener.send(frame)

    def broadcast(self, live_id: int, frame: dict[str, Any]) -> None:
        self.deliver(live_id, frame)
