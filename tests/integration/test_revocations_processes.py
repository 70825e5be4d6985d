"""Closing a person's sockets across two server processes that share a data folder and
a real Redis. The host removes a participant, or the participant logs out, through one
process, and their sockets open on the other process close at once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.chat_clients import ChatClient
from tests.support.clients import (
    Account,
    cookie_header,
    csrf_from,
    register_for_live,
    schedule_live,
    sign_up,
)
from tests.support.processes import RedisServer, ServerProcess
from tests.support.signaling_peers import SignalingClient

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PASSWORD = "deux processus"


@dataclass
class Deployment:
    first: ServerProcess
    second: ServerProcess
    live_id: int
    host: httpx.Client
    cookies: dict[str, str]


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> Iterator[Deployment]:
    """Claire hosts; the first test removes Karim, the second logs Lucie out, and Inès
    shows that the others keep their sockets."""
    data_dir = tmp_path_factory.mktemp("revocations")
    first = ServerProcess(data_dir, redis_url=redis_server.url)
    second = ServerProcess(data_dir, redis_url=redis_server.url)
    clients: dict[str, httpx.Client] = {}
    try:
        for name in ("Claire", "Karim", "Lucie", "Ines"):
            clients[name] = sign_up(
                first.url, Account(f"{name.lower()}@example.org", PASSWORD, name)
            )
        live_id = schedule_live(clients["Claire"], "Deux processus, un live")
        for name in ("Karim", "Lucie", "Ines"):
            assert register_for_live(clients[name], live_id).status_code == 303
        yield Deployment(
            first,
            second,
            live_id,
            clients["Claire"],
            {name: cookie_header(client) for name, client in clients.items()},
        )
    finally:
        for client in clients.values():
            client.close()
        first.stop()
        second.stop()


async def open_sockets(deployment: Deployment, name: str) -> tuple[ChatClient, SignalingClient]:
    """Open the person's chat and signaling sockets on the second process."""
    cookie = deployment.cookies[name]
    chat = await ChatClient.connect(deployment.second.ws_url, f"live:{deployment.live_id}", cookie)
    await chat.open()
    signaling = await SignalingClient.open(deployment.second.ws_url, deployment.live_id, cookie)
    return chat, signaling


async def test_removal_closes_sockets_on_other_process(deployment: Deployment) -> None:
    karim_chat, karim_signaling = await open_sockets(deployment, "Karim")
    ines_chat, ines_signaling = await open_sockets(deployment, "Ines")

    token = csrf_from(deployment.host.get("/").text)
    response = deployment.host.post(
        f"/api/lives/{deployment.live_id}/removals",
        json={"user_id": karim_chat.welcome["user"]["id"]},
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 204

    assert await karim_chat.close_code() == 4410
    assert await karim_signaling.close_code() == 4410
    assert await ines_chat.say("i-1", "Toujours là") > 0
    await ines_chat.close()
    await ines_signaling.close()


async def test_logout_closes_sockets_on_other_process(deployment: Deployment) -> None:
    lucie_chat, lucie_signaling = await open_sockets(deployment, "Lucie")
    ines_chat, ines_signaling = await open_sockets(deployment, "Ines")

    with httpx.Client(
        base_url=deployment.first.url, headers={"Cookie": deployment.cookies["Lucie"]}
    ) as browser:
        token = csrf_from(browser.get("/").text)
        assert browser.post("/logout", data={"csrf_token": token}).status_code == 303

    assert await lucie_chat.close_code() == 4401
    assert await lucie_signaling.close_code() == 4401
    assert await ines_chat.say("i-2", "Encore connectée") > 0
    await ines_chat.close()
    await ines_signaling.close()
