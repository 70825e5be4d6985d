"""Generated frames and offers against the signaling socket of a server on loopback:
every frame gets documented responses, the connection stays up but for the 4400 of
too many errors, and the server goes on serving."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import assume, event, example, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from signaling.protocol import CloseCode, ErrorCode
from signaling.sdp import InvalidOfferError, OfferPurpose, check_offer
from tests.support.fuzz import fuzz_examples, receive_object
from tests.support.signaling_inputs import (
    BROWSER_OFFER,
    frame_texts,
    loopback_only,
    mutated_offers,
)
from tests.support.signaling_peers import EVENT_TIMEOUT_SECS, LiveSetting, running_live

pytestmark = pytest.mark.fuzz

# Examples of the socket test: each is a round trip to the server, and an offer that
# passes check_offer makes the server gather ICE candidates for a new peer.
EXAMPLES = fuzz_examples(40)

DOCUMENTED_CODES = {code.value for code in ErrorCode}
# Frames the server sends without being asked, whenever it has news of the live.
NEWS_TYPES = {"viewers", "recording", "state"}


@pytest.fixture(scope="module")
def live_setting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSetting]:
    """A server on a free loopback port with a scheduled live, run by a portal's event
    loop so that the synchronous tests below can drive it."""
    with contextlib.ExitStack() as stack:
        portal = stack.enter_context(start_blocking_portal())
        data_dir = tmp_path_factory.mktemp("signaling-properties")
        yield stack.enter_context(portal.wrap_async_context_manager(running_live(data_dir)))


@dataclass
class SignalingSocket:
    """One person's signaling socket, opened again whenever the server closed it."""

    url: str
    cookie: str
    connection: ClientConnection | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def open(self) -> ClientConnection:
        if self.connection is None:
            self.connection = self._stack.enter_context(
                connect(self.url, additional_headers={"Cookie": self.cookie}, proxy=None)
            )
            while self.receive()["type"] != "welcome":
                pass
        return self.connection

    def close(self) -> None:
        self.connection = None
        self._stack.close()

    def receive(self) -> dict[str, Any]:
        assert self.connection is not None
        return receive_object(self.connection, EVENT_TIMEOUT_SECS)

    def exchange(self, raw: str) -> list[dict[str, Any]] | int:
        """Send `raw`, then a ping; return the frames that came before the pong, or
        the close code when the server closed the connection."""
        connection = self.open()
        responses = []
        try:
            connection.send(raw)
            connection.send(json.dumps({"type": "ping"}))
            while (frame := self.receive())["type"] != "pong":
                responses.append(frame)
        except ConnectionClosed as closed:
            self.close()
            return closed.rcvd.code if closed.rcvd is not None else -1
        except BaseException:
            self.close()
            raise
        return responses


@pytest.fixture(scope="module")
def sockets(live_setting: LiveSetting) -> Iterator[dict[str, SignalingSocket]]:
    url = f"{live_setting.ws_url}/ws/live/{live_setting.live_id}/signaling"
    opened = {
        "host": SignalingSocket(url, live_setting.host_cookie),
        "viewer": SignalingSocket(url, live_setting.viewer_cookie),
    }
    yield opened
    for socket in opened.values():
        socket.close()


def offer_frames() -> st.SearchStrategy[str]:
    return st.builds(
        lambda kind, sdp: json.dumps({"type": kind, "sdp": sdp}),
        st.sampled_from(["publish", "watch"]),
        mutated_offers(),
    )


def reaches_beyond_loopback(raw: str) -> bool:
    """Return whether the server would negotiate `raw`'s offer with a candidate off
    loopback, which would send ICE checks off this machine."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    sdp = value.get("sdp") if isinstance(value, dict) else None
    if not isinstance(sdp, str) or loopback_only(sdp):
        return False
    for purpose in OfferPurpose:
        try:
            check_offer(sdp, purpose)
        except InvalidOfferError:
            continue
        return True
    return False


@settings(max_examples=EXAMPLES, deadline=None)
@given(raw=st.one_of(frame_texts, offer_frames()), role=st.sampled_from(["host", "viewer"]))
@example(raw=json.dumps({"type": "publish", "sdp": BROWSER_OFFER}), role="viewer")
@example(raw=json.dumps({"type": "watch", "sdp": BROWSER_OFFER}), role="viewer")
@example(raw=json.dumps({"type": "publish", "sdp": BROWSER_OFFER}), role="host")
@example(raw=json.dumps({"type": "publish", "sdp": BROWSER_OFFER}), role="host")
@example(raw=json.dumps({"type": "end"}), role="viewer")
def test_signaling_socket_any_frame(
    sockets: dict[str, SignalingSocket], raw: str, role: str
) -> None:
    """Each frame gets an SDP answer, documented errors or news of the live. The only
    close a frame may cause is 4400, after too many invalid frames."""
    assume(not reaches_beyond_loopback(raw))
    # The host ending the live would end every later example's live too.
    assume(not (role == "host" and '"end"' in raw))

    result = sockets[role].exchange(raw)
    if isinstance(result, int):
        event(f"closed {result}")
        assert result == CloseCode.TOO_MANY_ERRORS
        return

    for response in result:
        event(f"{role} {response['type']} {response.get('code', '')}".strip())
        assert response["type"] in {"error", "answer", *NEWS_TYPES}, response
        if response["type"] == "error":
            assert response["code"] in DOCUMENTED_CODES, response
            assert response["message"], response
        if response["type"] == "answer":
            assert response["sdp"].startswith("v=0")


def test_signaling_socket_serves_after(sockets: dict[str, SignalingSocket]) -> None:
    """After the generated frames, a fresh connection of each person still gets its pong."""
    for socket in sockets.values():
        socket.close()
        result = socket.exchange(json.dumps({"type": "ping"}))
        assert isinstance(result, list), result
        assert all(frame["type"] in NEWS_TYPES for frame in result), result
