"""The keyframe policy of a shared encoder, driven with a made-up clock."""

from __future__ import annotations

import itertools

import pytest

from signaling.keyframes import KeyframePolicy, KeyframeReason, RequestSource

# 30 frames per second
FRAME_SECS = 1 / 30


def frames_until_keyframe(policy: KeyframePolicy, start: float, limit: int = 200) -> int:
    """Count the frames decided from `start` on until one is a keyframe."""
    for index in range(limit):
        if policy.decide(start + index * FRAME_SECS) is not None:
            return index
    raise AssertionError(f"no keyframe in {limit} frames")


def test_keyframe_first_frame_and_periodic() -> None:
    policy = KeyframePolicy()
    assert policy.decide(0.0) is KeyframeReason.FIRST
    decisions = [policy.decide(index * FRAME_SECS) for index in range(1, 200)]
    keyframe_times = [
        index * FRAME_SECS for index, reason in enumerate(decisions, start=1) if reason
    ]
    assert set(filter(None, decisions)) == {KeyframeReason.PERIODIC}
    gaps = [later - earlier for earlier, later in itertools.pairwise([0.0, *keyframe_times])]
    assert all(1.9 <= gap <= 1.9 + FRAME_SECS for gap in gaps)


def test_keyframe_many_loss_reports_at_once_cost_one() -> None:
    """Guards against a burst of picture loss reports from many viewers turning into as
    many keyframes, each one sent to every viewer."""
    policy = KeyframePolicy()
    policy.decide(0.0)
    for viewer in range(50):
        policy.request(1.2 + viewer * 0.001, RequestSource.LOSS_REPORT)
    assert frames_until_keyframe(policy, 1.25) == 0
    assert policy.counts.requested == 1
    assert policy.counts.coalesced == 49

    # reports still on their way when the keyframe went out count as satisfied by it
    for viewer in range(10):
        policy.request(1.3 + viewer * 0.01, RequestSource.LOSS_REPORT)
    assert not policy.is_pending
    assert policy.counts.coalesced == 59


def test_keyframe_request_waits_for_min_interval() -> None:
    """Guards against viewers who join one after the other, each forcing a keyframe."""
    policy = KeyframePolicy()
    policy.decide(0.0)
    policy.request(0.1, RequestSource.CONSUMER)
    assert policy.decide(0.5) is None
    assert policy.is_pending
    assert policy.decide(1.0) is KeyframeReason.REQUESTED
    assert not policy.is_pending


def test_keyframe_consumer_request_right_after_keyframe_is_kept() -> None:
    """Guards against a viewer who joins just after a keyframe and never gets one: only
    loss reports count as satisfied by a keyframe that just went out."""
    policy = KeyframePolicy()
    policy.decide(0.0)
    policy.request(0.05, RequestSource.CONSUMER)
    assert policy.is_pending
    waited = frames_until_keyframe(policy, 0.1) * FRAME_SECS + 0.1
    assert waited <= 1.0 + FRAME_SECS


def test_keyframe_periodic_answers_pending_request() -> None:
    policy = KeyframePolicy(periodic_secs=1.9, request_min_interval_secs=1.0)
    policy.decide(0.0)
    policy.request(1.85, RequestSource.CONSUMER)
    assert policy.decide(1.9) is KeyframeReason.PERIODIC
    assert not policy.is_pending
    assert policy.decide(1.95) is None


def test_keyframe_policy_rejects_interval_above_periodic() -> None:
    with pytest.raises(ValueError, match="request interval <= periodic interval"):
        KeyframePolicy(periodic_secs=1.0, request_min_interval_secs=2.0)
