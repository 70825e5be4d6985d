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
    ProtocolError,
    error_frame,
    parse_client_frame,
)
from signaling.sdp import InvalidOfferError, OfferPurpose, check_offer
from tests.support.fuzz import fuzz_examples
from tests.support.signaling_inputs import (
    BROWSER_OFFER,
    any_sdp,
    frame_texts,
    loopback_only,
    mutated_offers,
)

pytestmark = pytest.mark.fuzz

# Examples of the pure parsers, and of the negotiation with a real aiortc peer, which
# gathers its candidates for each offer that passes check_offer.
EXAMPLES = fuzz_examples(200)
NEGOTIATION_EXAMPLES = fuzz_examples(60)


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


@settings(max_examples=EXAMPLES)
@given(text=frame_texts)
@example(text='{"type": "publish", "sdp": "' + "x" * FRAME_MAX_BYTES + '"}')
@example(text='{"type": "watch", "sdp": " \\r\\n", "client_id": "\\ud800"}')
@example(text="[" * 5000 + "]" * 5000)
@example(text='{"type": "ping", "client_id": "' + "a" * 65 + '"}')
@example(text='{"type": "ping", "x": ' + "7" * 4301 + "}")
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
