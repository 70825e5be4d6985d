"""Host moderation in a live, over real sockets of a server run in this process: mute,
slow mode, the moderation log, and removing a participant, whose chat socket, signaling
socket and media peer stop at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.chat_clients import ChatClient
from tests.support.clients import csrf_from
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    LiveSetting,
    SignalingClient,
    running_live,
    start_publishing,
    start_watching,
)

MUTED = "La modération vous a retiré la parole dans cette discussion."


@pytest.fixture
async def setting(data_dir: Path) -> AsyncIterator[LiveSetting]:
    async with running_live(data_dir) as live:
        yield live


async def chat(setting: LiveSetting, cookie: str) -> ChatClient:
    """Open the live's chat as the person of `cookie`, synced and ready."""
    client = await ChatClient.connect(setting.ws_url, f"live:{setting.live_id}", cookie)
    await client.open()
    return client


async def user_id(client: ChatClient) -> int:
    person_id: int = client.welcome["user"]["id"]
    return person_id


async def next_error(client: ChatClient) -> dict[str, Any]:
    """Return the next error frame, skipping the events received before it."""
    while True:
        frame = await client.recv()
        if frame["type"] == "error":
            return frame


async def next_event(client: ChatClient, kind: str) -> dict[str, Any]:
    while True:
        frame = await client.recv()
        if frame["type"] == "event" and frame["kind"] == kind:
            return frame


def http_client(setting: LiveSetting, cookie: str | None) -> httpx.AsyncClient:
    headers = {"Cookie": cookie} if cookie else {}
    return httpx.AsyncClient(base_url=setting.base_url, headers=headers, timeout=EVENT_TIMEOUT_SECS)


async def remove(setting: LiveSetting, cookie: str, target: int) -> httpx.Response:
    """Post the removal of `target` as the host's page does, with its CSRF header."""
    async with http_client(setting, cookie) as client:
        token = csrf_from((await client.get("/")).text)
        return await client.post(
            f"/api/lives/{setting.live_id}/removals",
            json={"user_id": target},
            headers={"X-CSRF-Token": token},
        )


async def moderation_log(setting: LiveSetting, cookie: str | None) -> httpx.Response:
    async with http_client(setting, cookie) as client:
        return await client.get(f"/api/chat/live:{setting.live_id}/moderation")


# mute


async def test_mute_blocks_send_and_tells_everyone(setting: LiveSetting) -> None:
    host = await chat(setting, setting.host_cookie)
    viewer = await chat(setting, setting.viewer_cookie)
    other = await chat(setting, setting.second_viewer_cookie)
    viewer_id = await user_id(viewer)
    assert viewer.welcome["muted"] is False

    await host.send({"type": "mute", "user_id": viewer_id})
    for client in (host, viewer, other):
        event = await next_event(client, "mute")
        assert event["user"] == {"id": viewer_id, "name": "Spectatrice"}
        assert event["by"]["name"] == "Hote"

    await viewer.send({"type": "send", "client_id": "m-1", "text": "Je peux parler ?"})
    error = await next_error(viewer)
    assert error["code"] == "muted"
    assert error["message"] == MUTED
    assert error["ref"] == "m-1"
    # the other participants still write
    assert await other.say("o-1", "Moi, oui.") > 0

    # a new connection reads it in its welcome
    again = await chat(setting, setting.viewer_cookie)
    assert again.welcome["muted"] is True
    await again.close()

    await host.send({"type": "unmute", "user_id": viewer_id})
    assert (await next_event(viewer, "unmute"))["user"]["id"] == viewer_id
    assert await viewer.say("m-2", "Merci !") > 0
    for client in (host, viewer, other):
        await client.close()


async def test_mute_rejected_cases(setting: LiveSetting) -> None:
    host = await chat(setting, setting.host_cookie)
    viewer = await chat(setting, setting.viewer_cookie)
    other = await chat(setting, setting.second_viewer_cookie)
    host_id, other_id = await user_id(host), await user_id(other)
    async with http_client(setting, setting.stranger_cookie) as stranger:
        assert (await stranger.get("/profile")).status_code == 200

    # a participant does not moderate
    await viewer.send({"type": "mute", "user_id": other_id, "client_id": "v-1"})
    assert (await next_error(viewer))["code"] == "forbidden"
    # the host cannot be muted
    await host.send({"type": "mute", "user_id": host_id})
    assert (await next_error(host))["code"] == "forbidden"
    # nor someone who does not take part, or no one at all
    for missing in (999_999, other_id + 1):
        await host.send({"type": "mute", "user_id": missing})
        assert (await next_error(host))["code"] == "not_participant"
    await host.send({"type": "mute", "user_id": "deux"})
    assert (await next_error(host))["code"] == "invalid_frame"

    # muting twice stores one event only: the next message takes the seq after it
    await host.send({"type": "mute", "user_id": other_id})
    await host.send({"type": "mute", "user_id": other_id})
    muted = (await host.until("event"))[-1]
    assert muted["kind"] == "mute"
    assert await host.say("h-after-mute", "Suite") == muted["seq"] + 1
    for client in (host, viewer, other):
        await client.close()


# slow mode


async def test_slow_mode_one_message_per_interval(setting: LiveSetting) -> None:
    host = await chat(setting, setting.host_cookie)
    viewer = await chat(setting, setting.viewer_cookie)

    await host.send({"type": "slow_mode", "interval_secs": 3600})
    for client in (host, viewer):
        event = await next_event(client, "slow_mode")
        assert event["interval_secs"] == 3600
        assert event["by"]["name"] == "Hote"

    assert await viewer.say("s-1", "Premier message") > 0
    await viewer.send({"type": "send", "client_id": "s-2", "text": "Second message"})
    error = await next_error(viewer)
    assert error["code"] == "slow_mode"
    assert error["interval_secs"] == 3600
    assert 3500 < error["retry_after_secs"] <= 3600
    assert error["message"].startswith("Le mode lent est activé : un message toutes les 3600")
    # a retry of the stored message is still acknowledged
    assert await viewer.say("s-1", "Premier message") > 0
    # the host moderates, so the slow mode does not apply
    assert await host.say("h-1", "Un") > 0
    assert await host.say("h-2", "Deux") > 0

    reconnected = await chat(setting, setting.viewer_cookie)
    assert reconnected.welcome["slow_mode_secs"] == 3600
    await reconnected.close()

    await host.send({"type": "slow_mode", "interval_secs": 0})
    assert (await next_event(viewer, "slow_mode"))["interval_secs"] == 0
    assert await viewer.say("s-3", "Le mode lent est fini") > 0

    for interval in (-1, 3601, True):
        await host.send({"type": "slow_mode", "interval_secs": interval})
        assert (await next_error(host))["code"] == "invalid_frame"
    await viewer.send({"type": "slow_mode", "interval_secs": 10})
    assert (await next_error(viewer))["code"] == "forbidden"
    await host.close()
    await viewer.close()


# moderation log


async def test_moderation_log_for_host_only(setting: LiveSetting) -> None:
    host = await chat(setting, setting.host_cookie)
    viewer = await chat(setting, setting.viewer_cookie)
    viewer_id = await user_id(viewer)

    seq = await viewer.say("l-1", "Un message à retirer")
    await host.send({"type": "delete", "seq": seq})
    await next_event(viewer, "deletion")
    own = await viewer.say("l-2", "Je retire le mien")
    await viewer.send({"type": "delete", "seq": own})
    await next_event(viewer, "deletion")
    await host.send({"type": "mute", "user_id": viewer_id})
    await next_event(viewer, "mute")
    await host.send({"type": "slow_mode", "interval_secs": 30})
    await next_event(viewer, "slow_mode")
    assert (await remove(setting, setting.host_cookie, viewer_id)).status_code == 204

    response = await moderation_log(setting, setting.host_cookie)
    assert response.status_code == 200
    actions = response.json()["actions"]
    # newest first; the author deleting their own message is not moderation
    assert [action["action"] for action in actions] == ["remove", "slow_mode", "mute", "delete"]
    assert actions[0]["user"] == {"id": viewer_id, "name": "Spectatrice"}
    assert actions[1]["interval_secs"] == 30
    assert actions[1]["user"] is None
    assert actions[3]["seq"] == seq
    assert all(action["by"]["name"] == "Hote" for action in actions)

    refused = await moderation_log(setting, setting.second_viewer_cookie)
    assert refused.status_code == 403
    assert "journal" in refused.json()["error"]["message"]
    assert (await moderation_log(setting, setting.stranger_cookie)).status_code == 403
    assert (await moderation_log(setting, None)).status_code == 401
    await host.close()


# removal


async def test_removal_stops_chat_signaling_and_peer(setting: LiveSetting) -> None:
    """Guards against a removed participant who keeps the video and the chat until
    they reload, or who comes back."""
    host_signaling, publisher = await start_publishing(setting)
    viewer_signaling, viewer_peer = await start_watching(setting, setting.viewer_cookie, publisher)
    await asyncio.wait_for(viewer_peer.first_frame.wait(), EVENT_TIMEOUT_SECS)
    await host_signaling.until("viewers", count=1)
    viewer_chat = await chat(setting, setting.viewer_cookie)
    other_chat = await chat(setting, setting.second_viewer_cookie)
    peer_closed = asyncio.Event()

    @viewer_peer.pc.on("connectionstatechange")
    def _peer_state_changed() -> None:
        if viewer_peer.pc.connectionState in ("closed", "failed"):
            peer_closed.set()

    response = await remove(setting, setting.host_cookie, await user_id(viewer_chat))
    assert response.status_code == 204

    assert await viewer_chat.close_code() == 4410
    assert await viewer_signaling.close_code() == 4410
    await host_signaling.until("viewers", count=0)
    await asyncio.wait_for(peer_closed.wait(), EVENT_TIMEOUT_SECS)

    # the others stay
    assert await other_chat.say("r-1", "Toujours là") > 0

    # no way back: not the chat, not the video, not a new registration
    refused_chat = await ChatClient.connect(
        setting.ws_url, f"live:{setting.live_id}", setting.viewer_cookie
    )
    assert await refused_chat.close_code() == 4403
    refused_signaling = await SignalingClient.connect(
        setting.ws_url, setting.live_id, setting.viewer_cookie
    )
    assert await refused_signaling.close_code() == 4403
    async with http_client(setting, setting.viewer_cookie) as viewer_http:
        page = await viewer_http.get(f"/lives/{setting.live_id}")
        assert "vous en a retiré" in page.text
        registered = await viewer_http.post(
            f"/lives/{setting.live_id}/register", data={"csrf_token": csrf_from(page.text)}
        )
    assert registered.status_code == 409
    assert "vous ne pouvez pas vous y réinscrire" in registered.text

    await other_chat.close()
    await host_signaling.close()
    await viewer_peer.close()
    await publisher.close()


async def test_removal_rejected_cases(setting: LiveSetting) -> None:
    host = await chat(setting, setting.host_cookie)
    viewer = await chat(setting, setting.viewer_cookie)
    host_id, viewer_id = await user_id(host), await user_id(viewer)
    async with http_client(setting, setting.stranger_cookie) as stranger:
        token = csrf_from((await stranger.get("/")).text)
        as_stranger = await stranger.post(
            f"/api/lives/{setting.live_id}/removals",
            json={"user_id": viewer_id},
            headers={"X-CSRF-Token": token},
        )
    assert as_stranger.status_code == 403

    itself = await remove(setting, setting.host_cookie, host_id)
    assert itself.status_code == 409
    assert itself.json()["error"]["message"].startswith("Vous animez ce live")
    not_registered = await remove(setting, setting.host_cookie, 999_999)
    assert not_registered.status_code == 404

    async with http_client(setting, setting.host_cookie) as client:
        token = csrf_from((await client.get("/")).text)
        for body in (b"{}", b'{"user_id": "7"}', b"not json", b'{"user_id": 0}'):
            response = await client.post(
                f"/api/lives/{setting.live_id}/removals",
                content=body,
                headers={"X-CSRF-Token": token},
            )
            assert response.status_code == 400, body
        no_token = await client.post(
            f"/api/lives/{setting.live_id}/removals", json={"user_id": viewer_id}
        )
        assert no_token.status_code == 403
    # nothing happened to the participant
    assert await viewer.say("x-1", "Je suis encore là") > 0
    await host.close()
    await viewer.close()


# sessions ended elsewhere, and the socket limit


async def test_logout_closes_open_sockets(setting: LiveSetting) -> None:
    viewer_chat = await chat(setting, setting.viewer_cookie)
    viewer_signaling = await SignalingClient.open(
        setting.ws_url, setting.live_id, setting.viewer_cookie
    )
    other = await chat(setting, setting.second_viewer_cookie)

    async with http_client(setting, setting.viewer_cookie) as browser:
        token = csrf_from((await browser.get("/")).text)
        assert (await browser.post("/logout", data={"csrf_token": token})).status_code == 303

    assert await viewer_chat.close_code() == 4401
    assert await viewer_signaling.close_code() == 4401
    assert await other.say("z-1", "Encore connectée") > 0
    await other.close()


async def test_chat_sockets_limited_per_person(setting: LiveSetting) -> None:
    service = setting.app.state.chat
    limit = service.connections.max_per_person
    sockets = [await chat(setting, setting.viewer_cookie) for _ in range(limit)]
    extra = await ChatClient.connect(
        setting.ws_url, f"live:{setting.live_id}", setting.viewer_cookie
    )
    assert await extra.close_code() == 4429
    # another person is not affected
    other = await chat(setting, setting.second_viewer_cookie)

    await sockets.pop().close()
    viewer_id = sockets[0].welcome["user"]["id"]
    channel = f"live:{setting.live_id}"
    # the server releases the closed socket once it reads the close frame
    while service.connections.count(channel, viewer_id) >= limit:
        await asyncio.sleep(0.01)
    replacement = await chat(setting, setting.viewer_cookie)
    assert replacement.welcome["type"] == "welcome"
    for client in [*sockets, replacement, other]:
        await client.close()
