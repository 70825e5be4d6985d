"""The white space trimmed from both ends of every text a person types: chat messages,
live titles and descriptions, display names and mentoring texts.

The browser trims the same set (`trimWhiteSpace` in web/static/chat.js) before it
counts a text against its limit, so both sides agree on a text at the limit.
"""

from __future__ import annotations

# Unicode's White_Space property and U+FEFF (zero-width no-break space, left by copying
# from some editors). Python's str.strip() also removes U+001C to U+001F and keeps
# U+FEFF, and JavaScript's String.prototype.trim() keeps U+0085, so neither is used.
WHITE_SPACE = (
    "\t\n\v\f\r \u0085\u00a0\u1680"
    + "".join(chr(code_point) for code_point in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


def strip_white_space(text: str) -> str:
    """Return `text` without WHITE_SPACE at either end."""
    return text.strip(WHITE_SPACE)
