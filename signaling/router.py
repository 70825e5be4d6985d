"""The signaling sockets' way to a live's media (`app.state.signaling`).

A single process carries every live itself (`LocalRouter`). With a Redis URL, each
live's media belongs to one process, its media node, and `signaling.cluster.ClusterRouter`
takes each request there from whichever process the socket reached.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from core.database import Database
from core.settings import Settings
from signaling.audience import LocalAudience
from signaling.cluster import ClusterRouter
from signaling.hls_folders import left_by, remove_left_folders
from signaling.media import Listener, MediaManager, create_media_manager

logger = logging.getLogger(__name__)


class Router(Protocol):
    """The operations that the signaling endpoint needs from the live's media."""

    media: MediaManager

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Stop; call after `media.close()`, whose last frames it still delivers."""

    async def join(self, live_id: int, listener: Listener) -> None:
        """Add an accepted socket to the live's audience."""

    async def leave(self, live_id: int, listener: Listener) -> None:
        """Remove a closed socket, and close its viewer peer or host peer."""

    async def publish(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        """Return the answer to the host's offer; raise ProtocolError to refuse it."""

    async def watch(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        """Return the answer to a viewer's offer; raise ProtocolError to refuse it."""

    async def end(self, live_id: int, listener: Listener) -> None:
        """End the live at the host's request; raise ProtocolError to refuse it."""

    async def is_healthy(self) -> bool: ...


class LocalRouter:
    """Every live's media in this process, and every socket too."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.audience = LocalAudience()
        self.media = create_media_manager(settings, database, self.audience)

    async def start(self) -> None:
        """Remove the HLS folders that a killed process of this node name left behind."""
        writer = self.media.hls_writer
        try:
            removed = await asyncio.to_thread(
                remove_left_folders, self.media.settings.hls_dir, left_by(writer.node, writer)
            )
        except OSError as error:
            logger.warning("LocalRouter: HLS folders left by a previous process kept: %s", error)
            return
        if removed:
            logger.info("LocalRouter: removed %d HLS folders of a previous process", len(removed))

    async def close(self) -> None:
        pass

    async def join(self, live_id: int, listener: Listener) -> None:
        await self.audience.join(live_id, listener)

    async def leave(self, live_id: int, listener: Listener) -> None:
        await self.audience.leave(live_id, listener)
        await self.media.release(live_id, listener)

    async def publish(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        return await self.media.publish(live_id, listener, offer_sdp)

    async def watch(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        return await self.media.watch(live_id, listener, offer_sdp)

    async def end(self, live_id: int, listener: Listener) -> None:
        await self.media.end(live_id)

    async def is_healthy(self) -> bool:
        return True


def create_router(settings: Settings, database: Database) -> Router:
    """Return the cluster router when Redis is configured, else the local one."""
    if settings.redis_url:
        return ClusterRouter(settings, database, settings.redis_url)
    return LocalRouter(settings, database)
