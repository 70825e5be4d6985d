"""Open sockets per person in this process, with a cap, so that a script opening
sockets in a loop cannot hold a peer connection or a queue for each."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable


class SocketCounts:
    """Counts open sockets by key, such as (live id, user id), up to `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: Counter[Hashable] = Counter()

    def try_open(self, key: Hashable) -> bool:
        """Count one more socket of `key`; return False, counting nothing, at the limit."""
        if self._counts[key] >= self.limit:
            return False
        self._counts[key] += 1
        return True

    def release(self, key: Hashable) -> None:
        """Forget one socket of `key`, opened with `try_open`."""
        self._counts[key] -= 1
        if self._counts[key] <= 0:
            del self._counts[key]

    def count(self, key: Hashable) -> int:
        return self._counts[key]
