"""docs/protocol.md names every frame type, error code and close code of the chat and
signaling sockets, so that a code added to the server cannot go undocumented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chat import errors as chat_errors
from signaling import protocol as signaling_protocol

PROJECT_DIR = Path(__file__).resolve().parents[2]
PROTOCOL_DOC = PROJECT_DIR / "docs" / "protocol.md"
# Close codes sent by the WebSocket layer rather than by the application: 1007 for
# invalid UTF-8 and 1009 above uvicorn's frame limit (websockets 17), 1012 on every open
# socket when uvicorn 0.55 stops.
WEBSOCKET_LAYER_CLOSE_CODES = [1007, 1009, 1012]
# `"type": "welcome"` and the like, in the frames the server builds.
SENT_FRAME_TYPE = re.compile(r'"type": "(\w+)"')
# `"send": self._on_send,` in the chat session's table of client frame handlers.
CHAT_HANDLED_TYPE = re.compile(r'"(\w+)": self\._on_\w+')


def doc_text() -> str:
    return PROTOCOL_DOC.read_text()


def sources(package: str) -> str:
    return "\n".join(path.read_text() for path in sorted((PROJECT_DIR / package).glob("*.py")))


def error_codes() -> list[str]:
    codes = {code.value for code in chat_errors.ErrorCode}
    codes |= {code.value for code in signaling_protocol.ErrorCode}
    return sorted(codes)


def close_codes() -> list[int]:
    codes = {int(code) for code in chat_errors.CloseCode}
    codes |= {int(code) for code in signaling_protocol.CloseCode}
    return sorted(codes | set(WEBSOCKET_LAYER_CLOSE_CODES))


def frame_types() -> list[str]:
    types = set(SENT_FRAME_TYPE.findall(sources("chat") + sources("signaling")))
    types |= set(CHAT_HANDLED_TYPE.findall((PROJECT_DIR / "chat" / "session.py").read_text()))
    types |= {frame_type.value for frame_type in signaling_protocol.FrameType}
    return sorted(types)


def test_frame_types_found_in_code() -> None:
    """Guards against patterns that match nothing, which would make the checks below empty."""
    found = frame_types()
    for expected in ("welcome", "error", "event", "state", "resume", "publish"):
        assert expected in found


@pytest.mark.parametrize("code", error_codes())
def test_protocol_doc_lists_error_code(code: str) -> None:
    assert f"| `{code}` |" in doc_text()


@pytest.mark.parametrize("code", close_codes())
def test_protocol_doc_lists_close_code(code: int) -> None:
    assert f"\n| {code} |" in doc_text()


@pytest.mark.parametrize("frame_type", frame_types())
def test_protocol_doc_names_frame_type(frame_type: str) -> None:
    assert f"`{frame_type}`" in doc_text()


# Error codes with which the server rejects a `publish` or `watch` offer: no answer
# follows, so the page must close the offer's peer connection or it waits forever.
OFFER_REJECTION_CODES = [
    signaling_protocol.ErrorCode.INVALID_SDP,
    signaling_protocol.ErrorCode.NOT_LIVE,
    signaling_protocol.ErrorCode.LIVE_ENDED,
    signaling_protocol.ErrorCode.ALREADY_PUBLISHING,
    signaling_protocol.ErrorCode.FORBIDDEN,
    signaling_protocol.ErrorCode.LIVE_FULL,
    signaling_protocol.ErrorCode.TRY_AGAIN,
]
# The list of those codes in the live page's signaling client.
PAGE_NEGOTIATION_ERRORS = re.compile(r"const negotiationErrors = \[([^\]]*)\]")


def page_negotiation_errors() -> set[str]:
    script = (PROJECT_DIR / "web" / "static" / "signaling.js").read_text()
    found = PAGE_NEGOTIATION_ERRORS.search(script)
    assert found is not None, "negotiationErrors not found in web/static/signaling.js"
    return set(re.findall(r'"(\w+)"', found.group(1)))


@pytest.mark.parametrize("code", [code.value for code in OFFER_REJECTION_CODES])
def test_page_lists_offer_rejection_code(code: str) -> None:
    assert code in page_negotiation_errors()


def test_page_lists_only_signaling_codes() -> None:
    known = {code.value for code in signaling_protocol.ErrorCode}
    assert page_negotiation_errors() <= known
