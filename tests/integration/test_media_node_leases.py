"""Media-node leases in a real Redis, with leases shortened to a fraction of a second:
which node carries a live, and what the survivors do when a node dies."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis.asyncio

from signaling.nodes import (
    NODES_KEY,
    LeaseTimings,
    NodeIdentity,
    NodeNameTakenError,
    NodeRegistry,
    live_node_key,
)

pytestmark = pytest.mark.redis

# Leases of 600 ms renewed every 150 ms and checked every 50 ms: a dead node is noticed
# within about 0.7 s.
TIMINGS = LeaseTimings(ttl_ms=600, renew_interval_secs=0.15, check_interval_secs=0.05)
# Every wait ends as soon as its event happens; this bounds it on a loaded machine.
EVENT_TIMEOUT_SECS = 10.0


@dataclass
class Node:
    """A registry and what its callbacks received."""

    name: str
    client: redis.asyncio.Redis
    owned: set[int] = field(default_factory=set)
    gone: list[tuple[str, str]] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    lost: list[tuple[int, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    registry: NodeRegistry | None = None

    def build(self) -> NodeRegistry:
        self.registry = NodeRegistry(
            self.client,
            NodeIdentity(self.name),
            owned_lives=lambda: self.owned,
            on_node_gone=self._gone,
            recover_live=self._recover,
            on_live_lost=self._lose,
            timings=TIMINGS,
        )
        return self.registry

    async def _gone(self, name: str, instance: str) -> None:
        self.gone.append((name, instance))
        self.changed.set()

    async def _recover(self, live_id: int) -> None:
        self.recovered.append(live_id)
        self.changed.set()

    def _lose(self, live_id: int, owner: str) -> None:
        self.owned.discard(live_id)
        self.lost.append((live_id, owner))
        self.changed.set()

    async def wait_until(self, condition: Callable[[], object]) -> None:
        """Return once `condition()` is true: checked after each callback, and once per
        node check for what no callback reports (a node joining)."""
        async with asyncio.timeout(EVENT_TIMEOUT_SECS):
            while not condition():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), TIMINGS.check_interval_secs)

    @property
    def alive(self) -> dict[str, str]:
        assert self.registry is not None
        return self.registry.alive_nodes


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


@contextlib.asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[None]:
    """Start each node's registry, and stop those still running at the end."""
    registries = [node.build() for node in nodes]
    for registry in registries:
        await registry.start()
    try:
        yield
    finally:
        for registry in registries:
            await registry.stop()


async def wait_forgotten(client: redis.asyncio.Redis, name: str) -> None:
    """Return once the survivors removed the dead node `name` from the set of nodes,
    which they do after recovering its lives."""
    async with asyncio.timeout(EVENT_TIMEOUT_SECS):
        while await client.sismember(NODES_KEY, name):
            await asyncio.sleep(TIMINGS.check_interval_secs)


async def kill(node: Node) -> None:
    """Stop the node's loops without giving up its leases, as a SIGKILL would."""
    assert node.registry is not None
    await node.registry.tasks.close()


async def test_media_node_claim_goes_to_first(client: redis.asyncio.Redis) -> None:
    first, second = Node("first", client), Node("second", client)
    async with running(first, second):
        assert first.registry is not None
        assert second.registry is not None
        assert await first.registry.claim_live(7) == "first"
        assert await second.registry.claim_live(7) == "first"
        assert await second.registry.owner_of(7) == "first"

        await first.registry.release_live(7)
        assert await second.registry.owner_of(7) is None
        assert await second.registry.claim_live(7) == "second"


async def test_media_node_stop_releases_leases(client: redis.asyncio.Redis) -> None:
    node = Node("leaving", client)
    async with running(node):
        assert node.registry is not None
        node.owned.add(3)
        assert await node.registry.claim_live(3) == "leaving"
    assert await client.get(live_node_key(3)) is None
    assert await client.keys("veillee:signaling:*") == []


async def test_media_node_death_recovered_once(client: redis.asyncio.Redis) -> None:
    """Guards against a dead node's live left on air, and against every survivor
    interrupting it and broadcasting the change."""
    dying, first, second = Node("dying", client), Node("first", client), Node("second", client)
    async with running(first, second, dying):
        assert dying.registry is not None
        dying.owned.add(12)
        assert await dying.registry.claim_live(12) == "dying"
        await first.wait_until(lambda: "dying" in first.alive)
        await second.wait_until(lambda: "dying" in second.alive)

        await kill(dying)
        await first.wait_until(lambda: first.gone)
        await second.wait_until(lambda: second.gone)
        await wait_forgotten(client, "dying")

        assert first.gone == [("dying", dying.registry.identity.instance)]
        assert second.gone == [("dying", dying.registry.identity.instance)]
        assert sorted(first.recovered + second.recovered) == [12]


async def test_media_node_moved_live_not_recovered(client: redis.asyncio.Redis) -> None:
    """Guards against interrupting a live that another node took over while the dead
    node's lease was running out."""
    dying, survivor = Node("dying", client), Node("survivor", client)
    async with running(survivor, dying):
        assert dying.registry is not None
        dying.owned.add(5)
        await dying.registry.claim_live(5)
        await survivor.wait_until(lambda: "dying" in survivor.alive)

        await kill(dying)
        await client.set(live_node_key(5), "survivor")
        await survivor.wait_until(lambda: survivor.gone)
        await wait_forgotten(client, "dying")
        assert survivor.recovered == []


async def test_media_node_restart_recovers_own_lives(client: redis.asyncio.Redis) -> None:
    """Guards against the lives of a killed process staying on air when the same node
    starts again before any survivor noticed."""
    killed = Node("node-a", client)
    async with running(killed):
        assert killed.registry is not None
        killed.owned.add(9)
        await killed.registry.claim_live(9)
        await kill(killed)

        restarted = Node("node-a", client)
        async with running(restarted):
            assert restarted.recovered == [9]
            assert restarted.registry is not None
            assert await restarted.registry.owner_of(9) is None


async def test_media_node_name_taken_fails_start(client: redis.asyncio.Redis) -> None:
    """Guards against two running processes that share a node name."""
    running_node = Node("shared-name", client)
    async with running(running_node):
        with pytest.raises(NodeNameTakenError, match="shared-name"):
            await Node("shared-name", client).build().start()


async def test_media_node_gives_up_live_taken_over(client: redis.asyncio.Redis) -> None:
    """Guards against two nodes both carrying a live after Redis lost its lease."""
    node = Node("carrier", client)
    async with running(node):
        assert node.registry is not None
        node.owned.add(4)
        await node.registry.claim_live(4)
        await client.set(live_node_key(4), "intruder")
        await node.wait_until(lambda: node.lost)
        assert node.lost == [(4, "intruder")]
