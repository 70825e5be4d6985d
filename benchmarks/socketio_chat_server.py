"""A python-socketio chat room behind uvicorn, fanned out through AsyncRedisManager.

    .venv/bin/python benchmarks/socketio_chat_server.py --port 8002 --redis-url redis://...

Each connection joins one room; a `send` event is emitted to the whole room through
Redis, and each process delivers it to its local members. Used by chat_fanout.py as
the widely used library to compare with.
"""

from __future__ import annotations

import argparse
from typing import Any

import socketio
import uvicorn

ROOM = "live"


def create_app(redis_url: str) -> socketio.ASGIApp:
    server = socketio.AsyncServer(
        async_mode="asgi", client_manager=socketio.AsyncRedisManager(redis_url)
    )

    @server.event  # type: ignore[untyped-decorator]
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        await server.enter_room(sid, ROOM)

    @server.event  # type: ignore[untyped-decorator]
    async def send(sid: str, data: dict[str, Any]) -> None:
        await server.emit("message", data, room=ROOM)

    return socketio.ASGIApp(server)


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
