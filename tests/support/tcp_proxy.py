"""A TCP proxy on 127.0.0.1 that a test puts between clients and a server process.

Cutting it closes every open connection and rejects new ones, as a dropped network
would. Retargeting it moves new connections to another server process, as a load
balancer would after a crash.

`TcpProxy` runs in the test's event loop. `ThreadedTcpProxy` runs one in a thread of its
own, for tests that block, such as those driving Chromium through Playwright's
synchronous API.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Bytes read from one side before they are written to the other.
CHUNK_BYTES = 64 * 1024
# Calls into the proxy's own thread return in milliseconds; this bounds them.
THREAD_CALL_TIMEOUT_SECS = 10.0


class TcpProxy:
    """Forwards each connection to 127.0.0.1:`target_port`.

    `accepted` counts the connections taken since the start, which lets a test wait for
    clients to reconnect by count rather than by time.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port: int | None = None
        self.accepted = 0
        self.cut_count = 0
        self._server: asyncio.Server | None = None
        # maps each open client connection's handler task to its two writers
        self._pipes: dict[asyncio.Task[None], tuple[asyncio.StreamWriter, ...]] = {}
        self._accepted_changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def is_cut(self) -> bool:
        return self._server is None

    async def start(self) -> None:
        """Listen on a free port the first time, then on the same port again."""
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port or 0, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("proxy :%s -> :%s listening", self.port, self.target_port)

    async def cut(self) -> int:
        """Stop listening, so that new connections are refused, and close every open
        connection; return how many were open."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        pipes = list(self._pipes.items())
        for _, writers in pipes:
            for writer in writers:
                writer.transport.abort()
        # with both transports aborted, each handler's pumps read the end and return
        await asyncio.gather(*(task for task, _ in pipes))
        if server is not None:
            await server.wait_closed()
        self.cut_count += 1
        logger.info("proxy :%s cut: %d connections closed", self.port, len(pipes))
        return len(pipes)

    async def restore(self) -> None:
        """Listen again after `cut`, on the same port."""
        if self._server is not None:
            raise RuntimeError(f"proxy :{self.port} is already listening")
        await self.start()

    def retarget(self, target_port: int) -> None:
        """Send the connections opened from now on to `target_port`."""
        logger.info("proxy :%s now forwards to :%s", self.port, target_port)
        self.target_port = target_port

    async def wait_for_accepted(self, count: int, timeout: float) -> None:
        """Return once `count` connections in all were accepted since the start."""
        async with asyncio.timeout(timeout), self._accepted_changed:
            await self._accepted_changed.wait_for(lambda: self.accepted >= count)

    async def close(self) -> None:
        await self.cut()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or self._server is None:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError as error:
            # the server behind is down: the client sees its connection closed at once
            logger.info("proxy :%s: :%s unreachable: %s", self.port, self.target_port, error)
            writer.transport.abort()
            return
        if self._server is None:
            # cut while this connection was being opened
            writer.transport.abort()
            upstream_writer.transport.abort()
            return
        self._pipes[task] = (writer, upstream_writer)
        async with self._accepted_changed:
            self.accepted += 1
            self._accepted_changed.notify_all()
        try:
            await asyncio.gather(
                _pump(reader, upstream_writer),
                _pump(upstream_reader, writer),
            )
        finally:
            self._pipes.pop(task, None)
            writer.transport.abort()
            upstream_writer.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy `reader` to `writer` until either side closes."""
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        # one side closed: close the other too, as a real network would after a reset
        writer.transport.abort()


class ThreadedTcpProxy:
    """A `TcpProxy` in an event loop on its own thread, with blocking methods."""

    def __init__(self, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._thread.start()
        self.proxy = TcpProxy(target_port)
        self._call(self.proxy.start())

    @property
    def url(self) -> str:
        return self.proxy.url

    @property
    def accepted(self) -> int:
        return self.proxy.accepted

    def cut(self) -> int:
        return self._call(self.proxy.cut())

    def restore(self) -> None:
        self._call(self.proxy.restore())

    def retarget(self, target_port: int) -> None:
        self._loop.call_soon_threadsafe(self.proxy.retarget, target_port)

    def wait_for_accepted(self, count: int, timeout: float) -> None:
        self._call(self.proxy.wait_for_accepted(count, timeout), timeout + 1)

    def close(self) -> None:
        try:
            self._call(self.proxy.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(THREAD_CALL_TIMEOUT_SECS)
            self._loop.close()

    def _call(self, work: Coroutine[Any, Any, T], timeout: float = THREAD_CALL_TIMEOUT_SECS) -> T:
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout)
