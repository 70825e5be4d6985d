"""Time zones a teacher may pick, and conversions between local wall time and UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

from core.settings import DEFAULT_TIME_ZONE

# Maps an IANA zone to the French label shown in forms: metropolitan France and the
# overseas académies, whose teachers host and watch lives in their own evening.
TIME_ZONES: dict[str, str] = {
    "Europe/Paris": "France métropolitaine (Paris)",
    "America/Guadeloupe": "Guadeloupe",
    "America/Martinique": "Martinique",
    "America/Cayenne": "Guyane",
    "Indian/Reunion": "La Réunion",
    "Indian/Mayotte": "Mayotte",
    "America/Miquelon": "Saint-Pierre-et-Miquelon",
    "Pacific/Noumea": "Nouvelle-Calédonie",
    "Pacific/Tahiti": "Polynésie française (Tahiti)",
    "Pacific/Wallis": "Wallis-et-Futuna",
}


class InvalidTimeZoneError(ValueError):
    pass


def zone(name: str | None) -> ZoneInfo:
    """Return the ZoneInfo for one of TIME_ZONES (the default zone for None)."""
    key = name or DEFAULT_TIME_ZONE
    if key not in TIME_ZONES:
        raise InvalidTimeZoneError(key)
    return ZoneInfo(key)


def local_to_utc(day: date, wall_time: time, zone_name: str) -> datetime:
    """Convert a wall-clock date and time in `zone_name` to UTC.

    On the autumn change the hour 02:00-03:00 happens twice in Paris; the first
    occurrence (fold=0) is taken, as calendar applications do.
    """
    local = datetime.combine(day, wall_time).replace(tzinfo=zone(zone_name))
    return local.astimezone(UTC)


def to_local(moment: datetime, zone_name: str | None) -> datetime:
    return moment.astimezone(zone(zone_name))


FRENCH_DATETIME_PATTERN = "EEEE d MMMM y 'à' HH:mm"


def format_local(
    moment: datetime, zone_name: str | None, pattern: str = FRENCH_DATETIME_PATTERN
) -> str:
    """Format `moment` in French in the given zone, e.g. "dimanche 25 octobre 2026 à 20:30"."""
    return format_datetime(to_local(moment, zone_name), pattern, locale="fr_FR")
