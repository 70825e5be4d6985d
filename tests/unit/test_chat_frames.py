"""Property tests of the chat socket's frame parsing and message text rules: any input
gets a documented error or is accepted, and what is accepted can be sent and stored."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chat.errors import FRAME_MAX_BYTES, ChatError, ErrorCode
from chat.log import dump_frame
from chat.session import integer_field, parse_frame
from chat.text import TEXT_MAX_CHARS, InvalidTextError, clean_text, is_noncharacter
from core.web import ID_MAX
from tests.support.fuzz import fuzz_examples, json_values

pytestmark = pytest.mark.fuzz

# Examples per test, twice Hypothesis's default: these tests touch no database.
EXAMPLES = fuzz_examples(200)

# Objects shaped like the protocol's frames, with fields of the right and wrong types.
frame_objects = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from(["send", "delete", "resume", "ping"]), json_values),
        "client_id": st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), json_values),
        "text": json_values,
        "seq": json_values,
        "after": json_values,
    },
)


def frame_text(value: Any) -> str:
    """Serialize `value` as a client would, with escapes for what UTF-8 cannot carry."""
    return json.dumps(value, ensure_ascii=True)


@settings(max_examples=EXAMPLES)
@given(
    st.one_of(
        frame_objects.map(frame_text),
        json_values.map(frame_text),
        st.text(st.characters(codec="utf-8"), max_size=200),
    )
)
@example('{"type": "chanter", "client_id": "\\ud800"}')
@example("[" * 5000 + "]" * 5000)
@example('{"type": "ping", "padding": "' + "é" * 8200 + '"}')
def test_parse_frame_any_text(text: str) -> None:
    """Every text frame parses to an object or to a documented error, and the error
    frame sent back is valid UTF-8 JSON that repeats the frame's `client_id`."""
    try:
        frame, ref = parse_frame(text)
    except ChatError as error:
        assert error.code in {ErrorCode.TOO_LARGE, ErrorCode.INVALID_JSON}
        if error.code is ErrorCode.TOO_LARGE:
            assert len(text.encode()) > FRAME_MAX_BYTES
        return

    assert isinstance(frame, dict)
    client_id = frame.get("client_id")
    if isinstance(client_id, str) and len(client_id) <= 64:
        assert ref == client_id
    else:
        assert ref is None

    sent = dump_frame(ChatError(ErrorCode.INVALID_FRAME, ref=ref).to_frame()).encode()
    answer = json.loads(sent.decode())
    assert answer["code"] == "invalid_frame"
    assert answer.get("ref") == ref


@pytest.mark.parametrize("value", [ID_MAX + 1, 2**63, 10**30])
def test_integer_field_above_maximum_invalid(value: int) -> None:
    """Guards against a user id past the database's integer range that reached a query
    and closed the host's socket with 1011."""
    with pytest.raises(ChatError) as caught:
        integer_field({"user_id": value}, "user_id", minimum=1, maximum=ID_MAX)

    assert caught.value.code is ErrorCode.INVALID_FRAME


@settings(max_examples=EXAMPLES)
@given(value=json_values, minimum=st.sampled_from([0, 1]))
@example(value=True, minimum=0)
@example(value=2**63, minimum=1)
@example(value=float("nan"), minimum=0)
def test_integer_field_any_value(value: Any, minimum: int) -> None:
    """`seq` and `after` are integers from `minimum`, and anything else is invalid_frame."""
    try:
        result = integer_field({"seq": value}, "seq", minimum=minimum)
    except ChatError as error:
        assert error.code is ErrorCode.INVALID_FRAME
        assert type(value) is not int or value < minimum
        return

    if value is None:
        assert result is None
    else:
        assert type(result) is int
        assert result == value
        assert result >= minimum


# Text of every kind: any code point (surrogates, controls, noncharacters, unassigned),
# long runs of emoji and of combining marks that NFC composes or expands.
message_texts = st.one_of(
    st.text(st.characters(codec=None), max_size=1100),
    st.lists(
        st.sampled_from(["😀", "e\u0301", "\u0958", " ", "\r\n", "\r", "\t"]), max_size=1100
    ).map("".join),
    st.text(st.characters(codec=None), max_size=20).map(lambda text: text * 60),
)


@settings(max_examples=EXAMPLES)
@given(message_texts)
@example("😀" * TEXT_MAX_CHARS)
@example("😀" * (TEXT_MAX_CHARS + 1))
@example("e\u0301" * TEXT_MAX_CHARS)
@example("\u0958" * (TEXT_MAX_CHARS // 2 + 1))
@example("  \u202eabc\u202c  ")
@example("a\ud800b")
def test_clean_text_any_text(raw: str) -> None:
    """Every text is rejected, or cleaned into a text that the rules accept unchanged:
    NFC, LF line breaks, trimmed, at most 1000 code points, no forbidden character."""
    try:
        text = clean_text(raw)
    except InvalidTextError as error:
        if error.too_long:
            # text_too_long counts the text as it would be stored.
            normalized = unicodedata.normalize("NFC", raw).replace("\r\n", "\n")
            assert len(normalized.replace("\r", "\n").strip()) > TEXT_MAX_CHARS
        return

    assert text
    assert len(text) <= TEXT_MAX_CHARS
    assert text == unicodedata.normalize("NFC", text)
    assert text == text.strip()
    assert "\r" not in text
    text.encode()
    for char in text:
        assert unicodedata.category(char) != "Cc" or char in "\n\t", hex(ord(char))
        assert not is_noncharacter(char), hex(ord(char))
    assert clean_text(text) == text
