"""What the sockets of a live see when its server process stops (SIGTERM): the close
code, the frames before it, and the live's state once the process is back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.chat_clients import ChatClient
from tests.support.clients import Account, cookie_header, schedule_live, sign_up
from tests.support.processes import ServerProcess, free_port
from tests.support.signaling_peers import EVENT_TIMEOUT_SECS, Publisher, SignalingClient

PASSWORD = "cahier de textes"
# The close code uvicorn 0.55 sends on every open WebSocket when the server stops
# ("service restart").
SERVICE_RESTART = 1012

pytestmark = pytest.mark.slow


async def frames_until_closed(
    receive: Callable[[], Awaitable[str | bytes]], timeout: float = EVENT_TIMEOUT_SECS
) -> tuple[list[str], int | None]:
    """Read text frames with `receive` until the connection closes; return the types of
    the frames read and the close code the server sent."""
    types: list[str] = []
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(receive(), timeout))
            types.append(frame["type"])
    except ConnectionClosed as closed:
        return types, closed.rcvd.code if closed.rcvd is not None else None


async def test_server_stop_closes_sockets_1012(data_dir: Path) -> None:
    """Guards against a protocol page that promises a close code the server never sends,
    and against a live left on air by a server that stopped."""
    port = free_port()
    server = ServerProcess(data_dir, port=port)
    restarted: ServerProcess | None = None
    try:
        host_http = sign_up(server.url, Account("claire@example.org", PASSWORD, "Claire"))
        live_id = schedule_live(host_http, "Les cartes mentales en classe")
        cookie = cookie_header(host_http)
        host_http.close()

        chat = await ChatClient.connect(server.ws_url, f"live:{live_id}", cookie)
        await chat.open()
        signaling = await SignalingClient.open(server.ws_url, live_id, cookie)
        publisher = Publisher()
        await publisher.accept(await signaling.request_answer("publish", await publisher.offer()))
        await signaling.until("recording", status="recording")

        # the process stops while both sockets are open
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        chat_frames, chat_code = await frames_until_closed(chat.connection.recv)
        signaling_frames, signaling_code = await frames_until_closed(signaling.connection.recv)
        await stopping
        await publisher.close()

        assert chat_code == SERVICE_RESTART
        assert signaling_code == SERVICE_RESTART
        assert chat_frames == []
        # the sockets are closed before the live moves to interrupted
        assert "state" not in signaling_frames

        restarted = ServerProcess(data_dir, port=port)
        again = await SignalingClient.open(restarted.ws_url, live_id, cookie)
        assert again.welcome["state"] == "interrupted"
        await again.close()
    finally:
        server.stop()
        if restarted is not None:
            restarted.stop()
