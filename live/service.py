"""Scheduling, editing and cancelling lives, the agenda queries and registrations.

No HTTP objects here: routes parse the request, call these functions and render.
Every rejected operation raises LiveError with a stable code and a French message.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from babel.dates import format_date
from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from core.database import utc_now
from core.text import strip_white_space
from core.timezones import TIME_ZONES, local_to_utc, to_local
from live import lifecycle
from live.access import is_removed
from live.models import Live, LiveState, Registration

logger = logging.getLogger(__name__)

TITLE_MAX_CHARS = 120
DESCRIPTION_MAX_CHARS = 5000
DURATION_MIN_MINUTES = 5
DURATION_MAX_MINUTES = 240
DEFAULT_DURATION_MINUTES = 60
# The start an empty schedule form offers: the usual evening slot, in the host's zone.
DEFAULT_START_TIME = time(20, 30)
# A start more than about a year ahead is almost always a mistyped year.
SCHEDULE_HORIZON_DAYS = 400
# The agenda page lists at most this many coming lives. A busy week contains a few dozen.
COMING_LIVES_LIMIT = 200
# "Mon agenda" lists this many of a person's ended lives, the most recent first.
PAST_LIVES_LIMIT = 20

# States in which nobody watches yet, so the host may still edit or cancel.
NOT_STARTED_STATES = frozenset({LiveState.SCHEDULED, LiveState.OPEN})
# States after which a live never comes back on the agenda.
FINISHED_STATES = frozenset({LiveState.ENDED, LiveState.CANCELLED})

# Characters rejected in titles and descriptions: bidirectional embeddings, overrides and
# isolates, which can make a title display as something else than it contains.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class LiveError(Exception):
    """A rejected live operation. `message` is French and shown to the person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class LiveDetails:
    """Values a host enters to schedule or edit a live. The start is wall-clock time in
    `time_zone`, one of core.timezones.TIME_ZONES."""

    title: str
    description: str
    start_day: date
    start_time: time
    time_zone: str
    duration_minutes: int


@dataclass(frozen=True)
class Evening:
    """Coming lives that start on one day in the viewer's zone, with its French heading."""

    day: date
    label: str
    lives: list[Live]


@dataclass(frozen=True)
class PersonalAgenda:
    """The lives a person hosts or registered for: coming ones in start order (cancelled
    ones included, so the person learns of it), ended ones most recent first."""

    coming: list[Live]
    past: list[Live]


# parsing and validation


def parse_details(
    *,
    title: str,
    description: str,
    start_day: str,
    start_time: str,
    time_zone: str,
    duration_minutes: str,
) -> LiveDetails:
    """Convert the schedule form's strings to LiveDetails.

    Only the conversions happen here (ISO date, HH:MM time, integer duration);
    schedule_live and edit_live check the values.
    """
    try:
        day = date.fromisoformat(start_day.strip())
    except ValueError as error:
        raise LiveError("start_day_invalid", "Indiquez une date de début valide.") from error
    try:
        wall_time = time.fromisoformat(start_time.strip())
    except ValueError as error:
        raise LiveError(
            "start_time_invalid", "Indiquez une heure de début valide, par exemple 20:30."
        ) from error
    try:
        duration = int(duration_minutes.strip())
    except ValueError as error:
        raise LiveError(
            "duration_invalid", "Indiquez la durée prévue en minutes, par exemple 60."
        ) from error
    return LiveDetails(
        title=title,
        description=description,
        start_day=day,
        start_time=wall_time.replace(second=0, microsecond=0, tzinfo=None),
        time_zone=time_zone,
        duration_minutes=duration,
    )


def default_start(zone_name: str, *, now: datetime | None = None) -> tuple[date, time]:
    """Return the day and wall-clock time an empty schedule form offers in `zone_name`:
    today at DEFAULT_START_TIME while that is still ahead, otherwise tomorrow."""
    now = now or utc_now()
    today = to_local(now, zone_name).date()
    if local_to_utc(today, DEFAULT_START_TIME, zone_name) > now:
        return today, DEFAULT_START_TIME
    return today + timedelta(days=1), DEFAULT_START_TIME


def details_of(live: Live) -> LiveDetails:
    """Return a live's current details, with its start as wall-clock time in its own zone."""
    local_start = to_local(live.starts_at, live.time_zone)
    return LiveDetails(
        title=live.title,
        description=live.description,
        start_day=local_start.date(),
        start_time=local_start.time().replace(tzinfo=None),
        time_zone=live.time_zone,
        duration_minutes=live.duration_minutes,
    )


def _clean_title(raw: str) -> str:
    title = strip_white_space(unicodedata.normalize("NFC", raw))
    if not title:
        raise LiveError("title_missing", "Donnez un titre au live.")
    if len(title) > TITLE_MAX_CHARS:
        raise LiveError(
            "title_too_long", f"Le titre dépasse {TITLE_MAX_CHARS} caractères ({len(title)})."
        )
    if any(unicodedata.category(char) in {"Cc", "Cs"} or char in _BIDI_CONTROLS for char in title):
        raise LiveError("title_invalid", "Le titre contient des caractères non autorisés.")
    return title


def _clean_description(raw: str) -> str:
    description = strip_white_space(unicodedata.normalize("NFC", raw.replace("\r\n", "\n")))
    if len(description) > DESCRIPTION_MAX_CHARS:
        raise LiveError(
            "description_too_long",
            f"La description dépasse {DESCRIPTION_MAX_CHARS} caractères ({len(description)}).",
        )
    if any(
        (unicodedata.category(char) in {"Cc", "Cs"} and char not in "\n\t")
        or char in _BIDI_CONTROLS
        for char in description
    ):
        raise LiveError(
            "description_invalid", "La description contient des caractères non autorisés."
        )
    return description


def _start_of(details: LiveDetails) -> datetime:
    """Convert the wall-clock start to UTC. Raise LiveError for a zone that is not offered,
    or for a time that the spring change to summer time skips (02:30 that night in Paris)."""
    if details.time_zone not in TIME_ZONES:
        raise LiveError("time_zone_invalid", "Ce fuseau horaire n'est pas proposé.")
    try:
        starts_at = local_to_utc(details.start_day, details.start_time, details.time_zone)
        round_trip = to_local(starts_at, details.time_zone)
    except OverflowError as error:
        # Near 0001-01-01 or 9999-12-31 the conversion leaves datetime's range.
        raise LiveError("start_day_invalid", "Indiquez une date de début valide.") from error
    if (round_trip.date(), round_trip.time()) != (details.start_day, details.start_time):
        raise LiveError(
            "start_time_nonexistent",
            "Cette heure n'existe pas ce jour-là à cause du passage à l'heure d'été. "
            "Choisissez une autre heure.",
        )
    return starts_at


def _check_duration(minutes: int) -> None:
    if not DURATION_MIN_MINUTES <= minutes <= DURATION_MAX_MINUTES:
        raise LiveError(
            "duration_out_of_range",
            f"La durée prévue doit être comprise entre {DURATION_MIN_MINUTES} "
            f"et {DURATION_MAX_MINUTES} minutes.",
        )


def _check_start_ahead(starts_at: datetime, now: datetime) -> None:
    if starts_at <= now:
        raise LiveError(
            "start_in_past",
            "Cette date et cette heure sont déjà passées. Choisissez un moment à venir.",
        )
    if starts_at > now + timedelta(days=SCHEDULE_HORIZON_DAYS):
        raise LiveError(
            "start_too_far",
            "Un live se programme au plus un an à l'avance. Vérifiez l'année.",
        )


# scheduling, editing, cancelling


async def schedule_live(
    session: AsyncSession, host_id: int, details: LiveDetails, *, now: datetime | None = None
) -> Live:
    """Validate `details`, store a new scheduled live hosted by `host_id` and commit.

    The returned live has its host loaded. Raise LiveError naming the first invalid value.
    """
    now = now or utc_now()
    title = _clean_title(details.title)
    description = _clean_description(details.description)
    _check_duration(details.duration_minutes)
    starts_at = _start_of(details)
    _check_start_ahead(starts_at, now)

    live = Live(
        host_id=host_id,
        title=title,
        description=description,
        starts_at=starts_at,
        duration_minutes=details.duration_minutes,
        time_zone=details.time_zone,
        state=LiveState.SCHEDULED,
        created_at=now,
        updated_at=now,
        sequence=0,
    )
    session.add(live)
    await session.commit()
    await session.refresh(live, attribute_names=["host"])
    logger.info(
        "live %s scheduled host=%s starts_at=%s zone=%s",
        live.id,
        host_id,
        starts_at.isoformat(),
        live.time_zone,
    )
    return live


async def _hosted_live_not_started(session: AsyncSession, live_id: int, user_id: int) -> Live:
    live = await get_live(session, live_id)
    if live is None:
        raise LiveError("live_not_found", "Ce live n'existe pas.")
    if live.host_id != user_id:
        logger.warning("live %s: user %s is not its host", live_id, user_id)
        raise LiveError(
            "not_host", "Seule la personne qui anime ce live peut le modifier ou l'annuler."
        )
    if live.state is LiveState.CANCELLED:
        raise LiveError("live_cancelled", "Ce live est annulé.")
    if live.state not in NOT_STARTED_STATES:
        raise LiveError(
            "live_already_started",
            "Ce live a déjà commencé : il ne peut plus être modifié ni annulé.",
        )
    return live


async def edit_live(
    session: AsyncSession,
    live_id: int,
    user_id: int,
    details: LiveDetails,
    *,
    now: datetime | None = None,
) -> Live:
    """Replace a live's details. Only its host may, and only before it starts.

    A start in the past is rejected only when the start changes, so a host whose live is
    a few minutes late can still fix a typo in the title.
    """
    now = now or utc_now()
    live = await _hosted_live_not_started(session, live_id, user_id)
    title = _clean_title(details.title)
    description = _clean_description(details.description)
    _check_duration(details.duration_minutes)
    starts_at = _start_of(details)
    if starts_at != live.starts_at:
        _check_start_ahead(starts_at, now)

    live.title = title
    live.description = description
    live.starts_at = starts_at
    live.time_zone = details.time_zone
    live.duration_minutes = details.duration_minutes
    live.sequence += 1
    live.updated_at = now
    await session.commit()
    logger.info("live %s edited host=%s sequence=%s", live.id, user_id, live.sequence)
    return live


async def cancel_live(
    session: AsyncSession, live_id: int, user_id: int, *, now: datetime | None = None
) -> Live:
    """Cancel a live that has not started. Only its host may, and a second cancel is a no-op."""
    live = await get_live(session, live_id)
    if live is not None and live.host_id == user_id and live.state is LiveState.CANCELLED:
        return live
    live = await _hosted_live_not_started(session, live_id, user_id)
    live.sequence += 1
    live.updated_at = now or utc_now()
    await lifecycle.transition(session, live, LiveState.CANCELLED)
    return live


# reading lives and agendas


async def get_live(session: AsyncSession, live_id: int) -> Live | None:
    """Return the live with its host loaded, or None."""
    return await session.scalar(
        select(Live).options(selectinload(Live.host)).where(Live.id == live_id)
    )


def is_current_or_coming(live: Live, now: datetime) -> bool:
    """Return whether a live belongs on the agenda: neither ended nor cancelled, and either
    on air or planned to end after `now`. A live on air past its planned end stays listed."""
    if live.state in FINISHED_STATES:
        return False
    return live.state is LiveState.LIVE or live.ends_at > now


def _recent_or_future(statement: Select[Live], now: datetime) -> Select[Live]:
    # The planned end is not a column, so SQL keeps every live that could still be running
    # (started less than the maximum duration ago) and is_current_or_coming decides.
    earliest_start = now - timedelta(minutes=DURATION_MAX_MINUTES)
    return statement.where(
        or_(Live.state == LiveState.LIVE, Live.starts_at > earliest_start)
    ).order_by(Live.starts_at, Live.id)


async def coming_lives(
    session: AsyncSession, *, now: datetime | None = None, limit: int = COMING_LIVES_LIMIT
) -> list[Live]:
    """Return the lives on air or still to come, by start time, with their hosts loaded."""
    now = now or utc_now()
    statement = (
        select(Live)
        .options(selectinload(Live.host))
        .where(Live.state.not_in([LiveState.ENDED, LiveState.CANCELLED]))
    )
    lives = await session.scalars(_recent_or_future(statement, now).limit(limit))
    return [live for live in lives if is_current_or_coming(live, now)]


def _evening_label(day: date, today: date) -> str:
    if day <= today:
        return "Ce soir"
    if day == today + timedelta(days=1):
        return "Demain"
    pattern = "EEEE d MMMM" if day.year == today.year else "EEEE d MMMM y"
    label = format_date(day, pattern, locale="fr_FR")
    return label[:1].upper() + label[1:]


def group_by_evening(
    lives: Iterable[Live], zone_name: str | None, *, now: datetime | None = None
) -> list[Evening]:
    """Group lives by their start day in the viewer's zone: "Ce soir", "Demain", then
    "Jeudi 10 décembre" and so on.

    A live on air counts as tonight's even if it started on an earlier day or its host
    went on air before the planned start. Tonight's lives on air come first, then every
    group is in start order.
    """
    today = to_local(now or utc_now(), zone_name).date()

    def evening_of(live: Live) -> date:
        if live.state is LiveState.LIVE:
            return today
        return max(to_local(live.starts_at, zone_name).date(), today)

    def order(live: Live) -> tuple[date, bool, datetime, int]:
        return (evening_of(live), live.state is not LiveState.LIVE, live.starts_at, live.id)

    groups: dict[date, list[Live]] = {}
    for live in sorted(lives, key=order):
        groups.setdefault(evening_of(live), []).append(live)
    return [
        Evening(day=day, label=_evening_label(day, today), lives=day_lives)
        for day, day_lives in groups.items()
    ]


def _lives_of_person(user_id: int) -> Select[Live]:
    registered = select(Registration.live_id).where(Registration.user_id == user_id)
    return (
        select(Live)
        .options(selectinload(Live.host))
        .where(or_(Live.host_id == user_id, Live.id.in_(registered)))
    )


async def personal_agenda(
    session: AsyncSession, user_id: int, *, now: datetime | None = None
) -> PersonalAgenda:
    """Return the lives `user_id` hosts or registered for, coming and recently ended."""
    now = now or utc_now()
    candidates = await session.scalars(
        _recent_or_future(_lives_of_person(user_id).where(Live.state != LiveState.ENDED), now)
    )
    coming = [
        live
        for live in candidates
        if is_current_or_coming(live, now)
        or (live.state is LiveState.CANCELLED and live.ends_at > now)
    ]
    past = await session.scalars(
        _lives_of_person(user_id)
        .where(Live.state == LiveState.ENDED)
        .order_by(Live.starts_at.desc(), Live.id.desc())
        .limit(PAST_LIVES_LIMIT)
    )
    return PersonalAgenda(coming=coming, past=list(past))


async def lives_of_person(session: AsyncSession, user_id: int, *, limit: int) -> list[Live]:
    """Return up to `limit` lives that `user_id` hosts or registered for, in every state,
    the latest starts first."""
    lives = await session.scalars(
        _lives_of_person(user_id).order_by(Live.starts_at.desc(), Live.id.desc()).limit(limit)
    )
    return list(lives)


# registrations


async def register(session: AsyncSession, live_id: int, user_id: int) -> bool:
    """Register `user_id` for a live and return True, or False when they already were.

    Allowed until the live ends, also while it is on air, so a colleague can join late.
    """
    live = await session.get(Live, live_id)
    if live is None:
        raise LiveError("live_not_found", "Ce live n'existe pas.")
    if live.host_id == user_id:
        raise LiveError(
            "host_cannot_register", "Vous animez ce live : pas besoin de vous inscrire."
        )
    if live.state is LiveState.CANCELLED:
        raise LiveError("live_cancelled", "Ce live est annulé.")
    if live.state is LiveState.ENDED:
        raise LiveError("live_ended", "Ce live est terminé : regardez plutôt son replay.")
    if await is_removed(session, live_id, user_id):
        raise LiveError(
            "removed",
            "La personne qui anime ce live vous en a retiré : vous ne pouvez pas vous y "
            "réinscrire.",
        )
    if await is_registered(session, live_id, user_id):
        return False

    session.add(Registration(live_id=live_id, user_id=user_id))
    try:
        await session.commit()
    except IntegrityError:
        # A second click that raced the first one: the unique constraint kept one row.
        await session.rollback()
        return False
    logger.info("live %s: user %s registered", live_id, user_id)
    return True


async def unregister(session: AsyncSession, live_id: int, user_id: int) -> bool:
    """Remove `user_id`'s registration and return True, or False when there was none.

    Refused once the live has ended: the registration then gives access to the chat
    history, and registering again is no longer possible.
    """
    live = await session.get(Live, live_id)
    if live is None:
        raise LiveError("live_not_found", "Ce live n'existe pas.")
    if live.state is LiveState.ENDED:
        raise LiveError(
            "live_ended",
            "Ce live est terminé : votre inscription reste, pour garder l'accès à sa discussion.",
        )
    registration = await session.scalar(
        select(Registration).where(Registration.live_id == live_id, Registration.user_id == user_id)
    )
    if registration is None:
        return False
    await session.delete(registration)
    await session.commit()
    logger.info("live %s: user %s unregistered", live_id, user_id)
    return True


async def is_registered(session: AsyncSession, live_id: int, user_id: int) -> bool:
    registration_id = await session.scalar(
        select(Registration.id).where(
            Registration.live_id == live_id, Registration.user_id == user_id
        )
    )
    return registration_id is not None


async def count_registrations(session: AsyncSession, live_id: int) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Registration).where(Registration.live_id == live_id)
    )
    return count or 0


async def registration_counts(session: AsyncSession, live_ids: Sequence[int]) -> dict[int, int]:
    """Map each of `live_ids` to its number of registrations (0 included)."""
    counts = dict.fromkeys(live_ids, 0)
    if not live_ids:
        return counts
    rows = await session.execute(
        select(Registration.live_id, func.count())
        .where(Registration.live_id.in_(live_ids))
        .group_by(Registration.live_id)
    )
    for live_id, count in rows:
        counts[live_id] = count
    return counts


async def registered_live_ids(
    session: AsyncSession, user_id: int, live_ids: Sequence[int]
) -> set[int]:
    """Return which of `live_ids` `user_id` registered for."""
    if not live_ids:
        return set()
    rows = await session.scalars(
        select(Registration.live_id).where(
            Registration.user_id == user_id, Registration.live_id.in_(live_ids)
        )
    )
    return set(rows)
