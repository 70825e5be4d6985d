"""Parse and check what a teacher enters: a mentor offer and a need for a mentor.

Every check raises MentoringError with a French message that names the field and
says how to correct it; nothing here touches the database.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from core.text import strip_white_space
from mentoring.catalog import ACADEMIES, DISCIPLINES, LEVELS
from mentoring.errors import MentoringError

# A teacher mentors on their own time; more than ten mentees at once is almost
# always a typing mistake.
CAPACITY_MAX = 10
PRESENTATION_MAX_CHARS = 1000
NEED_MAX_CHARS = 1000
# An invalid value is quoted back in the error message, cut to this length.
QUOTED_VALUE_MAX_CHARS = 40

# Control characters other than LF and TAB, and bidirectional embeddings, overrides
# and isolates, which can make a text display as something else than it contains.
_ALLOWED_CONTROLS = frozenset("\n\t")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


@dataclass(frozen=True)
class OfferDetails:
    """A mentor offer as checked: catalog ids in catalog order, a cleaned text."""

    disciplines: tuple[str, ...]
    levels: tuple[str, ...]
    academy: str
    presentation: str
    capacity: int


@dataclass(frozen=True)
class NeedDetails:
    """What a new teacher asks a mentor for."""

    discipline: str
    level: str
    academy: str
    need: str


def _quote(value: str) -> str:
    shown = value if len(value) <= QUOTED_VALUE_MAX_CHARS else value[:QUOTED_VALUE_MAX_CHARS] + "…"
    return f"« {shown} »"


def clean_text(raw: str, *, field: str, max_chars: int, required_message: str) -> str:
    """NFC-normalize, unify line ends and trim `raw`; reject it when empty, too long or
    holding control or bidirectional override characters."""
    text = unicodedata.normalize("NFC", raw).replace("\r\n", "\n").replace("\r", "\n")
    text = strip_white_space(text)
    if not text:
        raise MentoringError(f"{field}_missing", required_message)
    if len(text) > max_chars:
        raise MentoringError(
            f"{field}_too_long",
            f"Le texte dépasse {max_chars} caractères ({len(text)} actuellement) : "
            "raccourcissez-le.",
        )
    for char in text:
        category = unicodedata.category(char)
        if (category == "Cc" and char not in _ALLOWED_CONTROLS) or char in _BIDI_CONTROLS:
            raise MentoringError(
                f"{field}_invalid", "Le texte contient des caractères non autorisés."
            )
    return text


def _choices(
    raw_values: Iterable[str], catalog: dict[str, object], *, field: str, missing: str, unknown: str
) -> tuple[str, ...]:
    """Return the chosen catalog ids in catalog order, without repeats."""
    chosen = {value.strip() for value in raw_values if value.strip()}
    if not chosen:
        raise MentoringError(f"{field}_missing", missing)
    for value in sorted(chosen):
        if value not in catalog:
            raise MentoringError(f"{field}_unknown", unknown.format(value=_quote(value)))
    return tuple(key for key in catalog if key in chosen)


def _academy(raw: str) -> str:
    academy = raw.strip()
    if not academy:
        raise MentoringError("academy_missing", "Choisissez une académie dans la liste.")
    if academy not in ACADEMIES:
        raise MentoringError(
            "academy_unknown",
            f"L'académie {_quote(academy)} n'existe pas dans la liste proposée : "
            "choisissez-en une dans la liste.",
        )
    return academy


def parse_capacity(raw: str) -> int:
    """Parse the number of mentees, an optional minus sign and ASCII digits; raise
    MentoringError when it is not one or is out of 1..CAPACITY_MAX."""
    value = raw.strip()
    negative = value.startswith("-")
    digits = value[1:] if negative else value
    if not digits.isascii() or not digits.isdigit():
        raise MentoringError(
            "capacity_invalid",
            "Indiquez en chiffres combien de collègues vous pouvez accompagner en même temps, "
            "par exemple 2.",
        )
    # int() rejects more than 4,300 digits, leading zeros included, and any number
    # that long is out of range.
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(CAPACITY_MAX)):
        capacity = -CAPACITY_MAX if negative else CAPACITY_MAX + 1
    else:
        capacity = -int(significant) if negative else int(significant)
    if capacity <= 0:
        raise MentoringError(
            "capacity_too_small",
            "Le nombre de collègues accompagnés en même temps doit être d'au moins 1. "
            "Pour ne plus recevoir de demandes, mettez plutôt votre offre en pause.",
        )
    if capacity > CAPACITY_MAX:
        raise MentoringError(
            "capacity_too_large",
            f"Le nombre de collègues accompagnés en même temps ne peut pas dépasser "
            f"{CAPACITY_MAX}.",
        )
    return capacity


def parse_offer(
    *,
    disciplines: Iterable[str],
    levels: Iterable[str],
    academy: str,
    presentation: str,
    capacity: str,
) -> OfferDetails:
    """Check the mentor offer form's values; raise MentoringError on the first problem."""
    return OfferDetails(
        disciplines=_choices(
            disciplines,
            dict(DISCIPLINES),
            field="discipline",
            missing="Choisissez au moins une discipline.",
            unknown="La discipline {value} n'existe pas dans la liste proposée : "
            "choisissez-en une dans la liste.",
        ),
        levels=_choices(
            levels,
            dict(LEVELS),
            field="level",
            missing="Choisissez au moins un niveau.",
            unknown="Le niveau {value} n'existe pas dans la liste proposée : "
            "choisissez-en un dans la liste.",
        ),
        academy=_academy(academy),
        presentation=clean_text(
            presentation,
            field="presentation",
            max_chars=PRESENTATION_MAX_CHARS,
            required_message="Présentez-vous en quelques lignes : votre parcours, "
            "ce que vous pouvez apporter.",
        ),
        capacity=parse_capacity(capacity),
    )


def parse_need(*, discipline: str, level: str, academy: str, need: str) -> NeedDetails:
    """Check the help request form's values; raise MentoringError on the first problem."""
    (discipline_id,) = _choices(
        [discipline],
        dict(DISCIPLINES),
        field="discipline",
        missing="Choisissez votre discipline.",
        unknown="La discipline {value} n'existe pas dans la liste proposée : "
        "choisissez-en une dans la liste.",
    )
    (level_id,) = _choices(
        [level],
        dict(LEVELS),
        field="level",
        missing="Choisissez le niveau où vous enseignez.",
        unknown="Le niveau {value} n'existe pas dans la liste proposée : "
        "choisissez-en un dans la liste.",
    )
    return NeedDetails(
        discipline=discipline_id,
        level=level_id,
        academy=_academy(academy),
        need=clean_text(
            need,
            field="need",
            max_chars=NEED_MAX_CHARS,
            required_message="Décrivez votre besoin en quelques mots, par exemple "
            "« gestion de classe en 4e ».",
        ),
    )
