"""Who may open what, in one place, through the endpoints of a real server process.

| person                  | chat, signaling | replay page, files | recording APIs | chat history |
|-------------------------|-----------------|--------------------|----------------|--------------|
| not logged in           | close 4401      | 303 to the log-in  | 401            | 401          |
| logged in, unregistered | close 4403      | 200                | 200            | 403          |
| host or registered      | welcome         | 200                | 200            | 200          |

The recording APIs are /api/lives/{id}/recording and /api/lives/{id}/replay.

A logged-in member registers with one click, even while the live is on air, and may
then join its chat and its media at once. Other tests check the same codes case by
case. This file is the overview.
"""

from __future__ import annotations

import asyncio
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
from tests.support.processes import ServerProcess
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    PICTURE_FRAME_RATE,
    Publisher,
    SignalingClient,
    Viewer,
)

PASSWORD = "cahier de textes"
# Seconds of media recorded for the replay that the file checks open.
RECORDED_SECS = 2
READY_TIMEOUT_SECS = 60.0

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Site:
    """A server process with a coming live and a replayed one.

    Claire hosts both lives and Karim is registered for both. Inès is a member who
    never registers. The video and poster URLs are the replay's signed links.
    """

    server: ServerProcess
    cookies: dict[str, str]
    coming_live_id: int
    replayed_live_id: int
    video_url: str
    poster_url: str


def sign_up_cookie(server: ServerProcess, name: str) -> str:
    """Sign `name` up through the form; return the Cookie header of their session."""
    client = sign_up(server.url, Account(f"{name.lower()}@example.org", PASSWORD, name))
    try:
        return cookie_header(client)
    finally:
        client.close()


async def publish(ws_url: str, live_id: int, host_cookie: str) -> tuple[SignalingClient, Publisher]:
    """Publish as the host; return once the live is on air and its recording began."""
    host = await SignalingClient.open(ws_url, live_id, host_cookie)
    publisher = Publisher()
    await publisher.accept(await host.request_answer("publish", await publisher.offer()))
    await host.until("state", state="live")
    await host.until("recording", status="recording")
    return host, publisher


async def watch(
    ws_url: str, live_id: int, cookie: str, publisher: Publisher
) -> tuple[SignalingClient, Viewer]:
    """Watch the live; return once the viewer decoded its first frame."""
    client = await SignalingClient.open(ws_url, live_id, cookie)
    viewer = Viewer(publisher.video)
    await viewer.accept(await client.request_answer("watch", await viewer.offer()))
    await asyncio.wait_for(viewer.first_frame.wait(), EVENT_TIMEOUT_SECS)
    return client, viewer


async def record_short_live(server: ServerProcess, live_id: int, cookies: dict[str, str]) -> None:
    """Broadcast RECORDED_SECS of media to Karim, end the live, and wait for its replay."""
    host, publisher = await publish(server.ws_url, live_id, cookies["Claire"])
    watcher, viewer = await watch(server.ws_url, live_id, cookies["Karim"], publisher)
    await viewer.wait_for_frame_number(
        publisher.video.frames_sent + RECORDED_SECS * PICTURE_FRAME_RATE
    )
    await host.send({"type": "end"})
    await host.until("state", state="ended")
    await asyncio.wait_for(host.until("recording", status="ready"), READY_TIMEOUT_SECS)
    for socket in (host, watcher):
        await socket.close()
    for peer in (publisher, viewer):
        await peer.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    server = ServerProcess(tmp_path_factory.mktemp("access"))
    try:
        cookies = {name: sign_up_cookie(server, name) for name in ("Claire", "Karim", "Inès")}
        with (
            httpx.Client(base_url=server.url, headers={"Cookie": cookies["Claire"]}) as claire,
            httpx.Client(base_url=server.url, headers={"Cookie": cookies["Karim"]}) as karim,
        ):
            coming_live_id = schedule_live(claire, "Les cartes mentales en classe")
            replayed_live_id = schedule_live(claire, "Corriger à plusieurs")
            for live_id in (coming_live_id, replayed_live_id):
                assert register_for_live(karim, live_id).status_code == 303

            # a fresh event loop, because module fixtures outlive each test's loop
            asyncio.run(record_short_live(server, replayed_live_id, cookies))
            recording = karim.get(f"/api/lives/{replayed_live_id}/recording").json()

        yield Site(
            server=server,
            cookies=cookies,
            coming_live_id=coming_live_id,
            replayed_live_id=replayed_live_id,
            video_url=recording["video_url"],
            poster_url=recording["poster_url"],
        )
    finally:
        server.stop()


def member_client(site: Site, name: str | None) -> httpx.Client:
    """An HTTP client with `name`'s session, or without any when `name` is None."""
    headers = {"Cookie": site.cookies[name]} if name else {}
    return httpx.Client(base_url=site.server.url, headers=headers, timeout=EVENT_TIMEOUT_SECS)


async def chat_close_code(site: Site, live_id: int, name: str | None) -> int | None:
    cookie = site.cookies[name] if name else None
    client = await ChatClient.connect(site.server.ws_url, f"live:{live_id}", cookie)
    return await client.close_code()


async def signaling_close_code(site: Site, live_id: int, name: str | None) -> int | None:
    cookie = site.cookies[name] if name else None
    client = await SignalingClient.connect(site.server.ws_url, live_id, cookie)
    return await client.close_code()


# not logged in


async def test_anonymous_chat_closes_4401(site: Site) -> None:
    assert await chat_close_code(site, site.coming_live_id, None) == 4401


async def test_anonymous_signaling_closes_4401(site: Site) -> None:
    assert await signaling_close_code(site, site.coming_live_id, None) == 4401


async def test_anonymous_replay_page_redirects_to_login(site: Site) -> None:
    path = f"/lives/{site.replayed_live_id}/replay"
    with member_client(site, None) as anonymous:
        response = anonymous.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


@pytest.mark.parametrize("file", ["video", "poster"])
async def test_anonymous_recording_file_redirects_to_login(site: Site, file: str) -> None:
    """Guards against a signed link that opens a replay's file without a log-in."""
    url = site.video_url if file == "video" else site.poster_url
    with member_client(site, None) as anonymous:
        response = anonymous.get(url)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=/recordings/")
    assert "video" not in response.headers.get("content-type", "")


@pytest.mark.parametrize(
    "path",
    [
        "/api/lives/{live}/recording",
        "/api/lives/{live}/replay",
        "/api/chat/live:{live}/events",
    ],
)
async def test_anonymous_api_returns_401(site: Site, path: str) -> None:
    with member_client(site, None) as anonymous:
        response = anonymous.get(path.format(live=site.replayed_live_id))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "http_401"


# logged in, not registered


async def test_unregistered_chat_closes_4403(site: Site) -> None:
    assert await chat_close_code(site, site.coming_live_id, "Inès") == 4403


async def test_unregistered_signaling_closes_4403(site: Site) -> None:
    assert await signaling_close_code(site, site.coming_live_id, "Inès") == 4403


async def test_unregistered_chat_history_returns_403(site: Site) -> None:
    with member_client(site, "Inès") as ines:
        response = ines.get(f"/api/chat/live:{site.coming_live_id}/events")
    assert response.status_code == 403


async def test_registered_member_joins_chat_and_signaling(site: Site) -> None:
    chat = await ChatClient.connect(
        site.server.ws_url, f"live:{site.coming_live_id}", site.cookies["Karim"]
    )
    await chat.open()
    assert chat.welcome["role"] == "participant"
    assert chat.welcome["can_write"] is True
    await chat.close()

    signaling = await SignalingClient.open(
        site.server.ws_url, site.coming_live_id, site.cookies["Karim"]
    )
    assert signaling.welcome["role"] == "viewer"
    await signaling.close()


async def test_register_while_live_then_join(site: Site) -> None:
    """Guards against a latecomer who cannot register once the live is on air, or who
    registers but stays locked out of its chat or its media."""
    latecomer = sign_up_cookie(site.server, "Lea")
    with member_client(site, "Claire") as claire:
        live_id = schedule_live(claire, "Déjà commencé")
    host, publisher = await publish(site.server.ws_url, live_id, site.cookies["Claire"])

    # refused before registering
    chat = await ChatClient.connect(site.server.ws_url, f"live:{live_id}", latecomer)
    assert await chat.close_code() == 4403
    signaling = await SignalingClient.connect(site.server.ws_url, live_id, latecomer)
    assert await signaling.close_code() == 4403

    # one click on the live page, with its CSRF token
    async with httpx.AsyncClient(
        base_url=site.server.url, headers={"Cookie": latecomer}, timeout=EVENT_TIMEOUT_SECS
    ) as lea:
        page = await lea.get(f"/lives/{live_id}")
        assert "M'inscrire et rejoindre le live" in page.text
        response = await lea.post(
            f"/lives/{live_id}/register", data={"csrf_token": csrf_from(page.text)}
        )
    assert response.status_code == 303
    assert response.headers["location"] == f"/lives/{live_id}"

    # then in: the chat, and the live's media
    chat = await ChatClient.connect(site.server.ws_url, f"live:{live_id}", latecomer)
    await chat.open()
    assert chat.welcome["can_write"] is True
    watcher, viewer = await watch(site.server.ws_url, live_id, latecomer, publisher)
    assert watcher.welcome["role"] == "viewer"
    assert watcher.welcome["state"] == "live"
    assert viewer.frame_numbers

    await host.send({"type": "end"})
    await host.until("state", state="ended")
    for socket in (host, watcher):
        await socket.close()
    await chat.close()
    for peer in (publisher, viewer):
        await peer.close()


# replays: open to every logged-in member


@pytest.mark.parametrize("name", ["Inès", "Karim"])
async def test_member_opens_replay_page(site: Site, name: str) -> None:
    with member_client(site, name) as member:
        response = member.get(f"/lives/{site.replayed_live_id}/replay")
    assert response.status_code == 200
    assert "Corriger à plusieurs" in response.text


@pytest.mark.parametrize("name", ["Inès", "Karim"])
async def test_member_downloads_replay_video(site: Site, name: str) -> None:
    with member_client(site, name) as member:
        response = member.get(site.video_url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    # an MP4 starts with its ftyp box
    assert response.content[4:8] == b"ftyp"


@pytest.mark.parametrize("path", ["/api/lives/{live}/recording", "/api/lives/{live}/replay"])
async def test_unregistered_member_reads_replay_apis(site: Site, path: str) -> None:
    with member_client(site, "Inès") as ines:
        response = ines.get(path.format(live=site.replayed_live_id))
    assert response.status_code == 200
    assert response.json()["status"] == "ready"
