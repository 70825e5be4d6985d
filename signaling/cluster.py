"""Signaling across the server processes of a deployment that share a Redis.

Each live's media belongs to one process, its media node: the process that the host's
`publish` reached when no node carried the live. Any other process forwards the
socket's `publish`, `watch` and `end` to it (signaling.forwarding), and every process
delivers the live's broadcasts to its own sockets (signaling.fanout). When a media node
dies, the first survivor to notice moves its lives to interrupted (signaling.nodes), and
the host resumes by publishing again through any process.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from chat.redis_broker import COMMAND_TIMEOUT_SECS, RedisBroker
from core.database import Database
from core.settings import Settings
from live.lifecycle import transition
from live.models import Live, LiveState
from signaling.fanout import ClusterAudience
from signaling.forwarding import NodeLink
from signaling.hls_folders import find_left_folders, left_by, remove_left_folder
from signaling.media import Listener, create_media_manager, state_frame
from signaling.nodes import (
    KEY_PREFIX,
    REDIS_ERRORS,
    NodeIdentity,
    NodeRegistry,
    RecoveryFailedError,
)
from signaling.peers import PeerRole
from signaling.protocol import ErrorCode, ProtocolError
from signaling.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

T = TypeVar("T")

# At shutdown, the frames broadcast by `media.close()` get this long to reach Redis.
OUTBOX_FLUSH_TIMEOUT_SECS = 2.0


class ClusterRouter:
    """Takes each socket's requests to the live's media node, here or over Redis."""

    def __init__(self, settings: Settings, database: Database, redis_url: str) -> None:
        self.database = database
        self.identity = NodeIdentity(settings.node_name)
        self.node = self.identity.name
        # Commands retry once, so that the first one after a Redis restart replaces its
        # stale pooled connection instead of failing.
        self.redis = redis.asyncio.Redis.from_url(
            redis_url,
            socket_timeout=COMMAND_TIMEOUT_SECS,
            socket_connect_timeout=COMMAND_TIMEOUT_SECS,
            retry=Retry(NoBackoff(), 1),
        )
        self.broker = RedisBroker(redis_url, key_prefix=KEY_PREFIX, label="signaling")
        self.registry = NodeRegistry(
            self.redis,
            self.identity,
            owned_lives=self._owned_lives,
            on_node_gone=self._node_gone,
            recover_live=self._recover_live,
            on_live_lost=self._live_lost,
            on_node_recovered=self._remove_left_hls,
        )
        self.audience = ClusterAudience(
            self.node, self.redis, self.broker, alive_nodes=lambda: self.registry.alive_nodes
        )
        self.media = create_media_manager(settings, database, self.audience, self.identity.instance)
        self.link = NodeLink(
            self.identity, self.redis, self.audience.outbox, self._serve, self.media.release
        )
        # maps live id to the number of publishes running here before its session exists
        self._claiming: collections.Counter[int] = collections.Counter()
        self.tasks = TaskSupervisor(f"ClusterRouter({self.node})")
        self.broker.attach(self._receive, self._reconnected)

    def __repr__(self) -> str:
        return f"ClusterRouter({self.node})"

    async def start(self) -> None:
        """Listen to this node's inbox and take its lease; raise NodeNameTakenError when
        another running process has this node's name."""
        await self.broker.subscribe(self.link.inbox)
        await self.broker.start()
        try:
            await asyncio.wait_for(self.broker.connected.wait(), COMMAND_TIMEOUT_SECS)
        except TimeoutError:
            logger.warning("%r: signaling broker not connected yet; it keeps trying", self)
        self.audience.start()
        try:
            await self.registry.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.audience.outbox.flush(OUTBOX_FLUSH_TIMEOUT_SECS)
        await self.registry.stop()
        await self.link.close()
        await self.tasks.close()
        await self.audience.close()
        await self.broker.stop()
        await self.redis.aclose()

    async def is_healthy(self) -> bool:
        return self.broker.connected.is_set() and self.registry.lease_is_current

    # sockets

    async def join(self, live_id: int, listener: Listener) -> None:
        await self.audience.join(live_id, listener)

    async def leave(self, live_id: int, listener: Listener) -> None:
        await self.audience.leave(live_id, listener)
        self.link.socket_closed(live_id, listener)
        await self.media.release(live_id, listener)

    async def publish(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        owner = await self._call_redis(self.registry.claim_live(live_id), "claim", live_id)
        if owner == self.node:
            return await self._publish_here(live_id, listener, offer_sdp)
        return await self._forward(owner, "publish", live_id, listener, offer_sdp)

    async def watch(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        owner = await self._call_redis(self.registry.owner_of(live_id), "look up", live_id)
        if owner is None or owner == self.node:
            return await self.media.watch(live_id, listener, offer_sdp)
        return await self._forward(owner, "watch", live_id, listener, offer_sdp)

    async def end(self, live_id: int, listener: Listener) -> None:
        owner = await self._call_redis(self.registry.owner_of(live_id), "look up", live_id)
        if owner is None or owner == self.node:
            # with no media node, an interrupted live is ended here
            await self.media.end(live_id)
            return
        await self.link.request(owner, "end", live_id, listener, None)

    async def _forward(
        self, node: str, operation: str, live_id: int, listener: Listener, offer_sdp: str
    ) -> str:
        answer = await self.link.request(node, operation, live_id, listener, offer_sdp)
        if answer is None:
            logger.error(
                "%r: %s of live %s: node %s sent no answer", self, operation, live_id, node
            )
            raise ProtocolError(ErrorCode.TRY_AGAIN)
        return answer

    async def _publish_here(self, live_id: int, listener: Listener, offer_sdp: str) -> str:
        self._claiming[live_id] += 1
        try:
            return await self.media.publish(live_id, listener, offer_sdp)
        finally:
            self._claiming[live_id] -= 1
            if self._claiming[live_id] <= 0:
                del self._claiming[live_id]
            if live_id not in self.media.sessions and live_id not in self._claiming:
                # refused: the next publish chooses its media node afresh
                try:
                    await self.registry.release_live(live_id)
                except REDIS_ERRORS as error:
                    logger.warning(
                        "%r: lease of live %s kept until it expires: %s", self, live_id, error
                    )

    async def _call_redis(self, call: Awaitable[T], what: str, live_id: int) -> T:
        try:
            return await call
        except REDIS_ERRORS as error:
            logger.warning("%r: %s of live %s failed: %s", self, what, live_id, error)
            raise ProtocolError(ErrorCode.TRY_AGAIN) from error

    # requests from other nodes

    async def _serve(
        self, operation: str, live_id: int, listener: Listener, offer_sdp: str | None
    ) -> str | None:
        # the socket's node checked the role already; a request from an older or buggy
        # node is checked again
        if operation in {"publish", "end"} and listener.role is not PeerRole.HOST:
            raise ProtocolError(ErrorCode.FORBIDDEN)
        if operation == "end":
            await self.media.end(live_id)
            return None
        if offer_sdp is None:
            raise ProtocolError(ErrorCode.INVALID_FRAME)
        if operation == "watch":
            return await self.media.watch(live_id, listener, offer_sdp)
        owner = await self._call_redis(self.registry.claim_live(live_id), "claim", live_id)
        if owner != self.node:
            # the live moved meanwhile; the client's next publish goes to its new node
            logger.warning(
                "%r: publish of live %s rejected: node %s carries it", self, live_id, owner
            )
            raise ProtocolError(ErrorCode.TRY_AGAIN)
        return await self._publish_here(live_id, listener, offer_sdp)

    def _receive(self, channel: str, payload: str) -> None:
        # An exception here would end the broker's connection, so a bug in handling one
        # message is logged and the message dropped.
        try:
            if channel == self.link.inbox:
                self.link.receive(payload)
                return
            live_id = _live_of_events_channel(channel)
            if live_id is not None:
                self.audience.receive(live_id, payload)
        except Exception:
            logger.exception("%r: a message on channel %s could not be handled", self, channel)

    def _reconnected(self) -> None:
        # after the first connection too: frames published before the subscriptions
        # were active are lost for this process
        if not self.tasks.is_closed:
            self.tasks.spawn(self._resync(), "resync")

    async def _resync(self) -> None:
        lives = self.audience.followed_lives
        if not lives:
            return
        try:
            async with self.database.session() as session:
                rows = (await session.scalars(select(Live).where(Live.id.in_(lives)))).all()
        except SQLAlchemyError as error:
            logger.warning("%r: states not read again after reconnecting: %s", self, error)
            return
        self.audience.resync({live.id: state_frame(live) for live in rows})

    # nodes

    def _owned_lives(self) -> set[int]:
        return set(self.media.sessions) | set(self._claiming)

    async def _node_gone(self, name: str, instance: str) -> None:
        self.link.node_gone(name, instance)
        self.audience.node_gone(name)

    async def _recover_live(self, live_id: int, dead_node: str, orphaned: bool) -> None:
        try:
            async with self.database.session() as session:
                live = await session.get(Live, live_id)
                interrupted = orphaned and live is not None and live.state is LiveState.LIVE
                if live is not None and interrupted:
                    await transition(session, live, LiveState.INTERRUPTED)
        except SQLAlchemyError as error:
            raise RecoveryFailedError(
                f"live {live_id}: not moved to interrupted: {error}"
            ) from error
        if live is not None and interrupted:
            logger.warning("%r: live %s interrupted: its media node died", self, live_id)
            self.audience.broadcast(live_id, state_frame(live))

        # the dead node's recording is finished here, so that the live's replay does not
        # wait for that node to start again
        recordings = self.media.recordings
        if recordings is None:
            return
        try:
            await recordings.adopt(live_id, dead_node)
        except SQLAlchemyError as error:
            raise RecoveryFailedError(
                f"live {live_id}: recordings of node {dead_node} not adopted: {error}"
            ) from error

    async def _remove_left_hls(self, dead_node: str) -> None:
        """Remove the HLS folders that processes of `dead_node` wrote, except those of
        lives that another node carries now: that node empties the folder itself when
        its stream starts."""
        # NOTE: a process whose lease lapsed while it kept running (Redis out of reach
        # for longer than the lease) counts as dead here too, so its streams lose their
        # files, as its lives are interrupted in _recover_live.
        hls_dir = self.media.settings.hls_dir
        is_left = left_by(dead_node, self.media.hls_writer)
        try:
            live_ids = await asyncio.to_thread(find_left_folders, hls_dir, is_left)
            removed = 0
            for live_id in live_ids:
                owner = await self.registry.owner_of(live_id)
                if owner is not None and owner != dead_node:
                    continue
                if await asyncio.to_thread(remove_left_folder, hls_dir, live_id, is_left):
                    removed += 1
        except OSError as error:
            logger.warning("%r: HLS folders of node %s kept: %s", self, dead_node, error)
            return
        if removed:
            logger.info("%r: removed %d HLS folders of node %s", self, removed, dead_node)

    def _live_lost(self, live_id: int, owner: str) -> None:
        session = self.media.sessions.get(live_id)
        if session is not None and not self.media.is_closed:
            self.media.tasks.spawn(self.media.drop_session_locked(session), f"drop {session!r}")


def _live_of_events_channel(channel: str) -> int | None:
    """Return the live id of a `live:<id>:events` channel name, else None."""
    prefix, _, rest = channel.partition(":")
    live_id, _, suffix = rest.partition(":")
    if prefix != "live" or suffix != "events" or not live_id.isdigit():
        return None
    return int(live_id)
