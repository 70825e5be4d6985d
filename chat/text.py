"""Validation of a chat message's text, the same rules the browser applies."""

from __future__ import annotations

import unicodedata

from core.text import strip_white_space

# Counted in code points after NFC, as JavaScript's [...text].length counts them.
TEXT_MAX_CHARS = 1000

# Control characters a message may contain: line breaks and tabs from pasted text.
ALLOWED_CONTROLS = frozenset({"\n", "\t"})


class InvalidTextError(ValueError):
    """The text is empty, too long or contains a character that is not allowed."""

    def __init__(self, reason: str, *, too_long: bool = False) -> None:
        super().__init__(reason)
        self.too_long = too_long


def is_noncharacter(char: str) -> bool:
    """Return whether `char` is one of Unicode's 66 permanent noncharacters."""
    code_point = ord(char)
    return 0xFDD0 <= code_point <= 0xFDEF or (code_point & 0xFFFE) == 0xFFFE


def clean_text(raw: str) -> str:
    """Return `raw` normalized for storage, or raise InvalidTextError.

    The text is NFC-normalized, CR LF and lone CR become LF, and leading and trailing
    white space is removed. Unassigned code points are accepted, so that emoji newer
    than Python's Unicode tables get through. Bidirectional controls are accepted too,
    because the page shows each message isolated (`unicode-bidi: isolate`).
    """
    # Lone surrogates come from JSON escapes such as "\ud800". They cannot be
    # encoded to UTF-8, so they are rejected before any other check.
    if any(unicodedata.category(char) == "Cs" for char in raw):
        raise InvalidTextError("unpaired surrogate")

    text = unicodedata.normalize("NFC", raw)
    text = strip_white_space(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text:
        raise InvalidTextError("empty")

    for char in text:
        if unicodedata.category(char) == "Cc" and char not in ALLOWED_CONTROLS:
            raise InvalidTextError(f"control character U+{ord(char):04X}")
        if is_noncharacter(char):
            raise InvalidTextError(f"noncharacter U+{ord(char):04X}")

    if len(text) > TEXT_MAX_CHARS:
        raise InvalidTextError(f"{len(text)} code points", too_long=True)
    return text
