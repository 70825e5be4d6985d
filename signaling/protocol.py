"""Frames of the signaling socket (docs/protocol.md): limits, error codes with their
French messages, close codes, and the parsing of client frames."""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any

# One text frame of the application protocol; an SDP offer with its candidates is
# 3 to 8 KB, so 16 KiB leaves room without letting a client make the server parse
# large documents.
FRAME_MAX_BYTES = 16_384
# A connection that sends this many invalid or refused frames is closed with 4400:
# a correct client makes none, a buggy one should stop instead of looping.
PROTOCOL_ERRORS_MAX = 20
CLIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ErrorCode(enum.StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    FORBIDDEN = "forbidden"
    TRY_AGAIN = "try_again"
    INVALID_SDP = "invalid_sdp"
    NOT_LIVE = "not_live"
    LIVE_ENDED = "live_ended"
    ALREADY_PUBLISHING = "already_publishing"
    # the media process serves as many WebRTC viewers as it may: watch the HLS stream
    LIVE_FULL = "live_full"


# Maps each error code to the French sentence shown to the person.
ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "Le message reçu n'est pas un objet JSON.",
    ErrorCode.INVALID_FRAME: "Le message reçu est incomplet ou mal formé.",
    ErrorCode.UNKNOWN_TYPE: "Ce type de message n'existe pas sur cette connexion.",
    ErrorCode.TOO_LARGE: "Le message dépasse la taille maximale de 16 384 octets.",
    ErrorCode.FORBIDDEN: "Seule la personne qui anime le live peut faire cela.",
    ErrorCode.TRY_AGAIN: "Le serveur est momentanément indisponible. Réessayez dans un instant.",
    ErrorCode.INVALID_SDP: "La description de la connexion vidéo est invalide.",
    ErrorCode.NOT_LIVE: "Le live n'a pas encore commencé.",
    ErrorCode.LIVE_ENDED: "Ce live est terminé.",
    ErrorCode.ALREADY_PUBLISHING: "Votre caméra est déjà diffusée dans ce live.",
    ErrorCode.LIVE_FULL: "Le live est très suivi : vous le regardez en léger différé.",
}


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    TOO_MANY_ERRORS = 4400
    NOT_LOGGED_IN = 4401
    NOT_ALLOWED = 4403
    NOT_FOUND = 4404
    TOO_SLOW = 4408
    # The host removed the person from the live.
    REMOVED = 4410
    # The person has Settings.signaling_sockets_per_person sockets open on the live already.
    TOO_MANY_SOCKETS = 4429


# Maps each close code the endpoint sends to its French reason (at most 123 bytes).
# The reason of a 4403 close for a socket opened from another site's page, where the
# usual 4403 reason (register for the live) would mislead.
FOREIGN_ORIGIN_REASON = "Connexion refusée : ouvrez le live depuis une page du site."

CLOSE_REASONS: dict[CloseCode, str] = {
    CloseCode.NORMAL: "Live terminé.",
    CloseCode.GOING_AWAY: "Le serveur redémarre.",
    CloseCode.INTERNAL_ERROR: "Erreur du serveur.",
    CloseCode.TOO_MANY_ERRORS: "Trop de messages invalides.",
    CloseCode.NOT_LOGGED_IN: "Connectez-vous pour continuer.",
    CloseCode.NOT_ALLOWED: "Inscrivez-vous à ce live pour le suivre.",
    CloseCode.NOT_FOUND: "Ce live n'existe pas.",
    CloseCode.TOO_SLOW: "Connexion trop lente.",
    CloseCode.REMOVED: "La personne qui anime ce live vous en a retiré.",
    CloseCode.TOO_MANY_SOCKETS: "Ce live est déjà ouvert dans trop d'onglets.",
}


class FrameType(enum.StrEnum):
    PUBLISH = "publish"
    WATCH = "watch"
    END = "end"
    PING = "ping"


# Frames whose `sdp` field carries an offer.
OFFER_TYPES = frozenset({FrameType.PUBLISH, FrameType.WATCH})


class ProtocolError(Exception):
    """A client frame that is refused; becomes an error frame with `code`."""

    def __init__(self, code: ErrorCode, message: str | None = None, ref: str | None = None):
        super().__init__(code.value)
        self.code = code
        self.message = message or ERROR_MESSAGES[code]
        self.ref = ref


@dataclass(frozen=True)
class ClientFrame:
    type: FrameType
    sdp: str | None = None
    # the client's `client_id`, repeated as `ref` in an error frame
    ref: str | None = None


def parse_client_frame(text: str) -> ClientFrame:
    """Parse one text frame into a ClientFrame; raise ProtocolError naming the problem.

    For example `{"type": "watch", "sdp": "v=0..."}` gives
    `ClientFrame(FrameType.WATCH, "v=0...")`, and `{"type": "watch"}` raises
    `invalid_frame` because a watch frame carries an offer.
    """
    if len(text.encode()) > FRAME_MAX_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE)
    try:
        value: Any = json.loads(text)
    except (ValueError, RecursionError) as error:
        # ValueError covers JSONDecodeError and an integer past Python's digit limit.
        raise ProtocolError(ErrorCode.INVALID_JSON) from error
    if not isinstance(value, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON)

    raw_ref = value.get("client_id")
    ref = raw_ref if isinstance(raw_ref, str) and CLIENT_ID_PATTERN.fullmatch(raw_ref) else None

    raw_type = value.get("type")
    if not isinstance(raw_type, str):
        raise ProtocolError(
            ErrorCode.INVALID_FRAME, "Le champ « type » manque ou n'est pas un texte.", ref
        )
    try:
        frame_type = FrameType(raw_type)
    except ValueError:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, ref=ref) from None

    if frame_type not in OFFER_TYPES:
        return ClientFrame(frame_type, ref=ref)
    sdp = value.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise ProtocolError(
            ErrorCode.INVALID_FRAME,
            "Le champ « sdp » doit contenir l'offre SDP de votre navigateur.",
            ref,
        )
    return ClientFrame(frame_type, sdp=sdp, ref=ref)


def error_frame(error: ProtocolError) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": error.code.value, "message": error.message}
    if error.ref is not None:
        frame["ref"] = error.ref
    return frame
