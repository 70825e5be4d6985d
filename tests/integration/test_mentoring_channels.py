"""Mentoring conversations on the same chat channels as lives: two server processes
sharing one SQLite file and one real Redis, a mentor on one and a mentee on the other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis.asyncio
from sqlalchemy import select

from accounts.models import User
from chat.redis_broker import KEY_PREFIX
from tests.support import mentoring_flows as flows
from tests.support.chat_clients import FRAME_TIMEOUT_SECS, ChatClient, create_live, database_in
from tests.support.clients import Account, cookie_header, sign_up
from tests.support.processes import RedisServer, ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PASSWORD = "correct horse"


@dataclass
class Cluster:
    """Processes A and B; Claire mentors Léa, whose request she accepted on A."""

    a: ServerProcess
    b: ServerProcess
    data_dir: Path
    redis_url: str
    clients: dict[str, httpx.Client] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    conversation_id: str = ""

    def cookie(self, name: str) -> str:
        return cookie_header(self.clients[name])

    @property
    def channel(self) -> str:
        return f"conversation:{self.conversation_id}"


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("mentoring-cluster")
    a = ServerProcess(data_dir, redis_url=redis_server.url)
    b = ServerProcess(data_dir, redis_url=redis_server.url)
    result = Cluster(a, b, data_dir, redis_server.url)
    try:
        for name, server in (("Claire", a), ("Lea", b), ("Karim", a)):
            result.clients[name] = sign_up(
                server.url, Account(f"{name.lower()}@example.org", PASSWORD, name)
            )
        assert flows.save_offer(result.clients["Claire"]).status_code == 303
        mentor_id = flows.proposed_mentor_ids(result.clients["Lea"], flows.need_form())[0]
        sent = flows.send_request(result.clients["Lea"], flows.need_form(), mentor_id)
        accepted = flows.answer(result.clients["Claire"], flows.request_id_of(sent), accept=True)
        result.conversation_id = flows.conversation_id_of(accepted)
        result.user_ids = {"Claire": mentor_id, "Lea": flows.user_id_of(result.clients["Lea"])}
        yield result
    finally:
        for client in result.clients.values():
            client.close()
        a.stop()
        b.stop()


@pytest.fixture
async def live_channel(cluster: Cluster) -> AsyncIterator[str]:
    """A live hosted by Karim with Claire registered: its channel name."""
    database = database_in(cluster.data_dir)
    async with database.session() as session:
        rows = await session.execute(select(User.display_name, User.id))
        ids = {name: user_id for name, user_id in rows}
    live_id = await create_live(database, ids["Karim"], [ids["Claire"]])
    await database.dispose()
    yield f"live:{live_id}"


async def published_channels(
    pubsub: redis.asyncio.client.PubSub, count: int
) -> list[tuple[str, dict[str, object]]]:
    """Read `count` published chat events from the pattern subscription."""
    received: list[tuple[str, dict[str, object]]] = []

    async def read() -> None:
        while len(received) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and message["type"] == "pmessage":
                channel = message["channel"].decode()
                received.append((channel, json.loads(message["data"])))

    await asyncio.wait_for(read(), FRAME_TIMEOUT_SECS)
    return received


async def test_conversation_uses_live_chat_broker(cluster: Cluster, live_channel: str) -> None:
    """A conversation message and a live message both reach Redis pub/sub under the
    chat broker's prefix, and from there the other process."""
    client = redis.asyncio.Redis.from_url(cluster.redis_url)
    pubsub = client.pubsub()
    await pubsub.psubscribe(f"{KEY_PREFIX}*")
    claire_live = await ChatClient.connect(cluster.a.ws_url, live_channel, cluster.cookie("Claire"))
    karim_live = await ChatClient.connect(cluster.b.ws_url, live_channel, cluster.cookie("Karim"))
    claire = await ChatClient.connect(cluster.a.ws_url, cluster.channel, cluster.cookie("Claire"))
    lea = await ChatClient.connect(cluster.b.ws_url, cluster.channel, cluster.cookie("Lea"))
    for chat in (claire_live, karim_live, claire, lea):
        await chat.open()

    live_seq = await claire_live.say("cl-1", "Bonsoir à toutes et à tous")
    conversation_seq = await claire.say("c-1", "Bonjour Léa, comment s'est passée la semaine ?")

    published = await published_channels(pubsub, 2)
    assert [channel for channel, _ in published] == [
        f"{KEY_PREFIX}{live_channel}",
        f"{KEY_PREFIX}{cluster.channel}",
    ]
    assert published[1][1]["seq"] == conversation_seq
    assert published[1][1]["kind"] == "message"
    live_event = (await karim_live.events_up_to(live_seq))[-1]
    conversation_event = (await lea.events_up_to(conversation_seq))[-1]
    assert live_event["text"] == "Bonsoir à toutes et à tous"
    assert conversation_event["text"] == "Bonjour Léa, comment s'est passée la semaine ?"
    assert conversation_event["author"] == {"id": cluster.user_ids["Claire"], "name": "Claire"}
    assert set(live_event) == set(conversation_event)

    reply = await lea.say("l-1", "Plutôt bien, merci !")
    assert (await claire.events_up_to(reply))[-1]["text"] == "Plutôt bien, merci !"
    for chat in (claire_live, karim_live, claire, lea):
        await chat.close()
    await pubsub.aclose()
    await client.aclose()


async def test_mentee_reconnect_recovers_missed(cluster: Cluster) -> None:
    claire = await ChatClient.connect(cluster.a.ws_url, cluster.channel, cluster.cookie("Claire"))
    lea = await ChatClient.connect(cluster.b.ws_url, cluster.channel, cluster.cookie("Lea"))
    await claire.open()
    await lea.open()
    seen = await claire.say("c-seen", "Avez-vous lu mon message ?")
    last_seen = (await lea.events_up_to(seen))[-1]["seq"]
    read = cluster.clients["Lea"].post(
        f"/api/mentoring/conversations/{cluster.conversation_id}/read",
        json={"seq": last_seen},
        headers={"X-CSRF-Token": flows.csrf(cluster.clients["Lea"])},
    )
    assert read.status_code == 204
    await lea.close()

    # While Léa is away: two messages, and the deletion of one she already saw.
    missed = [
        await claire.say("c-away-1", "Je vous envoie une fiche sur les rituels"),
        await claire.say("c-away-2", "Et une autre sur le plan de classe"),
    ]
    await claire.send({"type": "delete", "seq": seen})
    deletion = (await claire.events_up_to(missed[-1] + 1))[-1]
    assert deletion["kind"] == "deletion"
    unread = cluster.clients["Lea"].get("/api/mentoring/conversations").json()["conversations"]
    assert unread[0]["unread"] == 2

    lea = await ChatClient.connect(cluster.a.ws_url, cluster.channel, cluster.cookie("Lea"))
    frames = await lea.open(after=last_seen)

    events, synced = frames[:-1], frames[-1]
    assert [event["seq"] for event in events] == [*missed, deletion["seq"]]
    assert [event.get("text") for event in events[:2]] == [
        "Je vous envoie une fiche sur les rituels",
        "Et une autre sur le plan de classe",
    ]
    assert events[2]["deleted_seq"] == seen
    assert synced == {"type": "synced", "last_seq": deletion["seq"]}
    cluster.clients["Lea"].post(
        f"/api/mentoring/conversations/{cluster.conversation_id}/read",
        json={"seq": deletion["seq"]},
        headers={"X-CSRF-Token": flows.csrf(cluster.clients["Lea"])},
    )
    after = cluster.clients["Lea"].get("/api/mentoring/conversations").json()["conversations"]
    assert after[0]["unread"] == 0
    await claire.close()
    await lea.close()
