"""Checks on the SDP offers of `publish` and `watch` before a peer connection reads them."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiortc.sdp import (
    H264Profile,
    MediaDescription,
    SessionDescription,
    parse_h264_profile_level_id,
)

# Directions a host's offer may declare for each track, since the host only sends.
# Browsers write `sendrecv` when a track is added with addTrack instead of a
# sendonly transceiver, and the server's answer then declares `recvonly`.
PUBLISH_DIRECTIONS = frozenset({"sendonly", "sendrecv"})
# Directions a viewer's offer may declare for each track, since the viewer only receives.
WATCH_DIRECTIONS = frozenset({"recvonly", "sendrecv"})

# The highest port a candidate may name.
MAX_PORT = 65535

# Exceptions that aiortc 1.16's SDP parser lets escape on malformed input. ValueError
# and IndexError come from bad numbers and short lines, KeyError from an unknown
# `a=setup` role, and StopIteration from an `a=fmtp` or `a=rtcp-fb` line that names an
# undeclared payload type. AssertionError comes from a malformed `m=` or `a=fingerprint`,
# and AttributeError or TypeError from an attribute that needs a value and has none
# (`a=fmtp` or `a=sctp-port` without a colon).
# NOTE: catching AssertionError is a deliberate departure from the usual rule, because
# this parser reports syntax errors with `assert`.
SDP_PARSE_ERRORS = (
    ValueError,
    IndexError,
    KeyError,
    StopIteration,
    AssertionError,
    AttributeError,
    TypeError,
)


class OfferPurpose(enum.StrEnum):
    PUBLISH = "publish"
    WATCH = "watch"


class InvalidOfferError(Exception):
    """An offer that cannot be negotiated; `message` is French and shown to the person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class OfferSummary:
    audio_direction: str
    video_direction: str
    candidate_count: int
    # The bandwidth the offer declares for its video section (`b=TIAS`, or `b=AS`
    # in kbit/s), in bit/s; a viewer's offer states what it can receive. None if absent.
    video_bandwidth_bps: int | None = None
    # Whether the video section offers H.264 constrained baseline in packetization
    # mode 1, the only video the encode-once path sends.
    offers_h264_baseline: bool = False


def check_offer(sdp: str, purpose: OfferPurpose) -> OfferSummary:
    """Parse `sdp` and check that it is a complete offer for `purpose`.

    An offer passes when it contains exactly one audio and one video section with
    distinct mids, whose directions suit the purpose, ICE credentials, a DTLS
    fingerprint and at least one ICE candidate (candidates are not trickled). Raise
    InvalidOfferError otherwise.
    """
    # A JSON escape such as "\ud800" carries a lone surrogate. aiortc copies some
    # values (a mid) into its SDP answer, which no UTF-8 text frame can then carry.
    if not _is_utf8_text(sdp):
        raise InvalidOfferError("L'offre SDP est illisible.")
    try:
        description = SessionDescription.parse(sdp)
    except SDP_PARSE_ERRORS as error:
        raise InvalidOfferError("L'offre SDP est illisible.") from error

    audio = _single_section(description, "audio")
    video = _single_section(description, "video")
    others = [media.kind for media in description.media if media.kind not in {"audio", "video"}]
    if others:
        raise InvalidOfferError(
            "L'offre SDP ne doit contenir qu'une piste audio et une piste vidéo."
        )

    if purpose is OfferPurpose.PUBLISH:
        allowed = PUBLISH_DIRECTIONS
        direction_message = "L'offre SDP pour animer le live doit envoyer l'audio et la vidéo."
    else:
        allowed = WATCH_DIRECTIONS
        direction_message = "L'offre SDP pour suivre le live doit recevoir l'audio et la vidéo."
    # Browsers write an `a=mid` in every section and list only those mids in BUNDLE.
    # aiortc 1.16 raises AttributeError, from setRemoteDescription and then from close,
    # on a bundled section without a mid or a BUNDLE group naming a missing mid.
    mids = [media.rtp.muxId for media in (audio, video)]
    bundled = [
        mid for group in description.group if group.semantic == "BUNDLE" for mid in group.items
    ]
    if not all(mids) or len(set(mids)) != len(mids) or not set(bundled) <= set(mids):
        raise InvalidOfferError(
            "L'offre SDP doit identifier chaque piste par une ligne a=mid différente."
        )
    for media in (audio, video):
        if media.direction not in allowed:
            raise InvalidOfferError(direction_message)
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise InvalidOfferError("L'offre SDP n'a pas d'identifiants ICE.")
        if media.dtls is None or not media.dtls.fingerprints:
            raise InvalidOfferError("L'offre SDP n'a pas d'empreinte DTLS.")

    candidates = [candidate for media in description.media for candidate in media.ice_candidates]
    # aioice takes any integer as a port; the socket layer raises OverflowError when the
    # peer's ICE checks send to one outside 0-65535.
    if any(not 0 <= candidate.port <= MAX_PORT for candidate in candidates):
        raise InvalidOfferError("L'offre SDP contient un candidat ICE au port invalide.")
    candidate_count = len(candidates)
    if candidate_count == 0:
        raise InvalidOfferError(
            "L'offre SDP ne contient aucun candidat ICE : "
            "attendez la fin de leur collecte avant de l'envoyer."
        )
    return OfferSummary(
        audio_direction=str(audio.direction),
        video_direction=str(video.direction),
        candidate_count=candidate_count,
        video_bandwidth_bps=declared_bandwidth(sdp, "video"),
        offers_h264_baseline=_offers_h264_baseline(video),
    )


def declared_bandwidth(sdp: str, kind: str) -> int | None:
    """Return the bandwidth declared in the first `kind` section of `sdp`, in bit/s:
    `b=TIAS` as it is, or else `b=AS`, which counts kbit/s. aiortc's parser drops
    `b=` lines, so they are read from the text."""
    in_section = False
    tias: int | None = None
    application_specific: int | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            if in_section:
                break
            in_section = line[2:].split(" ", 1)[0] == kind
        elif in_section and line.startswith("b="):
            modifier, _, value = line[2:].partition(":")
            if not value.strip().isdigit():
                continue
            if modifier == "TIAS":
                tias = int(value)
            elif modifier == "AS":
                application_specific = int(value) * 1000
    return tias if tias is not None else application_specific


def _offers_h264_baseline(video: MediaDescription) -> bool:
    for codec in video.rtp.codecs:
        if codec.mimeType.lower() != "video/h264":
            continue
        if str(codec.parameters.get("packetization-mode", "0")) != "1":
            continue
        try:
            profile, _ = parse_h264_profile_level_id(
                str(codec.parameters.get("profile-level-id", "42e01f"))
            )
        except ValueError:
            continue
        if profile is H264Profile.PROFILE_CONSTRAINED_BASELINE:
            return True
    return False


def _single_section(description: SessionDescription, kind: str) -> MediaDescription:
    sections = [media for media in description.media if media.kind == kind]
    if len(sections) != 1:
        raise InvalidOfferError(
            "L'offre SDP doit contenir exactement une piste audio et une piste vidéo."
        )
    return sections[0]


def _is_utf8_text(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
