"""The token bucket of a chat connection's write frames, on a clock the test moves."""

from __future__ import annotations

import pytest

from chat.throttle import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_starts_full() -> None:
    bucket = TokenBucket(3, 1.0, FakeClock())
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(1.0)


def test_bucket_refills_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 4.0, clock)
    bucket.take()
    bucket.take()
    assert bucket.take() == pytest.approx(0.25)
    clock.now += 0.125
    assert bucket.take() == pytest.approx(0.125)
    clock.now += 0.125
    assert bucket.take() == 0.0
    assert bucket.take() > 0


def test_bucket_refill_capped_at_capacity() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, 1.0, clock)
    clock.now += 3600
    assert [bucket.take() for _ in range(2)] == [0.0, 0.0]
    assert bucket.take() > 0


def test_bucket_rejected_take_keeps_tokens() -> None:
    """A rejected frame takes nothing, so a spammer waits no longer than anyone."""
    clock = FakeClock()
    bucket = TokenBucket(1, 1.0, clock)
    bucket.take()
    for _ in range(100):
        assert bucket.take() > 0
    clock.now += 1.0
    assert bucket.take() == 0.0


def test_bucket_clock_going_back_ignored() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, 1.0, clock)
    bucket.take()
    clock.now -= 50
    assert bucket.take() == pytest.approx(1.0)


@pytest.mark.parametrize(("capacity", "rate"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_bucket_invalid_settings_rejected(capacity: int, rate: float) -> None:
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(capacity, rate)
