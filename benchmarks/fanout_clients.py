"""Load clients of the chat fan-out benchmark, run in their own worker processes.

Each worker opens a share of the subscribers as raw asyncio connections: a minimal
WebSocket client (for our server, the minimal Starlette server and python-socketio)
or a Redis pub/sub subscriber (for the bare-Redis floor). Raw protocols cost the
client a few microseconds per frame, so that the clients leave the CPU to the servers.

Every message carries the marker `bench <step>:<send time in ns>` in its text, the
sender's CLOCK_MONOTONIC, which every process of the machine shares. A receiving
worker subtracts it from the time the bytes reached it and keeps the latencies of the
current step. The benchmark's process drives each worker over a multiprocessing Pipe:
`connect`, then `step` / `count` / `collect` for each rate, then `stop`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import resource
import struct
import time
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, cast

import uvloop

# The marker that starts a benchmark message's text, followed by `<step>:<ns>`.
MARKER = b"bench "
# French filler after the marker, so that a message is as long as a typical chat line.
FILLER = "Bonsoir à toutes et à tous, merci pour cette présentation très claire !"
# Handshakes in flight at once per worker: the servers accept a few hundred per second.
CONNECT_CONCURRENCY = 50
CONNECT_TIMEOUT_SECS = 60.0
# The Redis channel of the bare pub/sub floor.
REDIS_CHANNEL = b"bench"


@dataclass(frozen=True)
class Endpoint:
    """One subscriber connection: `kind` is ours, minimal, socketio or redis."""

    kind: str
    port: int
    path: str = "/"
    cookie: str | None = None


@dataclass(frozen=True)
class WorkerSpec:
    worker_id: int
    endpoints: list[Endpoint]
    # Where a redis worker publishes from (the floor has no server to send through).
    redis_port: int | None = None


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR `payload` with the 4-byte masking `key`, as RFC 6455 requires of clients."""
    size = len(payload)
    repeated = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """Return a complete masked client frame."""
    key = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + key + mask_payload(payload, key)


class Recorder:
    """The latencies of the current step, shared by every connection of a worker."""

    def __init__(self) -> None:
        self.step = -1
        self.latencies_ns: array[int] = array("q")
        self.closed: list[int | None] = []

    def record(self, payload: bytes, now_ns: int) -> None:
        start = payload.find(MARKER)
        if start < 0:
            return
        start += len(MARKER)
        colon = payload.find(b":", start)
        end = payload.find(b" ", colon)
        if colon < 0 or end < 0:
            return
        if int(payload[start:colon]) == self.step:
            self.latencies_ns.append(now_ns - int(payload[colon + 1 : end]))


class WebSocketClient(asyncio.Protocol):
    """A WebSocket client connection that offers permessage-deflate like a browser."""

    def __init__(self, endpoint: Endpoint, recorder: Recorder) -> None:
        self.endpoint = endpoint
        self.recorder = recorder
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake_done = False
        self.inflater: Any = None
        self.ready = asyncio.get_running_loop().create_future()
        self.welcome_seq = 0
        self.sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {self.endpoint.path} HTTP/1.1",
            f"Host: 127.0.0.1:{self.endpoint.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        ]
        if self.endpoint.cookie:
            lines.append(f"Cookie: {self.endpoint.cookie}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))

    def send_text(self, text: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(0x1, text.encode()))

    def data_received(self, data: bytes) -> None:
        now_ns = time.monotonic_ns()
        if not self.handshake_done:
            self.buffer += data
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._handshake(bytes(self.buffer[:end]).decode("latin-1"))
            data = bytes(self.buffer[end + 4 :])
            self.buffer.clear()
        if self.buffer:
            # The end of a frame that began in an earlier read.
            self.buffer += data
            data = bytes(self.buffer)
            self.buffer.clear()
        offset = 0
        size = len(data)
        while size - offset >= 2:
            first, second = data[offset], data[offset + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - offset < 4:
                    break
                length = int.from_bytes(data[offset + 2 : offset + 4], "big")
                header = 4
            elif length == 127:
                if size - offset < 10:
                    break
                length = int.from_bytes(data[offset + 2 : offset + 10], "big")
                header = 10
            if size - offset < header + length:
                break
            self._frame(first, data[offset + header : offset + header + length], now_ns)
            offset += header + length
        if offset < size:
            self.buffer += data[offset:]

    def _handshake(self, head: str) -> None:
        status = head.split("\r\n", 1)[0]
        if " 101 " not in status + " ":
            self.ready.set_exception(ConnectionError(f"handshake rejected: {status}"))
            return
        self.handshake_done = True
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value:
                bits = 15
                for parameter in value.split(";"):
                    key, _, number = parameter.strip().partition("=")
                    if key == "server_max_window_bits" and number:
                        bits = int(number.strip('"'))
                self.inflater = zlib.decompressobj(-bits)
        if self.endpoint.kind == "minimal":
            self.ready.set_result(None)

    def _frame(self, first: int, payload: bytes, now_ns: int) -> None:
        opcode = first & 0x0F
        if opcode == 0x9:
            if self.transport is not None:
                self.transport.write(client_frame(0xA, payload))
            return
        if opcode == 0x8:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self.recorder.closed.append(code)
            if self.transport is not None:
                self.transport.close()
            return
        if opcode != 0x1:
            return
        if first & 0x40 and self.inflater is not None:
            payload = self.inflater.decompress(payload + b"\x00\x00\xff\xff")
        if MARKER in payload:
            self.recorder.record(payload, now_ns)
        elif not self.ready.done():
            self._setup_frame(payload)
        elif self.endpoint.kind == "socketio" and payload == b"2":
            # engine.io's ping from the server, which the client returns as a pong
            self.send_text("3")

    def _setup_frame(self, payload: bytes) -> None:
        """Walk through the protocol's opening frames until the connection is subscribed."""
        kind = self.endpoint.kind
        if kind == "ours":
            frame = json.loads(payload)
            if frame.get("type") == "welcome":
                self.send_text(json.dumps({"type": "resume", "after": frame["last_seq"]}))
            elif frame.get("type") == "synced":
                self.ready.set_result(None)
        elif kind == "socketio":
            if payload.startswith(b"0{"):
                self.send_text("40")
            elif payload.startswith(b"40"):
                self.ready.set_result(None)


class RedisSubscriber(asyncio.Protocol):
    """A Redis pub/sub subscriber that parses RESP replies by hand."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(resp_command(b"SUBSCRIBE", REDIS_CHANNEL))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        now_ns = time.monotonic_ns()
        buffer = self.buffer
        buffer += data
        offset = 0
        while True:
            parsed = _parse_push(buffer, offset)
            if parsed is None:
                break
            items, offset = parsed
            if items and items[0] == b"message":
                self.recorder.record(items[-1], now_ns)
            elif items and items[0] == b"subscribe" and not self.ready.done():
                self.ready.set_result(None)
        if offset:
            del buffer[:offset]


def resp_command(*parts: bytes) -> bytes:
    encoded = [b"*%d\r\n" % len(parts)]
    for part in parts:
        encoded.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(encoded)


def _parse_push(buffer: bytearray, offset: int) -> tuple[list[bytes], int] | None:
    """Parse one RESP array of bulk strings and integers at `offset`; None if incomplete."""
    end = buffer.find(b"\r\n", offset)
    if end < 0:
        return None
    if buffer[offset] != ord("*"):
        # A reply outside an array (none is expected on a subscribed connection).
        return [], end + 2
    count = int(buffer[offset + 1 : end])
    position = end + 2
    items: list[bytes] = []
    for _ in range(count):
        end = buffer.find(b"\r\n", position)
        if end < 0:
            return None
        if buffer[position] == ord(":"):
            items.append(bytes(buffer[position + 1 : end]))
            position = end + 2
            continue
        length = int(buffer[position + 1 : end])
        start = end + 2
        if len(buffer) < start + length + 2:
            return None
        items.append(bytes(buffer[start : start + length]))
        position = start + length + 2
    return items, position


class RedisPublisher(asyncio.Protocol):
    """Publishes the floor's messages; its integer replies are read and dropped."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        pass

    def publish(self, payload: bytes) -> None:
        if self.transport is not None:
            self.transport.write(resp_command(b"PUBLISH", REDIS_CHANNEL, payload))


class Worker:
    """The connections of one worker process and the sending of its share of messages."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.recorder = Recorder()
        self.clients: list[WebSocketClient] = []
        self.publisher: RedisPublisher | None = None
        self.sent = 0
        self.sender_index = 0

    async def connect(self) -> int:
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def open_one(endpoint: Endpoint) -> None:
            async with limit:
                if endpoint.kind == "redis":
                    _, subscriber = await loop.create_connection(
                        lambda: RedisSubscriber(self.recorder), "127.0.0.1", endpoint.port
                    )
                    await asyncio.wait_for(subscriber.ready, CONNECT_TIMEOUT_SECS)
                    return
                _, client = await loop.create_connection(
                    lambda: WebSocketClient(endpoint, self.recorder), "127.0.0.1", endpoint.port
                )
                self.clients.append(client)
                await asyncio.wait_for(client.ready, CONNECT_TIMEOUT_SECS)

        await asyncio.gather(*(open_one(endpoint) for endpoint in self.spec.endpoints))
        if self.spec.redis_port is not None:
            _, self.publisher = await loop.create_connection(
                RedisPublisher, "127.0.0.1", self.spec.redis_port
            )
        # Senders are taken in turn from a shuffled list, so that consecutive messages
        # come from both server processes and from many people.
        random.Random(self.spec.worker_id).shuffle(self.clients)
        return len(self.spec.endpoints)

    def send_one(self, step: int) -> None:
        text = f"{MARKER.decode()}{step}:{time.monotonic_ns()} {FILLER}"
        self.sent += 1
        if self.publisher is not None:
            self.publisher.publish(json.dumps({"text": text}, ensure_ascii=False).encode())
            return
        client = self.clients[self.sender_index % len(self.clients)]
        self.sender_index += 1
        kind = client.endpoint.kind
        if kind == "socketio":
            client.send_text("42" + json.dumps(["send", {"text": text}], ensure_ascii=False))
        else:
            client_id = f"w{self.spec.worker_id}-{self.sent}"
            frame = {"type": "send", "client_id": client_id, "text": text}
            client.send_text(json.dumps(frame, ensure_ascii=False))

    async def run_step(self, step: int, rate: float, start_at: float, seconds: float) -> None:
        """Send `rate` messages a second from `start_at` (monotonic) for `seconds`."""
        self.recorder.step = step
        self.recorder.latencies_ns = array("q")
        self.sent = 0
        count = round(rate * seconds)
        for index in range(count):
            due = start_at + index / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.send_one(step)


def cpu_secs() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def serve_commands(pipe: Connection, spec: WorkerSpec) -> None:
    """Carry out the benchmark process's commands until `stop`."""
    loop = asyncio.get_running_loop()
    worker = Worker(spec)
    sending: asyncio.Task[None] | None = None
    handlers: dict[str, Callable[..., Any]] = {}

    async def on_connect() -> Any:
        return await worker.connect()

    async def on_step(step: int, rate: float, start_at: float, seconds: float) -> Any:
        nonlocal sending
        sending = asyncio.create_task(worker.run_step(step, rate, start_at, seconds))
        return "started"

    async def on_count() -> Any:
        done = sending is None or sending.done()
        return {"received": len(worker.recorder.latencies_ns), "sent": worker.sent, "done": done}

    async def on_collect() -> Any:
        if sending is not None:
            await sending
        return {
            "latencies_ns": worker.recorder.latencies_ns.tobytes(),
            "sent": worker.sent,
            "closed": list(worker.recorder.closed),
            "cpu_secs": cpu_secs(),
        }

    handlers.update(connect=on_connect, step=on_step, count=on_count, collect=on_collect)
    while True:
        # Read in a thread: a reader callback on the pipe would make it non-blocking,
        # and a large `collect` reply would then fail to send.
        name, *arguments = await loop.run_in_executor(None, pipe.recv)
        if name == "stop":
            break
        try:
            result = await handlers[name](*arguments)
        except Exception as error:  # noqa: BLE001 - reported to the benchmark process
            pipe.send(("error", f"{type(error).__name__}: {error}"))
            continue
        pipe.send(("ok", result))
    for client in worker.clients:
        if client.transport is not None:
            with contextlib.suppress(Exception):
                client.transport.close()


def worker_main(pipe: Connection, spec: WorkerSpec) -> None:
    """The entry point of a worker process."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvloop.run(serve_commands(pipe, spec))
