"""The background task of each server process that passes unanswered requests on once
their time is up and sends the e-mails still pending.

Every process runs one. The conditional updates of the service and the outbox make
sure that each request is passed on once and each e-mail sent once, whichever
process gets there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time

from mentoring.mail import EmailOutbox
from mentoring.service import MentoringService

logger = logging.getLogger(__name__)

# A sweep that raised is followed by a pause of at least this long, so that a
# database outage does not fill the log with one error per interval of a few ms.
FAILURE_PAUSE_SECS = 5.0


class SweeperState(enum.StrEnum):
    """stopped -> running -> stopping -> stopped."""

    STOPPED = "stopped"
    RUNNING = "running"
    STOPPING = "stopping"


class TimeoutSweeper:
    """Runs `run_due_timeouts` and `deliver_due` every `interval_secs`.

    Supervised: an error in one sweep is logged, and the next sweep runs after the
    interval or FAILURE_PAUSE_SECS, whichever is longer. A loop that ends unexpectedly
    is logged and started again.
    """

    def __init__(
        self, service: MentoringService, outbox: EmailOutbox, interval_secs: float
    ) -> None:
        if interval_secs <= 0:
            raise ValueError(f"sweep interval must be positive, not {interval_secs}")
        self.service = service
        self.outbox = outbox
        self.interval_secs = interval_secs
        self.state = SweeperState.STOPPED
        # Sweeps finished, and those among them that raised.
        self.sweeps = 0
        self.failures = 0
        self._swept = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        if self.state is not SweeperState.STOPPED:
            raise RuntimeError(f"sweeper start in state {self.state}, expected stopped")
        self.state = SweeperState.RUNNING
        self._spawn()
        logger.info("mentoring sweeper started, interval %.1f s", self.interval_secs)

    def _spawn(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="mentoring-sweeper")
        self._task.add_done_callback(self._on_loop_done)

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        if self.state is not SweeperState.RUNNING:
            return
        if task.cancelled():
            logger.error("mentoring sweeper was cancelled while running; starting it again")
        else:
            logger.error(
                "mentoring sweeper ended unexpectedly; starting it again",
                exc_info=task.exception(),
            )
        self._spawn()

    def wake(self) -> None:
        """Run the next sweep now instead of at the end of the interval."""
        self._wake.set()

    async def _loop(self) -> None:
        while self.state is SweeperState.RUNNING:
            pause = self.interval_secs
            try:
                await self.sweep()
            except Exception:
                # The next sweep retries: every step is safe to run again.
                logger.exception("mentoring sweep failed")
                self.failures += 1
                pause = max(pause, FAILURE_PAUSE_SECS)
            self.sweeps += 1
            async with self._swept:
                self._swept.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    async def sweep(self) -> None:
        """Pass on the requests past their time, then send the pending e-mails."""
        started = time.monotonic()
        passed = await self.service.run_due_timeouts()
        tried = await self.outbox.deliver_due()
        if passed or tried:
            logger.info(
                "mentoring sweep: %d request(s) passed on, %d e-mail(s) tried in %.2f s",
                passed,
                tried,
                time.monotonic() - started,
            )

    async def wait_for_sweeps(self, count: int) -> None:
        """Wait until `count` sweeps have finished, successful or not."""
        async with self._swept:
            await self._swept.wait_for(lambda: self.sweeps >= count)

    async def stop(self) -> None:
        if self.state is not SweeperState.RUNNING:
            return
        self.state = SweeperState.STOPPING
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.state = SweeperState.STOPPED
        logger.info("mentoring sweeper stopped after %d sweep(s)", self.sweeps)
