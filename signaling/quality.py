"""The choice of each viewer's video layer, from what their receiver reports over RTCP.

A viewer moves down when their receiver reports loss, growing jitter or a bandwidth
estimate (REMB) below what the layer sends, and back up once their reports have been
clean for a while. The wait before moving up doubles each time a move up fails soon
after, so that a viewer on a link just too slow for the high layer does not go back
and forth. Up-moves cannot rest on REMB: a receiver's estimate follows the rate it
receives, so on the low layer it never shows room for the high one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from signaling.encoding import Quality

logger = logging.getLogger(__name__)

# RTCP expresses the fraction lost as a count of 256ths.
FRACTION_LOST_DENOMINATOR = 256
# RTCP's jitter for video counts ticks of its 90 kHz clock.
VIDEO_CLOCK_RATE = 90_000


@dataclass(frozen=True)
class QualityThresholds:
    """Limits of the quality controller; tests shorten the waits."""

    # One report with this share of packets lost moves the viewer down at once: the
    # picture breaks up until the next keyframe far more often than NACKs can repair.
    down_loss: float = 0.10
    # Two reports in a row at or above this loss, or this jitter, move the viewer down.
    # 80 ms of jitter means packets wait in a queue that keeps growing.
    poor_loss: float = 0.03
    poor_jitter_secs: float = 0.08
    poor_reports_to_move_down: int = 2
    # A report is clean below this loss and this jitter.
    clean_loss: float = 0.01
    clean_jitter_secs: float = 0.03
    # A bandwidth estimate below this share of what the current layer sends is poor.
    remb_poor_ratio: float = 0.8
    # Clean reports are needed for this long before a move up. The wait doubles, up to
    # the maximum, when a move down follows a move up within `failed_up_window_secs`.
    up_wait_secs: float = 8.0
    up_wait_max_secs: float = 64.0
    failed_up_window_secs: float = 15.0


class QualityController:
    """Follows one viewer's reports and decides when their layer should change.

    Times are `time.monotonic()` readings passed by the caller. Each method returns the
    new quality when the viewer should move, None otherwise.
    """

    def __init__(
        self,
        quality: Quality,
        started: float,
        thresholds: QualityThresholds | None = None,
        name: str = "",
    ) -> None:
        self.quality = quality
        self.thresholds = thresholds or QualityThresholds()
        self.name = name
        self.up_wait_secs = self.thresholds.up_wait_secs
        self.moves_down = 0
        self.moves_up = 0
        self._poor_reports = 0
        self._poor_estimates = 0
        # when the last report that was not clean arrived (the start counts as one, so
        # a viewer who starts low waits before a first try up), and when the viewer
        # last moved up
        self._last_unclean = started
        self._last_move_up: float | None = None

    def __repr__(self) -> str:
        return f"QualityController({self.name})"

    def receiver_report(self, now: float, fraction_lost: int, jitter_ticks: int) -> Quality | None:
        """Take one RTCP report block: `fraction_lost` in 256ths, jitter in 90 kHz ticks."""
        loss = fraction_lost / FRACTION_LOST_DENOMINATOR
        jitter_secs = jitter_ticks / VIDEO_CLOCK_RATE
        limits = self.thresholds

        if loss >= limits.down_loss:
            self._last_unclean = now
            return self._move_down(now, f"{loss:.0%} lost")
        if loss >= limits.poor_loss or jitter_secs >= limits.poor_jitter_secs:
            self._last_unclean = now
            self._poor_reports += 1
            if self._poor_reports >= limits.poor_reports_to_move_down:
                return self._move_down(
                    now, f"{loss:.0%} lost, {jitter_secs * 1000:.0f} ms jitter, twice"
                )
            return None
        self._poor_reports = 0
        if loss > limits.clean_loss or jitter_secs >= limits.clean_jitter_secs:
            self._last_unclean = now
            return None
        return self._maybe_move_up(now)

    def bandwidth_estimate(
        self, now: float, estimate_bit_rate: int, layer_bit_rate: float
    ) -> Quality | None:
        """Take one REMB: the receiver's estimate against what its layer sends now."""
        if layer_bit_rate <= 0 or estimate_bit_rate >= self.thresholds.remb_poor_ratio * (
            layer_bit_rate
        ):
            self._poor_estimates = 0
            return None
        self._last_unclean = now
        self._poor_estimates += 1
        if self._poor_estimates >= self.thresholds.poor_reports_to_move_down:
            return self._move_down(
                now,
                f"estimate {estimate_bit_rate // 1000} kbit/s for "
                f"{layer_bit_rate / 1000:.0f} kbit/s sent, twice",
            )
        return None

    def _move_down(self, now: float, why: str) -> Quality | None:
        self._poor_reports = 0
        self._poor_estimates = 0
        if self.quality is Quality.LOW:
            return None
        if (
            self._last_move_up is not None
            and now - self._last_move_up < self.thresholds.failed_up_window_secs
        ):
            self.up_wait_secs = min(self.up_wait_secs * 2, self.thresholds.up_wait_max_secs)
        self.quality = Quality.LOW
        self.moves_down += 1
        logger.info(
            "%r: high -> low (%s); next try up after %.0f s clean", self, why, self.up_wait_secs
        )
        return self.quality

    def _maybe_move_up(self, now: float) -> Quality | None:
        if self.quality is Quality.HIGH:
            if (
                self._last_move_up is not None
                and now - self._last_move_up >= self.thresholds.up_wait_max_secs
            ):
                # a long stay on the high layer resets the wait of failed tries
                self.up_wait_secs = self.thresholds.up_wait_secs
            return None
        if now - self._last_unclean < self.up_wait_secs:
            return None
        self.quality = Quality.HIGH
        self.moves_up += 1
        self._last_move_up = now
        logger.info("%r: low -> high after %.0f s of clean reports", self, self.up_wait_secs)
        return self.quality
