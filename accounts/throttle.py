"""Rate limits on log-in attempts and password reset e-mails.

Events are counted in the database, so that every server process of a deployment
shares the counts, and survive a restart. Each limit counts events per key within a
sliding window.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from accounts.models import RateLimitEvent
from core.database import Database, utc_now

logger = logging.getLogger(__name__)

# Events older than this are deleted; it must cover the longest window below.
RETENTION_SECS = 24 * 3600


@dataclass(frozen=True)
class Limit:
    """At most `max_events` events for one value within `window_secs`. `scope` goes
    into each key, so that two limits never share counts."""

    scope: str
    max_events: int
    window_secs: float

    def __post_init__(self) -> None:
        if self.window_secs > RETENTION_SECS:
            raise ValueError(
                f"limit {self.scope}: window of {self.window_secs} s is above the "
                f"{RETENTION_SECS} s for which events are kept"
            )


# A teacher who mistypes a password a few times stays under this. Someone guessing
# gets 5 tries per quarter of an hour, about 500 a day, against passwords of at
# least 10 characters.
LOGIN_PER_ACCOUNT = Limit("login-account", 5, 15 * 60)
# The teachers of a school may share one public address behind its router, so the
# limit per address is higher than per account.
LOGIN_PER_ADDRESS = Limit("login-address", 30, 15 * 60)
# Reset e-mails: enough for a lost first e-mail and a retry, too few to flood a
# mailbox from the form.
RESET_PER_ACCOUNT = Limit("reset-account", 3, 3600)
RESET_PER_ADDRESS = Limit("reset-address", 20, 3600)


def minutes_text(seconds: float) -> str:
    """Return a wait in whole minutes, rounded up, as French text: "1 minute", "12 minutes"."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute" if minutes == 1 else f"{minutes} minutes"


class RateLimiter:
    """Counts events per limit and value in the `rate_limit_events` table."""

    def __init__(
        self, database: Database, secret_key: str, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.database = database
        self._secret = secret_key.encode()
        self._clock = clock

    def key(self, limit: Limit, value: str) -> str:
        """Return the stored key of `value` under `limit`: an HMAC, so that the table
        keeps no e-mail or client address."""
        message = f"{limit.scope}:{value}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    async def retry_after(self, checks: Sequence[tuple[Limit, str]]) -> float | None:
        """Return the seconds to wait until every (limit, value) allows one more event,
        or None when they all allow one now."""
        now = self._clock()
        wait = 0.0
        async with self.database.session() as session:
            for limit, value in checks:
                recent = list(
                    await session.scalars(
                        select(RateLimitEvent.created_at)
                        .where(
                            RateLimitEvent.key == self.key(limit, value),
                            RateLimitEvent.created_at > now - timedelta(seconds=limit.window_secs),
                        )
                        .order_by(RateLimitEvent.created_at.desc())
                        .limit(limit.max_events)
                    )
                )
                if len(recent) >= limit.max_events:
                    # The oldest of the last `max_events` events leaves the window first.
                    frees_at = recent[-1] + timedelta(seconds=limit.window_secs)
                    wait = max(wait, (frees_at - now).total_seconds())
        return wait if wait > 0 else None

    async def record(self, checks: Sequence[tuple[Limit, str]]) -> None:
        """Count one event for each (limit, value), and delete events past retention."""
        now = self._clock()
        async with self.database.session() as session, session.begin():
            for limit, value in checks:
                session.add(RateLimitEvent(key=self.key(limit, value), created_at=now))
            await session.execute(
                delete(RateLimitEvent).where(
                    RateLimitEvent.created_at < now - timedelta(seconds=RETENTION_SECS)
                )
            )

    async def clear(self, limit: Limit, value: str) -> None:
        """Forget the events of `value` under `limit`, such as after a successful log-in."""
        async with self.database.session() as session, session.begin():
            await session.execute(
                delete(RateLimitEvent).where(RateLimitEvent.key == self.key(limit, value))
            )
