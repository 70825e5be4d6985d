"""Property tests of the signaling socket's parsers: every client frame parses or gets
a documented error code, and every SDP offer, random or a mutated browser offer, is
answered or rejected with InvalidOfferError, never with another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiortc.sdp import SessionDescription
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from signaling.peers import PeerRole, ServerPeer
from signaling.protocol import (
    CLIENT_ID_PATTERN,
    FRAME_MAX_BYTES,
    OFFER_TYPES,
    ErrorCode,
    FrameType,
    ProtocolError,
    error_frame,
    parse_client_frame,
)
from signaling.sdp import SDP_PARSE_ERRORS, InvalidOfferError, OfferPurpose, check_offer
from tests.support.fuzz import fuzz_examples, json_values

pytestmark = pytest.mark.fuzz

# Examples of the pure parsers, and of the negotiation with a real aiortc peer, which
# gathers its candidates for each offer that passes check_offer.
EXAMPLES = fuzz_examples(200)
NEGOTIATION_EXAMPLES = fuzz_examples(60)

# The only address a negotiated offer may name: aiortc sends ICE checks to every
# remote candidate, and these tests must reach nothing beyond this machine.
LOOPBACK = "127.0.0.1"

# An offer shaped like Chromium's for a host publishing camera and microphone: one
# audio and one video section, ICE credentials, a DTLS fingerprint, one host candidate.
FINGERPRINT = ":".join(["AB"] * 32)
BROWSER_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        f"a=candidate:1 1 udp 2122260223 {LOOPBACK} 50000 typ host",
        "a=end-of-candidates",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        f"a=fingerprint:sha-256 {FINGERPRINT}",
        "a=setup:actpass",
        "a=mid:0",
        "a=sendrecv",
        "a=msid:stream audio-track",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=ssrc:1001 cname:camera",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        f"a=fingerprint:sha-256 {FINGERPRINT}",
        "a=setup:actpass",
        "a=mid:1",
        "a=sendrecv",
        "a=msid:stream video-track",
        "a=rtcp-mux",
        "a=rtcp-rsize",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
        "a=rtcp-fb:96 goog-remb",
        "a=rtpmap:97 rtx/90000",
        "a=fmtp:97 apt=96",
        "a=ssrc-group:FID 2001 2002",
        "a=ssrc:2001 cname:camera",
        "a=ssrc:2002 cname:camera",
        "",
    ]
)
OFFER_LINES = BROWSER_OFFER.split("\r\n")[:-1]

# Pieces that SDP lines are made of, to splice into a valid offer.
SDP_TOKENS = [
    "0",
    "9",
    "-1",
    "96",
    "4294967296",
    "99999999999999999999",
    "IN",
    "IP4",
    "IP6",
    "sendonly",
    "recvonly",
    "inactive",
    "actpass",
    "active",
    "bogus",
    "sha-256",
    "sha-1",
    "opus/48000/2",
    "VP8/90000",
    "rtx/90000",
    "apt=96",
    "apt=x",
    "typ",
    "host",
    "udp",
    "tcp",
    "m=audio",
    "m=video",
    "m=application",
    "a=mid:",
    "a=ssrc:",
    "a=fmtp:",
    "a=rtcp-fb:",
    "a=setup:",
    "a=fingerprint:",
    "a=candidate:",
    "a=extmap:",
    # attributes that need a value, without it
    "\r\na=fmtp\r\n",
    "\r\na=setup\r\n",
    "\r\na=sctp-port\r\n",
    ":",
    "=",
    " ",
    "/",
    "\r\n",
    "\n",
    "\x00",
    "é",
    "😀",
    "\ud800",
]


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    """Draw the browser offer with lines deleted, repeated, swapped or changed."""
    lines = list(OFFER_LINES)
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["delete", "repeat", "swap", "cut", "splice", "replace"]))
        line = lines[index]
        if action == "delete" and len(lines) > 1:
            del lines[index]
        elif action == "repeat":
            lines.insert(index, line)
        elif action == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], line
        elif action == "cut":
            lines[index] = line[: draw(st.integers(0, len(line)))]
        elif action == "splice":
            position = draw(st.integers(0, len(line)))
            token = draw(st.sampled_from(SDP_TOKENS))
            lines[index] = line[:position] + token + line[position:]
        else:
            head = line.split(":", 1)[0] if ":" in line else line.split("=", 1)[0]
            tail = draw(
                st.one_of(
                    st.sampled_from(SDP_TOKENS),
                    st.text(st.characters(codec="utf-8"), max_size=20),
                )
            )
            lines[index] = f"{head}:{tail}" if ":" in line else f"{head}={tail}"
    ending = draw(st.sampled_from(["\r\n", "\n"]))
    return ending.join(lines) + ending


random_sdp = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=300),
    st.lists(
        st.sampled_from(SDP_TOKENS + [line + "\r\n" for line in OFFER_LINES]), max_size=40
    ).map("".join),
)
any_sdp = st.one_of(mutated_offers(), random_sdp)


def test_browser_offer_passes_check() -> None:
    """The offer that the mutations start from is valid, so that they explore around it."""
    summary = check_offer(BROWSER_OFFER, OfferPurpose.PUBLISH)
    assert summary.audio_direction == "sendrecv"
    assert summary.video_direction == "sendrecv"
    assert summary.candidate_count == 1


@settings(max_examples=EXAMPLES)
@given(sdp=any_sdp, purpose=st.sampled_from(list(OfferPurpose)))
@example(sdp=BROWSER_OFFER.replace("a=setup:actpass", "a=setup:bogus"), purpose=OfferPurpose.WATCH)
@example(sdp=BROWSER_OFFER.replace("a=fmtp:97 apt=96", "a=fmtp:98 apt=96"), purpose="publish")
@example(sdp=BROWSER_OFFER.replace("m=video 9", "m=video x"), purpose=OfferPurpose.PUBLISH)
@example(sdp=BROWSER_OFFER.replace("sha-256 AB", "sha-256"), purpose=OfferPurpose.PUBLISH)
@example(sdp="v=0\r\nm=audio\r\n", purpose=OfferPurpose.PUBLISH)
# Attributes without their value, which made aiortc's parser raise AttributeError.
@example(sdp=BROWSER_OFFER.replace("a=fmtp:97 apt=96", "a=fmtp"), purpose=OfferPurpose.PUBLISH)
@example(sdp=BROWSER_OFFER.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap"), purpose="publish")
@example(sdp=BROWSER_OFFER.replace("a=mid:1\r\n", "a=mid:1\r\na=sctp-port\r\n"), purpose="watch")
def test_check_offer_any_sdp(sdp: str, purpose: OfferPurpose) -> None:
    """Every offer is summarized or rejected with a French InvalidOfferError."""
    try:
        summary = check_offer(sdp, OfferPurpose(purpose))
    except InvalidOfferError as error:
        assert error.message.startswith("L'offre SDP")
        return

    description = SessionDescription.parse(sdp)
    kinds = sorted(media.kind for media in description.media)
    assert kinds == ["audio", "video"]
    assert summary.candidate_count >= 1


def loopback_only(sdp: str) -> bool:
    """Return whether every candidate of `sdp` is on LOOPBACK, so that negotiating it
    sends nothing beyond this machine."""
    try:
        description = SessionDescription.parse(sdp)
    except SDP_PARSE_ERRORS:
        return False
    candidates = [candidate for media in description.media for candidate in media.ice_candidates]
    return all(candidate.ip == LOOPBACK for candidate in candidates)


@settings(max_examples=NEGOTIATION_EXAMPLES, deadline=None)
@given(sdp=mutated_offers(), purpose=st.sampled_from(list(OfferPurpose)))
@example(sdp=BROWSER_OFFER, purpose=OfferPurpose.PUBLISH)
# A bundled section without a mid, or a BUNDLE group naming a mid no section has,
# which made aiortc raise AttributeError from setRemoteDescription and close.
@example(sdp=BROWSER_OFFER.replace("a=mid:0\r\n", ""), purpose=OfferPurpose.PUBLISH)
@example(sdp=BROWSER_OFFER.replace("a=mid:0", "a=mid:9"), purpose=OfferPurpose.PUBLISH)
# A mid escaped as a lone surrogate, which aiortc copied into an answer that no text
# frame could carry.
@example(
    sdp=BROWSER_OFFER.replace("a=mid:1", "a=mid:\ud800").replace("BUNDLE 0 1", "BUNDLE 0"),
    purpose=OfferPurpose.PUBLISH,
)
@example(sdp=BROWSER_OFFER.replace("a=sendrecv", "a=recvonly"), purpose=OfferPurpose.WATCH)
@example(sdp=BROWSER_OFFER.replace("a=rtpmap:96 VP8/90000", "a=rtpmap:96 XYZ/1"), purpose="watch")
async def test_peer_answer_any_offer(sdp: str, purpose: OfferPurpose) -> None:
    """A real aiortc peer answers each mutated offer or raises InvalidOfferError: no
    exception of aiortc's escapes to the signaling handler."""
    if not loopback_only(sdp):
        # A mutation moved the candidate off loopback, or made the offer unreadable:
        # test_check_offer_any_sdp covers the check such offers reach first.
        event("not negotiated: candidate off loopback or unreadable")
        return

    role = PeerRole.HOST if purpose == OfferPurpose.PUBLISH else PeerRole.VIEWER
    peer = ServerPeer("fuzz", role, 1, (), on_lost=lambda _peer: None)
    try:
        answer = await peer.answer(sdp, OfferPurpose(purpose))
    except InvalidOfferError as error:
        event(f"rejected: {error.message}")
        assert error.message.startswith("L'offre SDP")
        return
    finally:
        await peer.close()

    event("answered")
    answer.encode()
    described = SessionDescription.parse(answer)
    assert [media.kind for media in described.media] == ["audio", "video"]


# signaling frames

frame_objects = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from([kind.value for kind in FrameType]), json_values),
        "client_id": st.one_of(st.from_regex(CLIENT_ID_PATTERN, fullmatch=True), json_values),
        "sdp": st.one_of(any_sdp, json_values),
    },
)


def raw_utf8_json(value: Any) -> str:
    """Serialize `value` with raw non-ASCII characters, and with escapes where UTF-8,
    which every WebSocket text frame is, cannot carry a character (lone surrogates)."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True)
    return text


frame_texts = st.one_of(
    frame_objects.map(lambda frame: json.dumps(frame, ensure_ascii=True)),
    frame_objects.map(raw_utf8_json),
    json_values.map(json.dumps),
    st.text(st.characters(codec="utf-8"), max_size=200),
)


@settings(max_examples=EXAMPLES)
@given(text=frame_texts)
@example(text='{"type": "publish", "sdp": "' + "x" * FRAME_MAX_BYTES + '"}')
@example(text='{"type": "watch", "sdp": " \\r\\n", "client_id": "\\ud800"}')
@example(text="[" * 5000 + "]" * 5000)
@example(text='{"type": "ping", "client_id": "' + "a" * 65 + '"}')
def test_parse_client_frame_any_text(text: str) -> None:
    """Every text frame parses to a ClientFrame or to a documented error whose frame
    is JSON, and `ref` repeats only a well-formed client_id."""
    try:
        frame = parse_client_frame(text)
    except ProtocolError as error:
        assert error.code in {
            ErrorCode.TOO_LARGE,
            ErrorCode.INVALID_JSON,
            ErrorCode.INVALID_FRAME,
            ErrorCode.UNKNOWN_TYPE,
        }
        if error.code is ErrorCode.TOO_LARGE:
            assert len(text.encode()) > FRAME_MAX_BYTES
        assert error.ref is None or CLIENT_ID_PATTERN.fullmatch(error.ref)
        sent = json.loads(json.dumps(error_frame(error)))
        assert sent["code"] == error.code.value
        assert sent["message"]
        return

    value: Any = json.loads(text)
    assert frame.type.value == value["type"]
    if frame.type in OFFER_TYPES:
        assert frame.sdp == value["sdp"]
        assert frame.sdp is not None
        assert frame.sdp.strip()
    else:
        assert frame.sdp is None
    client_id = value.get("client_id")
    assert frame.ref == (client_id if frame.ref is not None else None)
