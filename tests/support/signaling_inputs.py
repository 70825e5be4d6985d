"""Generated signaling input: SDP offers, random or mutated from a browser's, and
text frames of the signaling socket."""

from __future__ import annotations

import json
from typing import Any

from aiortc.sdp import SessionDescription
from hypothesis import strategies as st

from signaling.protocol import CLIENT_ID_PATTERN, FrameType
from signaling.sdp import SDP_PARSE_ERRORS
from tests.support.fuzz import json_values

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


def loopback_only(sdp: str) -> bool:
    """Return whether every candidate of `sdp` is on LOOPBACK, so that negotiating it
    sends nothing beyond this machine."""
    try:
        description = SessionDescription.parse(sdp)
    except SDP_PARSE_ERRORS:
        return False
    candidates = [candidate for media in description.media for candidate in media.ice_candidates]
    return all(candidate.ip == LOOPBACK for candidate in candidates)


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
