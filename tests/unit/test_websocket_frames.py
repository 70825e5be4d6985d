"""Frames encoded once per process parse back, through the websockets library's own
reader, as the text frames they carry. A batch joins them in seq order."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from chat.hub import EventBatch
from core.websocket import encode_text_frame


def parse_frames(data: bytes) -> list[Frame]:
    """Parse unmasked server frames with websockets' parser, as a client would."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as done:
            next(parser)
        frames.append(done.value.value)
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 70_000])
def test_text_frame_parses_back(size: int) -> None:
    """Each of the three length encodings of RFC 6455 at its edges."""
    payload = b"a" * size
    [frame] = parse_frames(encode_text_frame(payload))
    assert frame.opcode is Opcode.TEXT
    assert frame.fin
    assert not frame.rsv1
    assert frame.data == payload


def test_batch_frames_after_each_seq() -> None:
    batch = EventBatch([(7, '{"seq":7}'), (8, '{"seq":8,"text":"ça va"}'), (9, '{"seq":9}')])
    everything = batch.frames_after(6)
    assert everything is not None
    assert [bytes(frame.data).decode() for frame in parse_frames(everything)] == [
        '{"seq":7}',
        '{"seq":8,"text":"ça va"}',
        '{"seq":9}',
    ]
    tail = batch.frames_after(7)
    assert tail is not None
    assert [bytes(frame.data).decode() for frame in parse_frames(tail)] == [
        '{"seq":8,"text":"ça va"}',
        '{"seq":9}',
    ]
    assert batch.frames_after(9) == b""
    assert batch.frames_after(12) == b""


def test_batch_reports_gap() -> None:
    """A subscriber that has not reached the batch's first seq minus one gets None."""
    batch = EventBatch([(7, '{"seq":7}')])
    assert batch.frames_after(5) is None
