"""The quality controller that picks each viewer's layer from their RTCP reports."""

from __future__ import annotations

from signaling.encoding import Quality
from signaling.quality import QualityController, QualityThresholds

# RTCP units: 256ths of packets lost, and 90 kHz ticks of jitter
LOSS_20_PERCENT = 51
LOSS_5_PERCENT = 13
JITTER_5_MS = 450
JITTER_100_MS = 9_000


def test_quality_moves_down_on_heavy_loss() -> None:
    controller = QualityController(Quality.HIGH, started=0.0)
    assert controller.receiver_report(1.0, LOSS_20_PERCENT, JITTER_5_MS) is Quality.LOW
    assert controller.quality is Quality.LOW
    assert controller.receiver_report(2.0, LOSS_20_PERCENT, JITTER_5_MS) is None


def test_quality_moderate_loss_needs_two_reports() -> None:
    """Guards against one unlucky report moving a viewer down."""
    controller = QualityController(Quality.HIGH, started=0.0)
    assert controller.receiver_report(1.0, LOSS_5_PERCENT, JITTER_5_MS) is None
    assert controller.receiver_report(2.0, 0, JITTER_5_MS) is None
    assert controller.receiver_report(3.0, LOSS_5_PERCENT, JITTER_5_MS) is None
    assert controller.receiver_report(4.0, 0, JITTER_100_MS) is Quality.LOW


def test_quality_moves_up_after_clean_wait() -> None:
    thresholds = QualityThresholds(up_wait_secs=8.0)
    controller = QualityController(Quality.HIGH, started=0.0, thresholds=thresholds)
    controller.receiver_report(1.0, LOSS_20_PERCENT, JITTER_5_MS)
    for second in range(2, 9):
        assert controller.receiver_report(float(second), 0, JITTER_5_MS) is None
    assert controller.receiver_report(9.0, 0, JITTER_5_MS) is Quality.HIGH
    assert (controller.moves_down, controller.moves_up) == (1, 1)


def test_quality_failed_move_up_doubles_wait() -> None:
    """Guards against a viewer whose link is just too slow for the high layer going
    back and forth every few seconds."""
    thresholds = QualityThresholds(up_wait_secs=4.0, up_wait_max_secs=16.0)
    controller = QualityController(Quality.HIGH, started=0.0, thresholds=thresholds)
    now = 1.0
    waits = []
    for _ in range(4):
        assert controller.receiver_report(now, LOSS_20_PERCENT, JITTER_5_MS) is Quality.LOW
        down_at = now
        while controller.receiver_report(now + 1.0, 0, JITTER_5_MS) is None:
            now += 1.0
        now += 1.0
        waits.append(now - down_at)
        now += 1.0
    assert waits == [4.0, 8.0, 16.0, 16.0]


def test_quality_low_start_waits_before_first_move_up() -> None:
    controller = QualityController(
        Quality.LOW, started=10.0, thresholds=QualityThresholds(up_wait_secs=5.0)
    )
    assert controller.receiver_report(11.0, 0, JITTER_5_MS) is None
    assert controller.receiver_report(15.0, 0, JITTER_5_MS) is Quality.HIGH


def test_quality_low_bandwidth_estimate_moves_down() -> None:
    controller = QualityController(Quality.HIGH, started=0.0)
    assert controller.bandwidth_estimate(1.0, 300_000, layer_bit_rate=500_000) is None
    assert controller.bandwidth_estimate(2.0, 450_000, layer_bit_rate=500_000) is None
    assert controller.bandwidth_estimate(3.0, 300_000, layer_bit_rate=500_000) is None
    assert controller.bandwidth_estimate(4.0, 300_000, layer_bit_rate=500_000) is Quality.LOW


def test_quality_estimate_without_traffic_is_ignored() -> None:
    controller = QualityController(Quality.HIGH, started=0.0)
    for second in range(5):
        assert controller.bandwidth_estimate(float(second), 10_000, layer_bit_rate=0.0) is None
    assert controller.quality is Quality.HIGH
