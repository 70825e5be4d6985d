"""Fixed lists that mentor profiles and help requests choose from.

Ids are stable ASCII slugs stored in the database, and labels are the French text shown
to teachers. Each mapping keeps the order in which forms list its entries.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeVar


@dataclass(frozen=True, slots=True)
class Discipline:
    """A subject a teacher teaches, or "polyvalent" for a primary-school teacher."""

    id: str
    label: str


@dataclass(frozen=True, slots=True)
class Level:
    """A kind of school. `primary` is true for the premier degré (maternelle, élémentaire)."""

    id: str
    label: str
    primary: bool


class AcademyKind(enum.StrEnum):
    """Administrative status of a territory within the Ministry of National Education."""

    ACADEMY = "academie"
    # New Caledonia, French Polynesia and Wallis and Futuna run their own schools, and a
    # vice-rectorat represents the Ministry there.
    VICE_RECTORATE = "vice-rectorat"
    # Saint-Pierre-et-Miquelon has a service de l'éducation attached to the académie of
    # Normandie, listed apart because its teachers live about 4 hours behind Paris.
    EDUCATION_SERVICE = "service-education"


@dataclass(frozen=True, slots=True)
class Academy:
    """An académie (or an overseas territory's equivalent) and its IANA time zone."""

    id: str
    label: str
    time_zone: str
    kind: AcademyKind = AcademyKind.ACADEMY


POLYVALENT = "polyvalent"


_Entry = TypeVar("_Entry", Discipline, Level, Academy)


def _by_id(*entries: _Entry) -> dict[str, _Entry]:
    return {entry.id: entry for entry in entries}


# Maps a discipline id to its discipline: "polyvalent" for primary school, then the
# subjects of the collège and lycée curricula (general, technological and vocational).
DISCIPLINES: dict[str, Discipline] = _by_id(
    Discipline(POLYVALENT, "Polyvalent (premier degré)"),
    Discipline("francais", "Français"),
    Discipline("mathematiques", "Mathématiques"),
    Discipline("histoire-geographie", "Histoire-géographie"),
    Discipline("anglais", "Anglais"),
    Discipline("allemand", "Allemand"),
    Discipline("espagnol", "Espagnol"),
    Discipline("italien", "Italien"),
    Discipline("portugais", "Portugais"),
    Discipline("arabe", "Arabe"),
    Discipline("chinois", "Chinois"),
    Discipline("russe", "Russe"),
    Discipline("langues-regionales", "Langues régionales"),
    Discipline("langues-anciennes", "Langues et cultures de l'Antiquité (latin, grec)"),
    Discipline("physique-chimie", "Physique-chimie"),
    Discipline("svt", "Sciences de la vie et de la Terre"),
    Discipline("technologie", "Technologie"),
    Discipline("arts-plastiques", "Arts plastiques"),
    Discipline("education-musicale", "Éducation musicale"),
    Discipline("eps", "Éducation physique et sportive"),
    Discipline("ses", "Sciences économiques et sociales"),
    Discipline("philosophie", "Philosophie"),
    Discipline("nsi", "Numérique et sciences informatiques"),
    Discipline("sciences-ingenieur", "Sciences de l'ingénieur"),
    Discipline("economie-gestion", "Économie-gestion"),
    Discipline("biotechnologies", "Biotechnologies"),
    Discipline("sciences-medico-sociales", "Sciences et techniques médico-sociales"),
    Discipline("lettres-histoire", "Lettres-histoire-géographie (lycée professionnel)"),
    Discipline("maths-physique-chimie", "Mathématiques-physique-chimie (lycée professionnel)"),
    Discipline("enseignement-professionnel", "Enseignement professionnel"),
    Discipline("documentation", "Documentation (professeur documentaliste)"),
)

# Maps a level id to its level, from the youngest pupils to the oldest.
LEVELS: dict[str, Level] = _by_id(
    Level("maternelle", "Maternelle", primary=True),
    Level("elementaire", "Élémentaire", primary=True),
    Level("college", "Collège", primary=False),
    Level("lycee-general-technologique", "Lycée général et technologique", primary=False),
    Level("lycee-professionnel", "Lycée professionnel", primary=False),
)

PRIMARY_LEVELS: frozenset[str] = frozenset(level.id for level in LEVELS.values() if level.primary)

_PARIS = "Europe/Paris"

# Maps an académie id to its académie: the 30 académies of 2026 (25 in metropolitan
# France with Corse, since Caen and Rouen merged into Normandie in 2020, and 5 overseas
# with Mayotte, an académie since 2020), then the vice-rectorats and Saint-Pierre-et-Miquelon.
ACADEMIES: dict[str, Academy] = _by_id(
    Academy("aix-marseille", "Aix-Marseille", _PARIS),
    Academy("amiens", "Amiens", _PARIS),
    Academy("besancon", "Besançon", _PARIS),
    Academy("bordeaux", "Bordeaux", _PARIS),
    Academy("clermont-ferrand", "Clermont-Ferrand", _PARIS),
    Academy("corse", "Corse", _PARIS),
    Academy("creteil", "Créteil", _PARIS),
    Academy("dijon", "Dijon", _PARIS),
    Academy("grenoble", "Grenoble", _PARIS),
    Academy("guadeloupe", "Guadeloupe", "America/Guadeloupe"),
    Academy("guyane", "Guyane", "America/Cayenne"),
    Academy("la-reunion", "La Réunion", "Indian/Reunion"),
    Academy("lille", "Lille", _PARIS),
    Academy("limoges", "Limoges", _PARIS),
    Academy("lyon", "Lyon", _PARIS),
    Academy("martinique", "Martinique", "America/Martinique"),
    Academy("mayotte", "Mayotte", "Indian/Mayotte"),
    Academy("montpellier", "Montpellier", _PARIS),
    Academy("nancy-metz", "Nancy-Metz", _PARIS),
    Academy("nantes", "Nantes", _PARIS),
    Academy("nice", "Nice", _PARIS),
    Academy("normandie", "Normandie", _PARIS),
    Academy("orleans-tours", "Orléans-Tours", _PARIS),
    Academy("paris", "Paris", _PARIS),
    Academy("poitiers", "Poitiers", _PARIS),
    Academy("reims", "Reims", _PARIS),
    Academy("rennes", "Rennes", _PARIS),
    Academy("strasbourg", "Strasbourg", _PARIS),
    Academy("toulouse", "Toulouse", _PARIS),
    Academy("versailles", "Versailles", _PARIS),
    Academy(
        "nouvelle-caledonie", "Nouvelle-Calédonie", "Pacific/Noumea", AcademyKind.VICE_RECTORATE
    ),
    # NOTE: the Marquesas and Gambier islands are 30 and 60 minutes ahead of Tahiti, but
    # one zone per territory is all a profile stores, and the vice-rectorat is in Papeete.
    Academy(
        "polynesie-francaise",
        "Polynésie française",
        "Pacific/Tahiti",
        AcademyKind.VICE_RECTORATE,
    ),
    Academy("wallis-et-futuna", "Wallis-et-Futuna", "Pacific/Wallis", AcademyKind.VICE_RECTORATE),
    Academy(
        "saint-pierre-et-miquelon",
        "Saint-Pierre-et-Miquelon",
        "America/Miquelon",
        AcademyKind.EDUCATION_SERVICE,
    ),
)
