"""Media nodes in Redis: each server process's lease, the process that carries each
live's media, and the detection of processes that died.

Keys, all under KEY_PREFIX:

- `node:<name>` is the node's lease, a JSON object with the `instance` token of the
  running process, its pid and host name. The node renews it every RENEW_INTERVAL_SECS.
  Once it expires, other nodes treat the node as dead.
- `nodes` is the set of node names that have held a lease, which survivors check.
- `node:<name>:lives` is the set of live ids whose media the node carries.
- `live:<id>:node` is the name of the live's media node, a lease renewed with the node's.
- `node:<name>:recovery` is taken by the one survivor that interrupts a dead node's lives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

import redis.asyncio
from redis.exceptions import RedisError

from signaling.tasks import TaskSupervisor, repeat

logger = logging.getLogger(__name__)

KEY_PREFIX = "veillee:signaling:"
NODES_KEY = KEY_PREFIX + "nodes"
# A lease lasts this long without renewal. A dead node's lives are noticed at most
# LEASE_TTL_MS + NODE_CHECK_INTERVAL_SECS after its last renewal, about 7 s, which keeps
# the detection within 10 s with room for the database write.
LEASE_TTL_MS = 6_000
# Three renewals fit in one lease, so one slow or lost renewal does not expire it.
RENEW_INTERVAL_SECS = 2.0
NODE_CHECK_INTERVAL_SECS = 1.0
# The survivor that recovers a dead node keeps its claim at most this long, which is
# long enough for a few database writes. When it dies meanwhile, another one takes over.
RECOVERY_CLAIM_TTL_MS = 30_000


@dataclass(frozen=True)
class LeaseTimings:
    """How long leases last and how often they are renewed and checked. Tests shorten
    them so that a node's death is noticed in a fraction of a second."""

    ttl_ms: int = LEASE_TTL_MS
    renew_interval_secs: float = RENEW_INTERVAL_SECS
    check_interval_secs: float = NODE_CHECK_INTERVAL_SECS

    @property
    def ttl_secs(self) -> float:
        return self.ttl_ms / 1000


# Renews the node's lease and the leases of the lives it carries, atomically.
# KEYS: node lease, nodes set, node's lives set, then one live lease per live.
# ARGV: node name, lease value, TTL in ms, then the live ids in the order of their keys.
# Returns {1, lost live ids} or {0, {}} when another process holds the node's name.
RENEW_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[2] then
  return {0, {}}
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
local lost = {}
for i = 4, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if (not owner) or owner == ARGV[1] then
    redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[3])
    redis.call('SADD', KEYS[3], ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return {1, lost}
"""

# Makes the node the live's media node unless another node is; returns the owner.
# KEYS: live lease, node's lives set. ARGV: node name, TTL in ms, live id.
CLAIM_SCRIPT = """
local owner = redis.call('GET', KEYS[1])
if owner then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return ARGV[1]
"""

# Gives up the live's lease if the node holds it.
# KEYS: live lease, node's lives set. ARGV: node name, live id.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('SREM', KEYS[2], ARGV[2])
return 1
"""

# Forgets the lives a recovery handled, and the dead node once nothing of it is left.
# KEYS: nodes set, node lease, node's lives set. ARGV: node name, then the live ids.
FORGET_SCRIPT = """
if #ARGV > 1 then
  redis.call('SREM', KEYS[3], unpack(ARGV, 2))
end
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('SCARD', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
end
return 1
"""


# Failures of Redis, which the loops outlast.
REDIS_ERRORS = (RedisError, OSError, TimeoutError)


def node_key(name: str) -> str:
    return f"{KEY_PREFIX}node:{name}"


def node_lives_key(name: str) -> str:
    return f"{KEY_PREFIX}node:{name}:lives"


def recovery_key(name: str) -> str:
    return f"{KEY_PREFIX}node:{name}:recovery"


def live_node_key(live_id: int) -> str:
    return f"{KEY_PREFIX}live:{live_id}:node"


class RecoveryFailedError(Exception):
    """A dead node's live could not be interrupted now; the next node check retries."""


class NodeNameTakenError(RuntimeError):
    """Another running process renews the lease of this node's name."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(
            f"node name {name!r} is in use by another running process ({holder}): "
            "give each server process its own NODE_NAME"
        )
        self.name = name
        self.holder = holder


@dataclass(frozen=True)
class NodeIdentity:
    """This process as a media node: its configured name and a token drawn at start,
    which distinguishes a restarted process of the same name from its predecessor."""

    name: str
    instance: str = field(default_factory=lambda: secrets.token_hex(8))

    def lease_value(self) -> str:
        return json.dumps(
            {"instance": self.instance, "pid": os.getpid(), "host": socket.gethostname()}
        )


def instance_of(lease_value: bytes | str | None) -> str | None:
    """Return the instance token of a node lease value, or None for a malformed one."""
    if lease_value is None:
        return None
    try:
        value = json.loads(lease_value)
    except (ValueError, UnicodeDecodeError):
        return None
    instance = value.get("instance") if isinstance(value, dict) else None
    return instance if isinstance(instance, str) else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# Called with (node name, instance token) when a node's process is gone: its lease
# expired, or a new process of the same name replaced it.
NodeGoneHandler = Callable[[str, str], Awaitable[None]]
# Called with (live id, name of its dead media node, whether the live is left without a
# media node). Takes over what the dead node left unfinished and, when the live is left
# without one, moves it to interrupted. Raises RecoveryFailedError on failure.
LiveRecoverer = Callable[[int, str, bool], Awaitable[None]]
# Called with (live id, owner) when another node holds the lease of a live this one carries.
LiveLostHandler = Callable[[int, str], None]
# Called with the name of a dead node once its lives are recovered, by the one survivor
# that recovered them, or by a restarted process of that name.
NodeRecoveredHandler = Callable[[str], Awaitable[None]]


class NodeRegistry:
    """This process's records in Redis, kept alive by two supervised loops: one renews
    the leases, the other looks for dead nodes and recovers their lives."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        identity: NodeIdentity,
        *,
        owned_lives: Callable[[], Iterable[int]],
        on_node_gone: NodeGoneHandler,
        recover_live: LiveRecoverer,
        on_live_lost: LiveLostHandler,
        on_node_recovered: NodeRecoveredHandler | None = None,
        timings: LeaseTimings = LeaseTimings(),
    ) -> None:
        self.redis = client
        self.timings = timings
        self.identity = identity
        self.name = identity.name
        self._owned_lives = owned_lives
        self._on_node_gone = on_node_gone
        self._recover_live = recover_live
        self._on_live_lost = on_live_lost
        self._on_node_recovered = on_node_recovered
        self._renew_script = client.register_script(RENEW_SCRIPT)
        self._claim_script = client.register_script(CLAIM_SCRIPT)
        self._release_script = client.register_script(RELEASE_SCRIPT)
        self._forget_script = client.register_script(FORGET_SCRIPT)
        # maps the name of each other live node to its instance token
        self.alive_nodes: dict[str, str] = {}
        # lives whose leases the last renewal held
        self._renewed_lives: set[int] = set()
        self._last_renewed_monotonic: float | None = None
        self._name_taken_logged = False
        self.tasks = TaskSupervisor(f"NodeRegistry({self.name})")

    def __repr__(self) -> str:
        return f"NodeRegistry({self.name})"

    @property
    def lease_is_current(self) -> bool:
        """Whether the node's lease was renewed within its time to live."""
        renewed = self._last_renewed_monotonic
        return renewed is not None and time.monotonic() - renewed < self.timings.ttl_secs

    async def start(self) -> None:
        """Take the node's lease, interrupt what a previous process of this name left
        live, then start the loops. Raise NodeNameTakenError when another running
        process renews the lease of this name."""
        try:
            await self._take_lease()
            await self._recover_node(self.name)
        except REDIS_ERRORS as error:
            logger.warning(
                "%r: Redis unreachable at start (%s); the lease is taken when it responds",
                self,
                error,
            )
        self.tasks.spawn(
            repeat(
                self._renew,
                self.timings.renew_interval_secs,
                f"{self!r} lease renewal",
                REDIS_ERRORS,
            ),
            "lease renewal",
        )
        self.tasks.spawn(
            repeat(
                self._check_nodes,
                self.timings.check_interval_secs,
                f"{self!r} node check",
                (*REDIS_ERRORS, RecoveryFailedError),
            ),
            "node check",
        )
        logger.info("%r: media node started instance=%s", self, self.identity.instance)

    async def _take_lease(self) -> None:
        # A process of this name that was killed leaves its lease until it expires:
        # wait that long, then treat a lease still renewed as another running process.
        deadline = time.monotonic() + self.timings.ttl_secs + self.timings.renew_interval_secs
        waited = False
        while True:
            taken = await self.redis.set(
                node_key(self.name), self.identity.lease_value(), nx=True, px=self.timings.ttl_ms
            )
            if taken:
                await self.redis.sadd(NODES_KEY, self.name)
                self._last_renewed_monotonic = time.monotonic()
                return
            holder = await self.redis.get(node_key(self.name))
            if holder is not None and time.monotonic() > deadline:
                raise NodeNameTakenError(self.name, _text(holder))
            if not waited:
                logger.info(
                    "%r: waiting up to %.0f s for the lease of a previous process to expire",
                    self,
                    self.timings.ttl_secs,
                )
                waited = True
            # a starting node looks a few times per lease whether its predecessor's expired
            await asyncio.sleep(self.timings.renew_interval_secs / 4)

    async def stop(self) -> None:
        """Stop the loops and give up every lease, so that nothing of this node remains.

        The node's records stay when another process holds its name, which happens
        when `start` failed with NodeNameTakenError.
        """
        await self.tasks.close()
        try:
            holder = await self.redis.get(node_key(self.name))
            if instance_of(holder) == self.identity.instance:
                for live_id in sorted(self._renewed_lives):
                    await self.release_live(live_id)
                await self.redis.delete(node_lives_key(self.name), node_key(self.name))
                await self.redis.srem(NODES_KEY, self.name)
        except REDIS_ERRORS as error:
            logger.warning("%r: leases not released at stop, they expire: %s", self, error)
        logger.info("%r: media node stopped", self)

    # lives

    async def owner_of(self, live_id: int) -> str | None:
        """Return the name of the live's media node, or None when no node carries it."""
        owner = await self.redis.get(live_node_key(live_id))
        return None if owner is None else _text(owner)

    async def claim_live(self, live_id: int) -> str:
        """Make this node the live's media node unless another one is; return the owner."""
        owner = await self._claim_script(
            keys=[live_node_key(live_id), node_lives_key(self.name)],
            args=[self.name, self.timings.ttl_ms, live_id],
        )
        owner_name = _text(owner)
        if owner_name == self.name:
            self._renewed_lives.add(live_id)
        return owner_name

    async def release_live(self, live_id: int) -> None:
        await self._release_script(
            keys=[live_node_key(live_id), node_lives_key(self.name)], args=[self.name, live_id]
        )
        self._renewed_lives.discard(live_id)

    # loops

    async def _renew(self) -> None:
        lives = sorted(set(self._owned_lives()))
        result = await self._renew_script(
            keys=[
                node_key(self.name),
                NODES_KEY,
                node_lives_key(self.name),
                *(live_node_key(live_id) for live_id in lives),
            ],
            args=[self.name, self.identity.lease_value(), self.timings.ttl_ms, *lives],
        )
        held, lost = int(result[0]), [int(live_id) for live_id in result[1]]
        if not held:
            if not self._name_taken_logged:
                holder = await self.redis.get(node_key(self.name))
                logger.error(
                    "%r: another process holds this node's lease (%s); "
                    "give each server process its own NODE_NAME",
                    self,
                    None if holder is None else _text(holder),
                )
                self._name_taken_logged = True
            return
        self._name_taken_logged = False

        now = time.monotonic()
        if self._last_renewed_monotonic is not None:
            gap_secs = now - self._last_renewed_monotonic
            if gap_secs > self.timings.ttl_secs:
                # NOTE: other nodes may have interrupted this node's lives meanwhile;
                # the media sessions go on, and the host's next publish resumes the live.
                logger.warning("%r: lease renewed after a gap of %.1f s", self, gap_secs)
        self._last_renewed_monotonic = now

        # lives given up since the last renewal lose their lease now
        for live_id in self._renewed_lives - set(lives):
            await self.release_live(live_id)
        for live_id in lost:
            owner = await self.owner_of(live_id)
            logger.error(
                "%r: live %s is carried by node %s too; this node gives it up", self, live_id, owner
            )
            self._on_live_lost(live_id, owner or "?")
        self._renewed_lives = set(lives) - set(lost)

    async def _check_nodes(self) -> None:
        names = {_text(name) for name in await self.redis.smembers(NODES_KEY)}
        names.discard(self.name)
        ordered = sorted(names)
        values = await self.redis.mget([node_key(name) for name in ordered]) if ordered else []
        alive: dict[str, str] = {}
        for name, value in zip(ordered, values, strict=True):
            instance = instance_of(value)
            if value is not None:
                alive[name] = instance or "?"

        gone = [
            (name, instance)
            for name, instance in self.alive_nodes.items()
            if alive.get(name) != instance
        ]
        for name in alive.keys() - self.alive_nodes.keys():
            logger.info("%r: node %s joined", self, name)
        self.alive_nodes = alive
        for name, instance in gone:
            logger.warning("%r: node %s (instance %s) is gone", self, name, instance)
            await self._on_node_gone(name, instance)
        for name in sorted(names - alive.keys()):
            await self._recover_node(name)

    async def _recover_node(self, name: str) -> None:
        """Interrupt the lives that the dead node `name` carried, unless another node
        took them over, once across all survivors."""
        claimed = await self.redis.set(
            recovery_key(name), self.name, nx=True, px=RECOVERY_CLAIM_TTL_MS
        )
        if not claimed:
            return
        try:
            lives = sorted(
                int(live_id) for live_id in await self.redis.smembers(node_lives_key(name))
            )
            handled: list[int] = []
            for live_id in lives:
                owner = await self.owner_of(live_id)
                if owner is not None and owner != name:
                    logger.info(
                        "%r: live %s of node %s moved to node %s", self, live_id, name, owner
                    )
                    # the host published again elsewhere before this check: the live goes
                    # on, but what the dead node left unfinished is still taken over
                    await self._recover_live(live_id, name, False)
                elif name == self.name and live_id in set(self._owned_lives()):
                    continue
                else:
                    logger.warning("%r: live %s lost its media node %s", self, live_id, name)
                    await self._recover_live(live_id, name, True)
                handled.append(live_id)
            await self._forget_script(
                keys=[NODES_KEY, node_key(name), node_lives_key(name)], args=[name, *handled]
            )
            if handled or name != self.name:
                logger.info("%r: recovered node %s: %d lives handled", self, name, len(handled))
            if self._on_node_recovered is not None:
                await self._on_node_recovered(name)
        finally:
            await self.redis.delete(recovery_key(name))
