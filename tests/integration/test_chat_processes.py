"""Two server processes sharing one SQLite file (WAL) and one Redis: chat events
cross processes, and a reconnecting client gets exactly what it missed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from accounts.models import User
from tests.support.chat_clients import ChatClient, create_live, database_in
from tests.support.clients import Account, cookie_header, sign_up
from tests.support.processes import RedisServer, ServerProcess

pytestmark = [pytest.mark.redis, pytest.mark.slow]

NAMES = ["Claire", "Karim", "Lucie", "Inès"]


@dataclass
class Cluster:
    """Processes A and B; Claire, Karim, Lucie and Inès signed up through A."""

    a: ServerProcess
    b: ServerProcess
    data_dir: Path
    cookies: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def cluster(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    data_dir = tmp_path_factory.mktemp("cluster")
    a = ServerProcess(data_dir, redis_url=redis_server.url)
    b = ServerProcess(data_dir, redis_url=redis_server.url)
    try:
        result = Cluster(a, b, data_dir)
        for name in NAMES:
            client = sign_up(a.url, Account(f"{name.lower()}@example.org", "correct horse", name))
            result.cookies[name] = cookie_header(client)
            client.close()
        yield result
    finally:
        a.stop()
        b.stop()


@pytest.fixture
async def channel(cluster: Cluster) -> AsyncIterator[str]:
    """A new live hosted by Claire with Karim and Lucie registered: its channel name."""
    database = database_in(cluster.data_dir)
    async with database.session() as session:
        rows = await session.execute(select(User.display_name, User.id))
        cluster.user_ids = {name: user_id for name, user_id in rows}
    ids = cluster.user_ids
    live_id = await create_live(database, ids["Claire"], [ids["Karim"], ids["Lucie"]])
    await database.dispose()
    yield f"live:{live_id}"


async def connect(server: ServerProcess, cluster: Cluster, name: str, channel: str) -> ChatClient:
    return await ChatClient.connect(server.ws_url, channel, cluster.cookies[name])


async def test_message_crosses_processes(cluster: Cluster, channel: str) -> None:
    karim = await connect(cluster.b, cluster, "Karim", channel)
    claire = await connect(cluster.a, cluster, "Claire", channel)
    await karim.open()
    await claire.open()

    seq = await claire.say("c-1", "Bonsoir, on commence dans une minute")
    event = (await karim.events_up_to(seq))[-1]
    assert event["seq"] == seq == 1
    assert event["text"] == "Bonsoir, on commence dans une minute"
    assert event["author"] == {"id": cluster.user_ids["Claire"], "name": "Claire"}

    reply = await karim.say("k-1", "Bonsoir !")
    assert reply == 2
    assert (await claire.events_up_to(reply))[-1]["text"] == "Bonsoir !"
    for server in (cluster.a, cluster.b):
        health = httpx.get(f"{server.url}/health").json()
        assert health["broker"] == "ok"
    await karim.close()
    await claire.close()


async def test_reconnect_gets_exactly_what_was_missed(cluster: Cluster, channel: str) -> None:
    lucie = await connect(cluster.b, cluster, "Lucie", channel)
    karim = await connect(cluster.a, cluster, "Karim", channel)
    claire = await connect(cluster.a, cluster, "Claire", channel)
    for client in (lucie, karim, claire):
        await client.open()
    first = await karim.say("k-1", "Première question")
    second = await karim.say("k-2", "Deuxième question")
    seen = await lucie.events_up_to(second)
    assert [event["seq"] for event in seen] == [first, second]
    last_seen = second
    await lucie.close()

    # While Lucie is away: new messages, the deletion of one she already shows
    # and of one she never saw.
    third = await karim.say("k-3", "Troisième question")
    fourth = await karim.say("k-4", "Quatrième question")
    await claire.send({"type": "delete", "seq": first})
    await claire.send({"type": "delete", "seq": third})
    last = (await claire.events_up_to(fourth + 2))[-1]["seq"]
    assert last == fourth + 2

    lucie = await connect(cluster.b, cluster, "Lucie", channel)
    frames = await lucie.open(after=last_seen)
    events, synced = frames[:-1], frames[-1]
    assert [event["seq"] for event in events] == list(range(last_seen + 1, last + 1))
    assert synced == {"type": "synced", "last_seq": last}
    by_seq = {event["seq"]: event for event in events}
    assert by_seq[third]["deleted"] is True
    assert by_seq[third]["text"] == ""
    assert by_seq[fourth]["text"] == "Quatrième question"
    deletions = sorted(event["deleted_seq"] for event in events if event["kind"] == "deletion")
    assert deletions == [first, third]

    # The live stream goes on after the history without a gap.
    fifth = await karim.say("k-5", "Cinquième question")
    assert [event["seq"] for event in await lucie.events_up_to(fifth)] == [fifth]
    for client in (lucie, karim, claire):
        await client.close()


async def test_resume_during_traffic_has_no_gap_or_repeat(cluster: Cluster, channel: str) -> None:
    """Events stored while the history is being sent are neither lost nor sent twice."""
    senders = [
        await connect(server, cluster, name, channel)
        for server, name in ((cluster.a, "Karim"), (cluster.b, "Claire"))
    ]
    for sender in senders:
        await sender.open()
    await senders[0].say("avant", "Avant")

    # Four each, so that with "Avant" each sender stays under the rate limit of 5 in 5 s.
    async def chat(sender: ChatClient, prefix: str) -> None:
        for index in range(4):
            await sender.say(f"{prefix}-{index}", f"message {index}")

    total = 9
    traffic = asyncio.gather(chat(senders[0], "k"), chat(senders[1], "c"))
    lucie = await connect(cluster.b, cluster, "Lucie", channel)
    frames = await lucie.open(after=0)
    await traffic
    seqs = [frame["seq"] for frame in frames if frame["type"] == "event"]
    if seqs[-1] < total:
        seqs += [event["seq"] for event in await lucie.events_up_to(total)]
    assert seqs == list(range(1, total + 1))
    for client in (*senders, lucie):
        await client.close()


async def test_retried_send_through_other_process_stores_once(
    cluster: Cluster, channel: str
) -> None:
    on_a = await connect(cluster.a, cluster, "Karim", channel)
    on_b = await connect(cluster.b, cluster, "Karim", channel)
    await on_a.open()
    await on_b.open()
    first = await on_a.say("k-1", "Une seule fois")
    assert await on_b.say("k-1", "Une seule fois") == first
    assert await on_b.say("k-2", "Et une autre") == first + 1
    for client in (on_a, on_b):
        await client.close()


async def test_events_endpoint_follows_policy(cluster: Cluster, channel: str) -> None:
    karim = await connect(cluster.a, cluster, "Karim", channel)
    claire = await connect(cluster.a, cluster, "Claire", channel)
    await karim.open()
    await claire.open()
    kept = await karim.say("k-1", "Gardé")
    removed = await karim.say("k-2", "Supprimé")
    await claire.send({"type": "delete", "seq": removed})
    await claire.events_up_to(removed + 1)

    url = f"{cluster.b.url}/api/chat/{channel}/events"
    response = httpx.get(url, params={"after": 0}, headers={"Cookie": cluster.cookies["Lucie"]})
    assert response.status_code == 200
    body = response.json()
    assert body["last_seq"] == removed + 1
    assert body["has_more"] is False
    assert [event["seq"] for event in body["events"]] == [kept, removed, removed + 1]
    assert body["events"][1]["deleted"] is True
    assert body["events"][1]["text"] == ""

    page = httpx.get(
        url, params={"after": kept, "limit": 1}, headers={"Cookie": cluster.cookies["Lucie"]}
    ).json()
    assert [event["seq"] for event in page["events"]] == [removed]
    assert page["has_more"] is True

    cases = [
        (url, cluster.cookies["Inès"], 403),
        (url, None, 401),
        (f"{cluster.b.url}/api/chat/live:999999/events", cluster.cookies["Lucie"], 404),
        (f"{url}?after=-1", cluster.cookies["Lucie"], 400),
    ]
    for case_url, cookie, status in cases:
        headers = {"Cookie": cookie} if cookie else {}
        answer = httpx.get(case_url, headers=headers)
        assert answer.status_code == status, case_url
        assert answer.json()["error"]["message"]
    for client in (karim, claire):
        await client.close()
