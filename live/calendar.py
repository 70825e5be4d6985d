"""A person's private iCalendar feed: the lives they host or registered for.

The feed's URL carries a secret token instead of a log-in, because calendar applications
fetch it without cookies. Anyone with the URL can read the feed, so its owner can revoke
it. Revoking replaces the token, and the old URL then returns 404.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

from icalendar import Calendar, Event, vDuration
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from core.database import utc_now
from core.timezones import to_local
from live import service
from live.models import CalendarFeed, Live, LiveState

logger = logging.getLogger(__name__)

# 32 random bytes (256 bits), written as 43 URL-safe characters: far too many to guess.
FEED_TOKEN_BYTES = 32
FEED_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
# A feed lists at most this many lives, the latest first. 500 is about ten years of
# weekly lives.
FEED_MAX_EVENTS = 500
# How often calendar applications should fetch the feed again (RFC 7986 REFRESH-INTERVAL).
# Lives are usually scheduled days ahead, so an hour keeps calendars current enough.
FEED_REFRESH_INTERVAL = timedelta(hours=1)
PRODID = "-//Veillée//Agenda des lives//FR"
CALENDAR_NAME = "Veillée · mes lives"
RECORDING_NOTICE = "Ce live et sa discussion sont enregistrés puis proposés en replay."


def feed_path(token: str) -> str:
    return f"/calendar/{token}.ics"


async def feed_token(session: AsyncSession, user_id: int) -> str:
    """Return the person's feed token, creating it on first use."""
    existing = await session.scalar(
        select(CalendarFeed.token).where(CalendarFeed.user_id == user_id)
    )
    if existing is not None:
        return existing

    feed = CalendarFeed(user_id=user_id, token=secrets.token_urlsafe(FEED_TOKEN_BYTES))
    session.add(feed)
    try:
        await session.commit()
    except IntegrityError:
        # Two pages opened at once both created one: keep the row that won.
        await session.rollback()
        winner = await session.scalar(
            select(CalendarFeed.token).where(CalendarFeed.user_id == user_id)
        )
        if winner is None:
            raise
        return winner
    logger.info("calendar feed created user=%s", user_id)
    return feed.token


async def revoke_feed_token(session: AsyncSession, user_id: int) -> str:
    """Replace the person's feed token and return the new one; the old URL stops working."""
    feed = await session.scalar(select(CalendarFeed).where(CalendarFeed.user_id == user_id))
    if feed is None:
        return await feed_token(session, user_id)
    feed.token = secrets.token_urlsafe(FEED_TOKEN_BYTES)
    feed.created_at = utc_now()
    await session.commit()
    logger.info("calendar feed revoked and replaced user=%s", user_id)
    return feed.token


async def feed_owner(session: AsyncSession, token: str) -> int | None:
    """Return the id of the person whose current token is `token`, or None."""
    if not FEED_TOKEN_PATTERN.fullmatch(token):
        return None
    owner: int | None = await session.scalar(
        select(CalendarFeed.user_id).where(CalendarFeed.token == token)
    )
    return owner


async def feed_of_person(
    session: AsyncSession, user_id: int, *, site_url: str, now: datetime | None = None
) -> bytes:
    """Build the iCalendar feed of the lives `user_id` hosts or registered for."""
    lives = await service.lives_of_person(session, user_id, limit=FEED_MAX_EVENTS)
    return build_feed(lives, site_url=site_url, now=now)


def build_feed(lives: Sequence[Live], *, site_url: str, now: datetime | None = None) -> bytes:
    """Serialize `lives` (hosts loaded) as an iCalendar PUBLISH object.

    Each event's DTSTART and DTEND carry the TZID of the zone the live was scheduled in,
    and the matching VTIMEZONE is included, so calendars keep 20:30 at 20:30 across the
    changes to and from summer time. Cancelled lives stay in the feed with
    STATUS:CANCELLED, which makes calendar applications remove or strike them.
    """
    site_url = site_url.rstrip("/")
    domain = urlsplit(site_url).hostname or "veillee"
    stamp = now or utc_now()

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("name", CALENDAR_NAME)
    calendar.add("x-wr-calname", CALENDAR_NAME)
    calendar.add("refresh-interval", FEED_REFRESH_INTERVAL, parameters={"VALUE": "DURATION"})
    # icalendar treats an X- property as text unless it is given a typed value.
    calendar.add("x-published-ttl", vDuration(FEED_REFRESH_INTERVAL))

    for live in sorted(lives, key=lambda item: (item.starts_at, item.id)):
        calendar.add_component(_event_of(live, site_url=site_url, domain=domain, stamp=stamp))

    if lives:
        first_day = min(live.starts_at for live in lives).date()
        last_day = max(live.ends_at for live in lives).date()
        # icalendar writes the zone rules for a date range only, so the range covers
        # whole years around the events.
        calendar.add_missing_timezones(
            first_date=date(first_day.year - 1, 1, 1), last_date=date(last_day.year + 1, 12, 31)
        )
    feed: bytes = calendar.to_ical()
    return feed


def _event_of(live: Live, *, site_url: str, domain: str, stamp: datetime) -> Event:
    url = f"{site_url}/lives/{live.id}"
    cancelled = live.state is LiveState.CANCELLED

    event = Event()
    # The UID never changes for a live, so an edit replaces the event in calendars.
    event.add("uid", f"live-{live.id}@{domain}")
    event.add("dtstamp", stamp)
    event.add("created", live.created_at)
    event.add("last-modified", live.updated_at)
    event.add("sequence", live.sequence)
    event.add("dtstart", to_local(live.starts_at, live.time_zone))
    event.add("dtend", to_local(live.ends_at, live.time_zone))
    # Several calendar applications show STATUS:CANCELLED events unchanged, so the title
    # also starts with "Annulé".
    event.add("summary", f"Annulé : {live.title}" if cancelled else live.title)
    event.add("description", _description_of(live, url))
    event.add("url", url)
    event.add("location", url)
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("transp", "TRANSPARENT" if cancelled else "OPAQUE")
    return event


def _description_of(live: Live, url: str) -> str:
    parts = [f"Live animé par {live.host.display_name} sur Veillée."]
    if live.state is LiveState.CANCELLED:
        parts.append("Ce live est annulé.")
    if live.description:
        parts.append(live.description)
    parts.append(RECORDING_NOTICE)
    parts.append(f"Rejoindre le live : {url}")
    return "\n\n".join(parts)
