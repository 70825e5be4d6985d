"""The request head limit of the HTTP protocol that server.py runs uvicorn with."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

import server
from core.http_protocol import HEAD_TOO_LARGE_TEXT, REQUEST_HEAD_MAX_BYTES
from core.settings import Settings
from tests.support.processes import STARTUP_TIMEOUT_SECS, free_port

READ_TIMEOUT_SECS = 10.0


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    """Serve the application with the service's uvicorn settings on a loopback port."""
    app = server.create_app(Settings(data_dir=tmp_path, secret_key="h" * 40))
    chosen = free_port()
    uvicorn_server = uvicorn.Server(server.uvicorn_config(app, "127.0.0.1", chosen, "warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECS
    while not uvicorn_server.started:
        assert thread.is_alive(), "uvicorn stopped during start-up"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield chosen
    finally:
        uvicorn_server.should_exit = True
        thread.join(STARTUP_TIMEOUT_SECS)


def read_response(client: socket.socket, buffered: bytes) -> tuple[bytes, bytes]:
    """Read one response after `buffered`; return it and the bytes read past it. An
    empty response means the server closed the connection first."""
    while b"\r\n\r\n" not in buffered:
        chunk = client.recv(65536)
        if not chunk:
            return b"", buffered
        buffered += chunk
    head, _, rest = buffered.partition(b"\r\n\r\n")
    length_line = re.search(rb"(?im)^content-length: *(\d+)", head)
    length = int(length_line.group(1)) if length_line else 0
    while len(rest) < length:
        chunk = client.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def exchange(port: int, *requests: bytes) -> list[bytes]:
    """Send `requests` on one connection, each after the previous response, and return
    the responses, up to the first one the server did not send."""
    responses = []
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_SECS) as client:
        buffered = b""
        for request in requests:
            client.sendall(request)
            response, buffered = read_response(client, buffered)
            if not response:
                break
            responses.append(response)
    return responses


def get(header_bytes: int, connection: str = "keep-alive") -> bytes:
    padding = "a" * header_bytes
    return (
        f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {connection}\r\n"
        f"X-Padding: {padding}\r\n\r\n"
    ).encode()


def test_head_above_limit_gets_431_in_french(port: int) -> None:
    [answer] = exchange(port, get(REQUEST_HEAD_MAX_BYTES + 1))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    assert HEAD_TOO_LARGE_TEXT.encode() in answer


def test_megabyte_of_headers_refused(port: int) -> None:
    """Guards against a head read into memory however long it grows."""
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_SECS) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = b""
        try:
            for _ in range(1024):
                client.sendall(b"X-Padding: " + b"b" * 1000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(ConnectionResetError):
            while chunk := client.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]


def test_head_below_limit_and_next_request_served(port: int) -> None:
    """A head near the limit passes, and the count starts again for the next request
    on the same connection."""
    near_limit = REQUEST_HEAD_MAX_BYTES - 200
    answers = exchange(port, get(near_limit), get(near_limit, connection="close"))
    assert [answer[:13] for answer in answers] == [b"HTTP/1.1 200 "] * 2


def test_body_in_head_chunk_accepted(port: int) -> None:
    body = b"email=" + b"c" * 40_000
    request = (
        b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    [answer] = exchange(port, request)
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    assert not answer.startswith(b"HTTP/1.1 431 "), answer[:80]


def test_long_request_line_gets_431(port: int) -> None:
    path = "/health?" + "q" * REQUEST_HEAD_MAX_BYTES
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    [answer] = exchange(port, request)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
