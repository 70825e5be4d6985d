"""The audience of a live across server processes that share a Redis: state and
recording frames reach the sockets of every process, and hosts hear the viewers of
every process.

Each process subscribes, through the signaling broker, to the events channel of each
live it has sockets of, and publishes there what it broadcasts. It also keeps the user
ids of its viewers of each live in the Redis set `live:<id>:viewers:<node>`, whose time
to live it renews like its node lease (signaling.nodes). A process with a host socket
counts the union of the sets of the live nodes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio

from chat.redis_broker import RedisBroker
from signaling.audience import LocalAudience, viewers_frame
from signaling.media import Listener
from signaling.nodes import KEY_PREFIX, LEASE_TTL_MS, REDIS_ERRORS, RENEW_INTERVAL_SECS
from signaling.tasks import TaskSupervisor, raise_if_cancelling, repeat

logger = logging.getLogger(__name__)

# Messages waiting to be published. Frames are broadcast a few times per live and
# minute, so a full outbox means Redis stopped responding, and what does not fit is dropped.
OUTBOX_MAX_MESSAGES = 1_000


def events_channel(live_id: int) -> str:
    """Return the broker channel of the live's events (KEY_PREFIX comes before it in Redis)."""
    return f"live:{live_id}:events"


def viewers_key(live_id: int, node: str) -> str:
    return f"{KEY_PREFIX}live:{live_id}:viewers:{node}"


class Outbox:
    """Publishes messages to Redis channels in the order they were put, from one task,
    so that callers never wait and a live's frames never overtake each other."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.redis = client
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(OUTBOX_MAX_MESSAGES)
        self.dropped = 0

    def put(self, channel: str, payload: str) -> None:
        """Queue `payload` for the broker channel `channel`."""
        try:
            self._queue.put_nowait((KEY_PREFIX + channel, payload))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                logger.warning("outbox full: %d messages dropped so far", self.dropped)

    async def flush(self, timeout_secs: float) -> None:
        """Wait until every queued message is published, or `timeout_secs` passed."""
        try:
            await asyncio.wait_for(self._queue.join(), timeout_secs)
        except TimeoutError:
            logger.warning(
                "outbox: %d messages not published within %.1f s",
                self._queue.qsize(),
                timeout_secs,
            )

    async def run(self) -> None:
        failures = 0
        while True:
            raise_if_cancelling()
            channel, payload = await self._queue.get()
            try:
                await self.redis.publish(channel, payload)
            except REDIS_ERRORS as error:
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    logger.warning(
                        "outbox: publish to %s failed (%s), %d messages lost so far",
                        channel,
                        error,
                        failures,
                    )
            else:
                if failures:
                    logger.info("outbox: publishing works again after %d failures", failures)
                failures = 0
            finally:
                self._queue.task_done()


@dataclass
class ViewerSync:
    """The pending Redis work for the viewers of one live on this process."""

    # this process's viewer set changed and must be written
    write: bool = False
    # the count must be read again for this process's host sockets
    recount: bool = False
    # host sockets that joined and have not been sent the count yet
    new_hosts: list[Listener] = field(default_factory=list)
    # nodes that announced viewers of the live, counted before the node check finds them
    heard_from: set[str] = field(default_factory=set)
    last_count: int | None = None
    task: asyncio.Task[None] | None = None


class ClusterAudience(LocalAudience):
    """The sockets of this process, and the link to those of the other processes."""

    def __init__(
        self,
        node: str,
        client: redis.asyncio.Redis,
        broker: RedisBroker,
        alive_nodes: Callable[[], Iterable[str]],
    ) -> None:
        super().__init__()
        self.node = node
        self.redis = client
        self.broker = broker
        self.outbox = Outbox(client)
        self._alive_nodes = alive_nodes
        # maps live id to the number of local sockets that follow its events channel
        self._followers: dict[int, int] = {}
        self._follow_lock = asyncio.Lock()
        # maps live id to its pending viewer work
        self._syncs: dict[int, ViewerSync] = {}
        # lives whose viewer set this process wrote and has not deleted
        self._written: set[int] = set()
        self.tasks = TaskSupervisor(f"ClusterAudience({node})")

    def start(self) -> None:
        self.tasks.spawn(self.outbox.run(), "outbox")
        self.tasks.spawn(
            repeat(
                self._renew_viewer_sets,
                RENEW_INTERVAL_SECS,
                f"ClusterAudience({self.node}) viewer renewal",
                REDIS_ERRORS,
            ),
            "viewer renewal",
        )

    async def close(self) -> None:
        """Stop the tasks and delete this process's viewer sets."""
        await self.tasks.close()
        for live_id in sorted(self._written):
            try:
                await self.redis.delete(viewers_key(live_id, self.node))
                await self.redis.publish(
                    KEY_PREFIX + events_channel(live_id), self._message("viewers")
                )
            except REDIS_ERRORS as error:
                logger.warning("live %s: viewer set not deleted, it expires: %s", live_id, error)
                break

    # sockets

    async def join(self, live_id: int, listener: Listener) -> None:
        await self._follow(live_id)
        await super().join(live_id, listener)

    async def leave(self, live_id: int, listener: Listener) -> None:
        await super().leave(live_id, listener)
        await self._unfollow(live_id)

    async def _follow(self, live_id: int) -> None:
        async with self._follow_lock:
            followers = self._followers.get(live_id, 0)
            self._followers[live_id] = followers + 1
            if followers == 0:
                await self.broker.subscribe(events_channel(live_id))

    async def _unfollow(self, live_id: int) -> None:
        async with self._follow_lock:
            followers = self._followers.get(live_id, 0) - 1
            if followers > 0:
                self._followers[live_id] = followers
                return
            self._followers.pop(live_id, None)
            await self.broker.unsubscribe(events_channel(live_id))

    @property
    def followed_lives(self) -> list[int]:
        return sorted(self._followers)

    # frames

    def broadcast(self, live_id: int, frame: dict[str, Any]) -> None:
        self.deliver(live_id, frame)
        self.outbox.put(events_channel(live_id), self._message("frame", frame=frame))

    def _message(self, kind: str, **fields: Any) -> str:
        return json.dumps({"from": self.node, "kind": kind, **fields}, ensure_ascii=False)

    def receive(self, live_id: int, payload: str) -> None:
        """Handle a message of the live's events channel."""
        try:
            message = json.loads(payload)
            sender, kind = message["from"], message["kind"]
        except (ValueError, KeyError, TypeError):
            logger.warning("live %s: dropped a malformed event message", live_id)
            return
        if sender == self.node:
            return
        if kind == "frame" and isinstance(message.get("frame"), dict):
            self.deliver(live_id, message["frame"])
        elif kind == "viewers":
            sync = self._syncs.setdefault(live_id, ViewerSync())
            sync.heard_from.add(str(sender))
            self._schedule(live_id, recount=True)
        else:
            logger.warning("live %s: dropped an event message of kind %r", live_id, kind)

    def resync(self, state_frames: dict[int, dict[str, Any]]) -> None:
        """Catch up after the broker reconnected: events published meanwhile were lost.

        Each followed live's sockets get its current `state` frame, this process's
        viewer sets are written again (Redis may have restarted empty), and counts
        are read again.
        """
        for live_id, frame in state_frames.items():
            self.deliver(live_id, frame)
        for live_id in self.followed_lives:
            self._schedule(live_id, write=True, recount=True)

    def node_gone(self, name: str) -> None:
        """Count again without the viewers of a node that died."""
        for live_id, sync in self._syncs.items():
            sync.heard_from.discard(name)
            self._schedule(live_id, recount=True)

    # viewers

    def host_joined(self, live_id: int, listener: Listener) -> None:
        sync = self._syncs.setdefault(live_id, ViewerSync())
        sync.new_hosts.append(listener)
        self._schedule(live_id, recount=True)

    def viewers_changed(self, live_id: int, joined: Listener | None) -> None:
        self._schedule(live_id, write=True)

    def _schedule(self, live_id: int, write: bool = False, recount: bool = False) -> None:
        if self.tasks.is_closed:
            # closing: `close` deletes this process's viewer sets
            return
        sync = self._syncs.setdefault(live_id, ViewerSync())
        sync.write = sync.write or write
        sync.recount = sync.recount or recount
        if sync.task is None or sync.task.done():
            sync.task = self.tasks.spawn(self._sync_viewers(live_id, sync), f"viewers {live_id}")

    async def _sync_viewers(self, live_id: int, sync: ViewerSync) -> None:
        try:
            while sync.write or sync.recount:
                if sync.write:
                    sync.write = False
                    await self._write_viewers(live_id)
                    self.outbox.put(events_channel(live_id), self._message("viewers"))
                    sync.recount = True
                if sync.recount:
                    sync.recount = False
                    await self._send_count(live_id, sync)
        except REDIS_ERRORS as error:
            # the next change, the renewal of the sets or a reconnection writes and
            # counts again
            logger.warning("live %s: viewers not synchronized: %s", live_id, error)
        finally:
            if live_id not in self.listeners and not (sync.write or sync.recount):
                self._syncs.pop(live_id, None)

    async def _write_viewers(self, live_id: int) -> None:
        viewers = self.local_viewers(live_id)
        key = viewers_key(live_id, self.node)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if viewers:
                pipe.sadd(key, *sorted(viewers))
                pipe.pexpire(key, LEASE_TTL_MS)
            await pipe.execute()
        if viewers:
            self._written.add(live_id)
        else:
            self._written.discard(live_id)

    async def _send_count(self, live_id: int, sync: ViewerSync) -> None:
        if not self.has_hosts(live_id):
            sync.new_hosts.clear()
            sync.last_count = None
            return
        nodes = {*self._alive_nodes(), *sync.heard_from, self.node}
        members = await self.redis.sunion([viewers_key(live_id, node) for node in sorted(nodes)])
        count = len(members)
        new_hosts, sync.new_hosts = sync.new_hosts, []
        if count != sync.last_count:
            self.send_to_hosts(live_id, viewers_frame(count))
        else:
            for listener in new_hosts:
                listener.send(viewers_frame(count))
        sync.last_count = count

    async def _renew_viewer_sets(self) -> None:
        lives = sorted(self._written)
        if not lives:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for live_id in lives:
                pipe.pexpire(viewers_key(live_id, self.node), LEASE_TTL_MS)
            renewed = await pipe.execute()
        for live_id, exists in zip(lives, renewed, strict=True):
            if not exists:
                # Redis lost the set (a restart without persistence): write it again
                self._schedule(live_id, write=True)
