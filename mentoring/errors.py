"""The one exception type of the mentoring service, with a French message for the person."""

from __future__ import annotations

import enum


class ErrorKind(enum.StrEnum):
    """The kind of refusal, which routes turn into an HTTP status."""

    INVALID = "invalid"
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    TRY_AGAIN = "try_again"


class MentoringError(Exception):
    """A rejected mentoring operation: nothing was stored.

    `code` is stable and meant for programs and logs; `message` is French and shown
    to the person as it is.
    """

    def __init__(self, code: str, message: str, kind: ErrorKind = ErrorKind.INVALID) -> None:
        super().__init__(code)
        self.code = code
        self.message = message
        self.kind = kind
