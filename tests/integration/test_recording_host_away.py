"""The recording of a live whose host goes away keeps the time away when the host comes
back, whether they end at once or go on for a while. When the host never comes back and
the grace period ends the live, the recording ends at the host's last frame.

The replay plays the chat at offsets from the first recorded frame, so the video must
last as long as the live did on the wall clock, and the chat offsets must land where
the messages were written. The host and the viewer are real aiortc peers, and the
finished MP4 is fetched through the replay API and measured with PyAV.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import MediaPath
from live.models import Live
from tests.support.chat_clients import ChatClient
from tests.support.replay_checks import is_increasing, read_replay
from tests.support.signaling_peers import (
    EVENT_TIMEOUT_SECS,
    PICTURE_FRAME_RATE,
    LiveSetting,
    running_live,
    start_publishing,
    start_watching,
)
from tests.unit.test_recording_writer import stream_end_secs

pytestmark = pytest.mark.slow

# How long the host stays away. No event marks this time, so the test lets it pass on
# the clock. It is long next to the 1 s tolerance, so a lost absence shows.
AWAY_SECS = 4.0
# The grace period of the case where the host never comes back.
GRACE_SECS = 4.0
# The video must last as long as the live, within this, as must each chat offset.
TOLERANCE_SECS = 1.0
# Frames the viewer decodes from each publisher before the test moves on: 2 s.
STRETCH_FRAMES = 2 * PICTURE_FRAME_RATE
# Finishing a few seconds of video takes about a second here.
READY_TIMEOUT_SECS = 60.0


class Ending(enum.Enum):
    """What happens after the host went away."""

    # the host publishes again and ends the live at once, before new media arrives
    BACK_THEN_END = "back_then_end"
    # the host never comes back and the grace period ends the live
    GONE = "gone"
    # the host publishes again, goes on for a while, then ends the live
    BACK_FOR_A_WHILE = "back_for_a_while"


@dataclass(frozen=True)
class SentMessage:
    seq: int
    text: str
    # the monotonic clock when the server acknowledged it
    acknowledged: float


async def say(chat: ChatClient, client_id: str, text: str) -> SentMessage:
    seq = await chat.say(client_id, text)
    return SentMessage(seq, text, time.monotonic())


async def replay_when_ready(setting: LiveSetting) -> dict[str, Any]:
    """Poll the replay API until its recording is ready; fail if it fails."""
    deadline = time.monotonic() + READY_TIMEOUT_SECS
    async with httpx.AsyncClient(
        base_url=setting.base_url,
        headers={"Cookie": setting.viewer_cookie},
        timeout=EVENT_TIMEOUT_SECS,
    ) as api:
        while True:
            response = await api.get(f"/api/lives/{setting.live_id}/replay")
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                assert body["status"] != "failed", body
                if body["status"] == "ready":
                    return body
            assert time.monotonic() < deadline, f"replay not ready: {response.text}"
            await asyncio.sleep(0.2)


async def download(setting: LiveSetting, url: str, path: Path) -> None:
    async with httpx.AsyncClient(
        base_url=setting.base_url,
        headers={"Cookie": setting.viewer_cookie},
        timeout=EVENT_TIMEOUT_SECS,
    ) as api:
        response = await api.get(url)
    assert response.status_code == 200
    path.write_bytes(response.content)


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("ending", "media_path"),
    [
        (Ending.BACK_THEN_END, MediaPath.ENCODE_ONCE),
        (Ending.BACK_THEN_END, MediaPath.RELAY),
        (Ending.GONE, MediaPath.ENCODE_ONCE),
        (Ending.BACK_FOR_A_WHILE, MediaPath.ENCODE_ONCE),
    ],
    ids=lambda value: value.value,
)
async def test_recording_keeps_host_absence(
    data_dir: Path, tmp_path: Path, ending: Ending, media_path: MediaPath
) -> None:
    """Guards against a replay that drops the time the host was away (a video shorter
    than the live), which moves every later chat message to the wrong picture."""
    grace_secs = GRACE_SECS if ending is Ending.GONE else 60.0
    async with running_live(
        data_dir, media_path=media_path, host_reconnect_grace_secs=grace_secs
    ) as setting:
        host, publisher = await start_publishing(setting)
        client, viewer = await start_watching(setting, setting.viewer_cookie, publisher)
        chat = await ChatClient.connect(
            setting.ws_url, f"live:{setting.live_id}", setting.viewer_cookie
        )
        await chat.open()
        await viewer.wait_for_frame_number(STRETCH_FRAMES)
        sent = [await say(chat, "avant", "On vous voit bien")]

        # the host's page goes away with its socket and its peer
        await host.close()
        await publisher.close()
        away_at = time.monotonic()
        await client.until("host", status="away")
        sent.append(await say(chat, "pendant", "Plus d'image de notre côté"))

        if ending is Ending.GONE:
            await client.until("state", state="ended")
            back_at = None
        else:
            await asyncio.sleep(AWAY_SECS - (time.monotonic() - away_at))
            host, publisher = await start_publishing(setting)
            back_at = time.monotonic()
            if ending is Ending.BACK_FOR_A_WHILE:
                viewer.follow(publisher.video)
                await viewer.wait_for_frame_number(STRETCH_FRAMES)
            sent.append(await say(chat, "apres", "Ça revient"))
            await host.send({"type": "end"})
            await client.until("state", state="ended")
            await host.close()
        ended_at = time.monotonic()

        replay = await replay_when_ready(setting)
        video_path = tmp_path / "replay.mp4"
        await download(setting, replay["video_url"], video_path)
        async with setting.database.session() as session:
            live = await session.get(Live, setting.live_id)
        for socket in (client, chat):
            await socket.close()
        await publisher.close()
        await viewer.close()

    assert live is not None
    assert live.started_at is not None
    assert live.ended_at is not None
    live_secs = (live.ended_at - live.started_at).total_seconds()
    print(
        f"{ending.value} on {media_path.value}: live {live_secs:.2f} s, "
        f"away {(back_at or ended_at) - away_at:.2f} s, replay {replay['duration_seconds']:.2f} s"
    )

    # the video lasts as long as the live, and both streams reach its end: the time
    # away is a still picture and silence, not cut. A live that the grace period ended
    # stops at the host's last frame instead: the host left for good.
    video_secs = live_secs - (ended_at - away_at) if ending is Ending.GONE else live_secs
    assert abs(replay["duration_seconds"] - video_secs) < TOLERANCE_SECS
    timeline = read_replay(video_path)
    assert abs(timeline.duration_secs - video_secs) < TOLERANCE_SECS
    assert abs(stream_end_secs(video_path, "video") - video_secs) < TOLERANCE_SECS
    assert abs(stream_end_secs(video_path, "audio") - video_secs) < TOLERANCE_SECS
    assert is_increasing([frame.time_secs for frame in timeline.video])
    assert is_increasing(timeline.audio_times_secs)

    # the pictures of the first publisher stop where the host left, and those of the
    # second one start where the host came back
    parts = timeline.parts()
    recording_started = parse_utc(replay["started_at"])
    wall_offset = (recording_started - live.started_at).total_seconds()
    first_part_end = parts[0][-1].time_secs + wall_offset
    live_secs_at_away = live_secs - (ended_at - away_at)
    assert abs(first_part_end - live_secs_at_away) < TOLERANCE_SECS
    if ending is Ending.BACK_FOR_A_WHILE:
        assert back_at is not None
        assert len(parts) == 2
        second_part_start = parts[1][0].time_secs + wall_offset
        live_secs_at_back = live_secs - (ended_at - back_at)
        # the new peer's first picture arrives after its connection is set up
        assert second_part_start > live_secs_at_back - TOLERANCE_SECS
        assert second_part_start < live_secs_at_back + 2 * TOLERANCE_SECS

    # each message plays at the point of the video where it was written
    messages = replay["messages"]
    assert [(message["seq"], message["text"]) for message in messages] == [
        (message.seq, message.text) for message in sent
    ]
    for message, sent_message in zip(messages, sent, strict=True):
        expected = (parse_utc(message["sent_at"]) - recording_started).total_seconds()
        if ending is Ending.GONE and sent_message.acknowledged > away_at:
            # written after the host's last frame: played at the end of the video
            assert message["offset_seconds"] <= replay["duration_seconds"]
            assert message["offset_seconds"] > replay["duration_seconds"] - TOLERANCE_SECS
            continue
        assert abs(message["offset_seconds"] - expected) < 0.01
        assert message["offset_seconds"] <= replay["duration_seconds"]
        video_end_at = away_at if ending is Ending.GONE else ended_at
        secs_before_end = video_end_at - sent_message.acknowledged
        assert abs(replay["duration_seconds"] - message["offset_seconds"] - secs_before_end) < (
            TOLERANCE_SECS
        )
