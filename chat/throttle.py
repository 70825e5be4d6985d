"""The token bucket that limits the write frames of one chat connection before any
database work."""

from __future__ import annotations

import time
from collections.abc import Callable

# Write frames (send, delete, mute, unmute, slow_mode) one connection may send at once,
# and how fast its bucket refills. The database limit of 5 messages in 5 seconds stops
# a person who types fast before this does, and a host may still delete ten messages
# in a row. A script sending rejected frames in a loop gets at most two database
# transactions a second per connection out of them, instead of one per frame.
WRITE_FRAMES_BURST = 10
WRITE_FRAMES_PER_SEC = 2.0


class TokenBucket:
    """A bucket of `capacity` tokens that refills at `refill_per_sec` tokens a second.

    It starts full. Each accepted frame takes one token.
    """

    def __init__(
        self,
        capacity: int,
        refill_per_sec: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity < 1 or refill_per_sec <= 0:
            raise ValueError(
                f"a token bucket needs a capacity of at least 1 and a positive refill rate, "
                f"got capacity={capacity} refill_per_sec={refill_per_sec}"
            )
        self.capacity = capacity
        self.refill_per_sec = refill_per_sec
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()

    def take(self) -> float:
        """Take one token and return 0.0, or return the seconds until one is available
        and take nothing."""
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._tokens = min(self.capacity, self._tokens + elapsed * self.refill_per_sec)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.refill_per_sec
