"""Supervision of the background tasks that one owner (a media session) starts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class TaskSupervisor:
    """Runs the background tasks of one owner, logs each failure with the owner's name,
    tells the owner through `on_failure`, and cancels and awaits every task on `close`."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    def spawn(
        self,
        coroutine: Coroutine[Any, Any, None],
        name: str,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Task[None]:
        """Start `coroutine` as a task named `name`; raise RuntimeError after `close`."""
        if self._closed:
            coroutine.close()
            raise RuntimeError(f"{self.owner}: cannot start task {name}: expected open, got closed")
        task = asyncio.create_task(coroutine, name=f"{self.owner} {name}")
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, name, on_failure))
        return task

    def _finished(
        self,
        task: asyncio.Task[None],
        name: str,
        on_failure: Callable[[BaseException], None] | None,
    ) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        logger.error("%s: task %s failed", self.owner, name, exc_info=error)
        if on_failure is not None:
            on_failure(error)

    async def close(self) -> None:
        """Cancel every running task and wait for all of them to finish.

        The task that calls `close` (a timer that ends its own session) is left to
        finish by itself, since cancelling it would interrupt this very call.
        """
        self._closed = True
        current = asyncio.current_task()
        others = [task for task in self._tasks if task is not current]
        for task in others:
            task.cancel()
        if others:
            await asyncio.gather(*others, return_exceptions=True)


def raise_if_cancelling() -> None:
    """Raise CancelledError when the current task was asked to stop.

    NOTE: a call may swallow the CancelledError meant for its task (seen with redis-py
    8.2 in the middle of a command), so a loop that must end when cancelled checks this
    on each turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# First wait after a failed step of `repeat`, doubled after each failure up to the
# step's own interval: a short outage is bridged quickly, a long one costs one try per
# interval.
RETRY_INITIAL_SECS = 0.1


async def repeat(
    step: Callable[[], Coroutine[Any, Any, None]],
    interval_secs: float,
    what: str,
    expected_errors: tuple[type[BaseException], ...] = (OSError, TimeoutError),
) -> None:
    """Run `step` every `interval_secs` until cancelled.

    A failure never ends the loop. The first of a series of `expected_errors` is logged
    at WARNING without traceback and the end of the series at INFO with its count, so
    that an outage of a dependency writes two lines. Any other exception is a bug and
    is logged with its traceback each time.
    """
    failures = 0
    first_failure_monotonic = 0.0
    retry_secs = RETRY_INITIAL_SECS
    while True:
        raise_if_cancelling()
        try:
            await step()
        except expected_errors as error:
            if failures == 0:
                first_failure_monotonic = time.monotonic()
                logger.warning("%s failed (%s: %s); retrying", what, type(error).__name__, error)
            failures += 1
        except Exception:
            failures += 1
            logger.exception("%s failed; retrying", what)
        else:
            if failures:
                logger.info(
                    "%s works again after %d failures in %.1f s",
                    what,
                    failures,
                    time.monotonic() - first_failure_monotonic,
                )
            failures = 0
            retry_secs = RETRY_INITIAL_SECS
            await asyncio.sleep(interval_secs)
            continue
        await asyncio.sleep(min(retry_secs, interval_secs))
        retry_secs *= 2
