"""A mentoring conversation through the real server's WebSocket and HTTP endpoints:
only its two members read, write, list or even learn that it exists, and the end of
the mentorship turns it read-only for both."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.support import mentoring_flows as flows
from tests.support.chat_clients import ChatClient
from tests.support.clients import Account, cookie_header, sign_up
from tests.support.processes import ServerProcess

PASSWORD = "correct horse"
_mentee_numbers = itertools.count(1)


@dataclass
class Site:
    """One server; Claire mentors mathematics, Karim mentors philosophy, Inès is a
    teacher with no part in any conversation."""

    server: ServerProcess
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def cookie(self, name: str) -> str:
        return cookie_header(self.clients[name])


@dataclass
class Pair:
    """A mentorship between Claire and a new mentee, with its conversation id."""

    mentee: httpx.Client
    conversation_id: str

    @property
    def channel(self) -> str:
        return f"conversation:{self.conversation_id}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = ServerProcess(tmp_path_factory.mktemp("privacy"))
    result = Site(server)
    try:
        for name in ("Claire", "Karim", "Ines"):
            result.clients[name] = sign_up(
                server.url, Account(f"{name.lower()}@example.org", PASSWORD, name)
            )
        assert flows.save_offer(result.clients["Claire"], capacity="10").status_code == 303
        karim_offer = flows.save_offer(result.clients["Karim"], disciplines=["philosophie"])
        assert karim_offer.status_code == 303
        yield result
    finally:
        for client in result.clients.values():
            client.close()
        server.stop()


@pytest.fixture
def pair(site: Site) -> Iterator[Pair]:
    """A fresh mentee whose request Claire accepted."""
    number = next(_mentee_numbers)
    mentee = sign_up(
        site.server.url, Account(f"mentee{number}@example.org", PASSWORD, f"Mentee {number}")
    )
    try:
        mentor_ids = flows.proposed_mentor_ids(mentee, flows.need_form())
        assert len(mentor_ids) == 1
        sent = flows.send_request(mentee, flows.need_form(), mentor_ids[0])
        accepted = flows.answer(site.clients["Claire"], flows.request_id_of(sent), accept=True)
        conversation_id = flows.conversation_id_of(accepted)
        yield Pair(mentee, conversation_id)
        # frees Claire's place for the next test; 409 when the test ended it already
        flows.end_mentorship(site.clients["Claire"], conversation_id)
    finally:
        mentee.close()


def missing_ids() -> list[str]:
    """Conversation ids that name nothing: random, malformed and numeric guesses."""
    return [secrets.token_urlsafe(12), "1", "0000000000000000", "..", "x" * 40]


async def close_code(site: Site, channel: str, cookie: str | None) -> int | None:
    client = await ChatClient.connect(site.server.ws_url, channel, cookie)
    return await client.close_code()


@pytest.mark.parametrize("outsider", ["Ines", "Karim"])
async def test_socket_refuses_outsider_like_missing(site: Site, pair: Pair, outsider: str) -> None:
    """Guards against a close code that tells an outsider the conversation exists."""
    cookie = site.cookie(outsider)

    real = await close_code(site, pair.channel, cookie)

    assert real == 4404
    for missing in missing_ids():
        assert await close_code(site, f"conversation:{missing}", cookie) == real


async def test_socket_refuses_logged_out_like_missing(site: Site, pair: Pair) -> None:
    real = await close_code(site, pair.channel, None)

    assert real == 4401
    assert await close_code(site, f"conversation:{secrets.token_urlsafe(12)}", None) == real


@pytest.mark.parametrize("outsider", ["Ines", "Karim", None])
def test_http_refuses_outsider_like_missing(site: Site, pair: Pair, outsider: str | None) -> None:
    """Every HTTP endpoint that takes a conversation id answers an outsider exactly as it
    answers for an id that names nothing."""
    anonymous = httpx.Client(base_url=site.server.url)
    client = site.clients[outsider] if outsider else anonymous
    # A logged-out visitor has no session token, so any token will do.
    token = flows.csrf(client) if outsider else "no-session"
    missing = secrets.token_urlsafe(12)

    def probe(conversation_id: str) -> list[httpx.Response]:
        return [
            client.get(f"/api/chat/conversation:{conversation_id}/events"),
            client.get(f"/api/chat/conversation:{conversation_id}/events?after=0&limit=5"),
            client.get(f"/mentoring/conversations/{conversation_id}"),
            client.post(
                f"/mentoring/conversations/{conversation_id}/end", data={"csrf_token": token}
            ),
            client.post(
                f"/api/mentoring/conversations/{conversation_id}/read",
                json={"seq": 1},
                headers={"X-CSRF-Token": token},
            ),
        ]

    for real, fake in zip(probe(pair.conversation_id), probe(missing), strict=True):
        assert real.status_code == fake.status_code, real.request.url
        assert real.status_code in {401, 403, 303, 404}
        if real.status_code == 303:
            assert real.headers["location"].startswith("/login")
        else:
            assert real.text.replace(pair.conversation_id, "ID") == fake.text.replace(missing, "ID")
    anonymous.close()


@pytest.mark.parametrize("outsider", ["Ines", "Karim"])
def test_outsider_lists_no_conversation(site: Site, pair: Pair, outsider: str) -> None:
    client = site.clients[outsider]

    listed = client.get("/api/mentoring/conversations")
    summary = client.get("/api/mentoring/summary")
    dashboard = client.get("/mentoring")

    assert listed.status_code == 200
    assert listed.json() == {"conversations": []}
    assert summary.json()["unread_messages"] == 0
    assert pair.conversation_id not in dashboard.text


def test_logged_out_lists_nothing(site: Site, pair: Pair) -> None:
    with httpx.Client(base_url=site.server.url) as anonymous:
        assert anonymous.get("/api/mentoring/conversations").status_code == 401
        assert anonymous.get("/api/mentoring/summary").status_code == 401


async def test_outsider_attempts_leave_conversation_unchanged(site: Site, pair: Pair) -> None:
    """After every refused attempt the members still talk, and no event came from anyone else."""
    for outsider in ("Ines", "Karim"):
        assert await close_code(site, pair.channel, site.cookie(outsider)) == 4404
        flows.end_mentorship(site.clients[outsider], pair.conversation_id)

    claire = await ChatClient.connect(site.server.ws_url, pair.channel, site.cookie("Claire"))
    await claire.open()
    assert claire.welcome["can_write"] is True
    seq = await claire.say("c-1", "Bonjour, je suis votre mentor")
    mentee = await ChatClient.connect(site.server.ws_url, pair.channel, cookie_header(pair.mentee))
    history = await mentee.open()

    events = [frame for frame in history if frame["type"] == "event"]
    assert [event["seq"] for event in events] == [seq] == [1]
    assert events[0]["author"]["name"] == "Claire"
    await claire.close()
    await mentee.close()


async def test_members_read_only_after_end(site: Site, pair: Pair) -> None:
    claire = await ChatClient.connect(site.server.ws_url, pair.channel, site.cookie("Claire"))
    mentee = await ChatClient.connect(site.server.ws_url, pair.channel, cookie_header(pair.mentee))
    await claire.open()
    await mentee.open()
    first = await mentee.say("m-1", "Merci pour ces conseils")
    assert (await claire.events_up_to(first))[-1]["text"] == "Merci pour ces conseils"
    listed = pair.mentee.get("/api/mentoring/conversations").json()["conversations"]
    assert [item["conversation_id"] for item in listed] == [pair.conversation_id]

    ended = flows.end_mentorship(pair.mentee, pair.conversation_id)
    assert ended.status_code == 303

    for client, client_id in ((claire, "c-after"), (mentee, "m-after")):
        await client.send({"type": "send", "client_id": client_id, "text": "Encore un mot"})
        error = (await client.until("error"))[-1]
        assert error["code"] == "read_only"
        assert error["ref"] == client_id
        assert "n'accepte plus de messages" in error["message"]
    await claire.close()
    await mentee.close()

    for cookie in (site.cookie("Claire"), cookie_header(pair.mentee)):
        again = await ChatClient.connect(site.server.ws_url, pair.channel, cookie)
        history = await again.open()
        assert again.welcome["can_write"] is False
        assert [frame["seq"] for frame in history if frame["type"] == "event"] == [first]
        await again.close()
    page = pair.mentee.get(f"/mentoring/conversations/{pair.conversation_id}")
    assert page.status_code == 200
    assert "Ce mentorat est terminé" in page.text
    assert (
        site.clients["Ines"].get(f"/mentoring/conversations/{pair.conversation_id}").status_code
        == 404
    )


def test_conversation_ids_not_sequential(site: Site, pair: Pair) -> None:
    """Guards against ids that let anyone count or enumerate conversations."""
    assert len(pair.conversation_id) == 16
    assert not pair.conversation_id.isdigit()
