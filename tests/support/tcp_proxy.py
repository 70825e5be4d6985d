"""A TCP proxy on 127.0.0.1 that a test puts between clients and a server process.

Cutting it closes every open connection and resets each new one at once, as a dropped
network would, and counts those attempts. Retargeting it moves new connections to
another server process, as a load balancer would after a crash.

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

    `accepted` counts the connections forwarded since the start, and `refused` those
    reset while cut, which lets a test wait for clients to reconnect by count rather
    than by time.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port: int | None = None
        self.accepted = 0
        self.refused = 0
        self.is_cut = False
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

    async def start(self) -> None:
        """Listen on a free port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("proxy :%s -> :%s listening", self.port, self.target_port)

    async def cut(self) -> int:
        """Close every open connection and reset new ones until `restore`; return how
        many connections were open."""
        self.is_cut = True
        pipes = list(self._pipes.items())
        for _, writers in pipes:
            for writer in writers:
                writer.transport.abort()
        # with both transports aborted, each handler's pumps read the end and return
        await asyncio.gather(*(task for task, _ in pipes))
        logger.info("proxy :%s cut: %d connections closed", self.port, len(pipes))
        return len(pipes)

    def restore(self) -> None:
        """Forward new connections again after `cut`."""
        self.is_cut = False
        logger.info("proxy :%s restored after %d refused connections", self.port, self.refused)

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
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is None or self.is_cut:
            self.refused += 1
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
        if self.is_cut:
            # cut while this connection was being opened
            self.refused += 1
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

    @property
    def refused(self) -> int:
        return self.proxy.refused

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.restore)

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
