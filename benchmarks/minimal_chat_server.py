"""The simplest chat server that works, as a yardstick for the fan-out benchmark.

    .venv/bin/python benchmarks/minimal_chat_server.py --port 8001 --redis-url redis://...

Every text frame a client sends is published to one Redis channel. Each process keeps
one subscription to it and sends what arrives to every local socket, one after the
other. No storage, ordering, access check or slow-consumer protection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis.asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

CHANNEL = "bench"


def create_app(redis_url: str) -> Starlette:
    client = redis.asyncio.Redis.from_url(redis_url)
    sockets: set[WebSocket] = set()

    async def fan_out() -> None:
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(CHANNEL)
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                text = message["data"].decode()
                for websocket in list(sockets):
                    try:
                        await websocket.send_text(text)
                    except (WebSocketDisconnect, RuntimeError, OSError):
                        sockets.discard(websocket)

    async def chat(websocket: WebSocket) -> None:
        await websocket.accept()
        sockets.add(websocket)
        try:
            while True:
                await client.publish(CHANNEL, await websocket.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            sockets.discard(websocket)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(fan_out())
        yield
        task.cancel()
        await client.aclose()

    return Starlette(routes=[WebSocketRoute("/ws", chat)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--ws-per-message-deflate", choices=["on", "off"], default="on")
    arguments = parser.parse_args()
    uvicorn.run(
        create_app(arguments.redis_url),
        host="127.0.0.1",
        port=arguments.port,
        log_level="warning",
        ws_per_message_deflate=arguments.ws_per_message_deflate == "on",
    )


if __name__ == "__main__":
    main()
