"""The fixed lists of disciplines, levels and académies."""

from __future__ import annotations

import re
from zoneinfo import ZoneInfo

from core.timezones import TIME_ZONES
from mentoring.catalog import (
    ACADEMIES,
    DISCIPLINES,
    LEVELS,
    POLYVALENT,
    PRIMARY_LEVELS,
    AcademyKind,
)

SLUG = re.compile(r"^[a-z]+(-[a-z]+)*$")


def test_catalog_ids_are_slugs_matching_keys() -> None:
    for catalog in (DISCIPLINES, LEVELS, ACADEMIES):
        for key, entry in catalog.items():
            assert entry.id == key
            assert SLUG.match(key), key
            assert entry.label.strip() == entry.label
            assert entry.label


def test_catalog_labels_unique() -> None:
    for catalog in (DISCIPLINES, LEVELS, ACADEMIES):
        labels = [entry.label for entry in catalog.values()]
        assert len(labels) == len(set(labels))


def test_academies_thirty_plus_overseas_territories() -> None:
    kinds = [academy.kind for academy in ACADEMIES.values()]
    assert kinds.count(AcademyKind.ACADEMY) == 30
    assert kinds.count(AcademyKind.VICE_RECTORATE) == 3
    for overseas in ("guadeloupe", "martinique", "guyane", "la-reunion", "mayotte", "corse"):
        assert ACADEMIES[overseas].kind is AcademyKind.ACADEMY
    assert ACADEMIES["normandie"].label == "Normandie"
    assert "caen" not in ACADEMIES
    assert "rouen" not in ACADEMIES


def test_academies_time_zones_known() -> None:
    for academy in ACADEMIES.values():
        assert ZoneInfo(academy.time_zone)
        # The same zones are offered to teachers when they pick theirs.
        assert academy.time_zone in TIME_ZONES, academy.id
    assert ACADEMIES["la-reunion"].time_zone == "Indian/Reunion"
    assert ACADEMIES["guyane"].time_zone == "America/Cayenne"
    assert ACADEMIES["corse"].time_zone == "Europe/Paris"


def test_levels_primary_ones() -> None:
    assert list(LEVELS) == [
        "maternelle",
        "elementaire",
        "college",
        "lycee-general-technologique",
        "lycee-professionnel",
    ]
    assert frozenset({"maternelle", "elementaire"}) == PRIMARY_LEVELS


def test_disciplines_polyvalent_first() -> None:
    assert next(iter(DISCIPLINES)) == POLYVALENT
    for subject in ("francais", "mathematiques", "histoire-geographie", "eps", "philosophie"):
        assert subject in DISCIPLINES
