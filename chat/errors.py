"""Error codes and close codes of the chat socket, with the French sentence shown for each."""

from __future__ import annotations

import enum

from chat.text import TEXT_MAX_CHARS

# The application-level frame limit; uvicorn closes with 1009 above its own 64 KiB.
FRAME_MAX_BYTES = 16_384


class ErrorCode(enum.StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    INVALID_TEXT = "invalid_text"
    TEXT_TOO_LONG = "text_too_long"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    READ_ONLY = "read_only"
    TRY_AGAIN = "try_again"
    MUTED = "muted"
    SLOW_MODE = "slow_mode"
    NOT_PARTICIPANT = "not_participant"


# Maps each error code to the sentence the person reads.
FRENCH_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "Le message reçu n'est pas un objet JSON valide.",
    ErrorCode.INVALID_FRAME: "Le message reçu est incomplet ou mal formé.",
    ErrorCode.UNKNOWN_TYPE: "Ce type de message n'est pas reconnu.",
    ErrorCode.TOO_LARGE: f"Le message reçu dépasse {FRAME_MAX_BYTES} octets.",
    ErrorCode.INVALID_TEXT: "Votre message est vide ou contient des caractères non autorisés.",
    ErrorCode.TEXT_TOO_LONG: f"Votre message dépasse {TEXT_MAX_CHARS} caractères.",
    ErrorCode.RATE_LIMITED: "Vous envoyez des messages trop vite. Patientez quelques secondes.",
    ErrorCode.FORBIDDEN: "Vous n'avez pas le droit de faire cette action.",
    ErrorCode.NOT_FOUND: "Ce message n'existe pas dans cette discussion.",
    ErrorCode.READ_ONLY: "Cette discussion est close : elle n'accepte plus de messages.",
    ErrorCode.TRY_AGAIN: (
        "Un problème passager a empêché l'envoi. Rien n'a été enregistré : réessayez."
    ),
    ErrorCode.MUTED: "La modération vous a retiré la parole dans cette discussion.",
    # The service replaces it with a message that gives the interval and the wait.
    ErrorCode.SLOW_MODE: "Le mode lent est activé : patientez avant d'envoyer un autre message.",
    ErrorCode.NOT_PARTICIPANT: "Cette personne ne participe pas à cette discussion.",
}

# Errors that count towards the per-connection limit: they come from a broken or
# hostile client, while the others are ordinary outcomes a person can cause.
PROTOCOL_ERRORS = frozenset(
    {ErrorCode.INVALID_JSON, ErrorCode.INVALID_FRAME, ErrorCode.UNKNOWN_TYPE, ErrorCode.TOO_LARGE}
)


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    TOO_MANY_ERRORS = 4400
    NOT_LOGGED_IN = 4401
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    TOO_SLOW = 4408
    # The channel's owner removed the person, such as the host from a live.
    REMOVED = 4410
    # The person has CHAT_SOCKETS_PER_PERSON_MAX sockets open on the channel already.
    TOO_MANY_SOCKETS = 4429


class ChatError(Exception):
    """A rejected chat action, sent to the client as an `error` frame.

    `message` replaces the code's usual French sentence, and `fields` go into the frame
    beside it, such as the seconds to wait of `slow_mode`.
    """

    def __init__(
        self,
        code: ErrorCode,
        ref: str | None = None,
        *,
        message: str | None = None,
        fields: dict[str, object] | None = None,
    ) -> None:
        super().__init__(code.value)
        self.code = code
        self.ref = ref
        self._message = message
        self.fields = fields or {}

    @property
    def message(self) -> str:
        return self._message or FRENCH_MESSAGES[self.code]

    def to_frame(self) -> dict[str, object]:
        frame: dict[str, object] = {
            "type": "error",
            "code": self.code.value,
            "message": self.message,
            **self.fields,
        }
        if self.ref is not None:
            frame["ref"] = self.ref
        return frame


class AccessDeniedError(Exception):
    """The person may not open this channel; `close_code` is 4401, 4403 or 4404."""

    def __init__(self, close_code: CloseCode, channel: str) -> None:
        super().__init__(f"channel {channel}: access denied with {close_code.value}")
        self.close_code = close_code
        self.channel = channel
