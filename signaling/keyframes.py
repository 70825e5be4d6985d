"""Which frames of a shared encoder become keyframes.

A live's encoder serves every viewer and the recording at once, so its keyframes are
shared too. The clock forces one at least every 2 s, for seeking in the replay and to
bound what a lost packet spoils. A new consumer requests one: a viewer who joins or
changes quality, or the recorder starting. So do viewers' picture loss reports (RTCP
PLI and FIR). Requests are rate-limited, so that many viewers requesting at once cost
one keyframe. A keyframe goes to every viewer of the layer and is several times the
size of a predicted frame (3 to 10 times in the shared encoder's output at 640x360).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# A keyframe is forced on the first frame 1.9 s after the last one, which keeps the gap
# at 2 s or less above 10 frames per second. The recording's writer uses the same
# interval, and the shared encoder feeds the recording.
PERIODIC_KEYFRAME_SECS = 1.9
# Requested keyframes come at most this often. A viewer who joins waits at most this
# long for its first picture (plus one frame), well inside the 2 s a viewer may wait.
REQUEST_MIN_INTERVAL_SECS = 1.0
# A picture loss report that arrives this soon after a keyframe was encoded counts as
# satisfied by it, because the viewer sent it before that keyframe reached them.
# 250 ms covers the round trip of a home connection (20 to 100 ms) with a wide margin.
# A viewer who lost the keyframe itself reports again, and the periodic keyframe
# follows anyway.
LOSS_REPORT_ANSWERED_SECS = 0.25


class KeyframeReason(enum.StrEnum):
    FIRST = "first"
    PERIODIC = "periodic"
    REQUESTED = "requested"


class RequestSource(enum.StrEnum):
    """The origin of a keyframe request: a consumer starting on the layer, or a viewer's
    RTCP picture loss report."""

    CONSUMER = "consumer"
    LOSS_REPORT = "loss_report"


@dataclass
class KeyframeCounts:
    """Counts of the requests and keyframes of one policy since it was created."""

    requests: int = 0
    # requests merged into a keyframe already pending or just encoded
    coalesced: int = 0
    first: int = 0
    periodic: int = 0
    requested: int = 0

    @property
    def keyframes(self) -> int:
        return self.first + self.periodic + self.requested


class KeyframePolicy:
    """Decides, frame by frame, whether the encoder makes a keyframe.

    Times are `time.monotonic()` readings passed in by the caller, so that tests can
    drive the policy with their own clock. Not thread-safe: call it from one thread.
    """

    def __init__(
        self,
        periodic_secs: float = PERIODIC_KEYFRAME_SECS,
        request_min_interval_secs: float = REQUEST_MIN_INTERVAL_SECS,
        loss_report_answered_secs: float = LOSS_REPORT_ANSWERED_SECS,
    ) -> None:
        if not 0 < request_min_interval_secs <= periodic_secs:
            raise ValueError(
                f"expected 0 < request interval <= periodic interval, got "
                f"{request_min_interval_secs} and {periodic_secs}"
            )
        self.periodic_secs = periodic_secs
        self.request_min_interval_secs = request_min_interval_secs
        self.loss_report_answered_secs = loss_report_answered_secs
        self.counts = KeyframeCounts()
        self._last_keyframe: float | None = None
        self._pending = False

    @property
    def is_pending(self) -> bool:
        return self._pending

    def request(self, now: float, source: RequestSource) -> None:
        """Ask for a keyframe as soon as the rate limit allows."""
        self.counts.requests += 1
        just_encoded = (
            self._last_keyframe is not None
            and now - self._last_keyframe < self.loss_report_answered_secs
        )
        if self._pending or (source is RequestSource.LOSS_REPORT and just_encoded):
            self.counts.coalesced += 1
            return
        self._pending = True

    def decide(self, now: float) -> KeyframeReason | None:
        """Return why the frame encoded at `now` must be a keyframe, or None."""
        reason: KeyframeReason | None = None
        if self._last_keyframe is None:
            reason = KeyframeReason.FIRST
        elif now - self._last_keyframe >= self.periodic_secs:
            reason = KeyframeReason.PERIODIC
        elif self._pending and now - self._last_keyframe >= self.request_min_interval_secs:
            reason = KeyframeReason.REQUESTED
        if reason is KeyframeReason.FIRST:
            self.counts.first += 1
        elif reason is KeyframeReason.PERIODIC:
            self.counts.periodic += 1
        elif reason is KeyframeReason.REQUESTED:
            self.counts.requested += 1
        if reason is not None:
            self.keyframe_encoded(now)
        return reason

    def keyframe_encoded(self, now: float) -> None:
        """Record a keyframe encoded at `now`, which satisfies every pending request."""
        self._last_keyframe = now
        self._pending = False
