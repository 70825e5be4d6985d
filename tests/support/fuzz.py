"""Hypothesis profiles of the property tests of client input, and the example counts
that follow them.

`VEILLEE_FUZZ=long` selects the long mode: every test marked `fuzz` runs
LONG_EXAMPLES examples (or VEILLEE_FUZZ_EXAMPLES) with no deadline and fresh random
inputs on each run. Without it, each test runs its own small count, sized so that the
default run stays fast.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection

FUZZ_ENV = "VEILLEE_FUZZ"
# Sets the long mode's examples per test, for a run shorter or longer than the default.
EXAMPLES_ENV = "VEILLEE_FUZZ_EXAMPLES"
LONG_PROFILE = "long"
DEFAULT_PROFILE = "veillee"
# The long mode's examples per test: enough to reach rare shapes (a surrogate inside
# a JSON escape, a number of 4,301 digits) that a few hundred examples often miss.
LONG_EXAMPLES = 10_000
# Examples per test of the default run when a test sets no count of its own.
DEFAULT_EXAMPLES = 150

# Fixtures that start the application once per module are shared by every example on
# purpose: what one example stores must not break the next one.
_SHARED_FIXTURE_CHECKS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def long_mode() -> bool:
    """Return whether the run asked for the long mode."""
    return os.environ.get(FUZZ_ENV, "").strip().lower() == LONG_PROFILE


def long_examples() -> int:
    """Return the long mode's examples per test: EXAMPLES_ENV, else LONG_EXAMPLES.

    Raise ValueError when EXAMPLES_ENV is set to anything but a positive integer.
    """
    raw = os.environ.get(EXAMPLES_ENV, "").strip()
    if not raw:
        return LONG_EXAMPLES
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{EXAMPLES_ENV}={raw!r} is invalid: use a positive integer")
    return int(raw)


def register_profiles() -> None:
    """Register both profiles and load the one that FUZZ_ENV selects.

    Raise ValueError for an unknown value, so that a typo does not silently run the
    short mode.
    """
    raw = os.environ.get(FUZZ_ENV, "").strip().lower()
    if raw not in {"", "default", LONG_PROFILE}:
        raise ValueError(f"{FUZZ_ENV}={raw!r} is invalid: use 'long' or leave it unset")
    settings.register_profile(
        DEFAULT_PROFILE,
        max_examples=DEFAULT_EXAMPLES,
        suppress_health_check=_SHARED_FIXTURE_CHECKS,
    )
    settings.register_profile(
        LONG_PROFILE,
        max_examples=long_examples(),
        deadline=None,
        derandomize=False,
        suppress_health_check=_SHARED_FIXTURE_CHECKS,
    )
    settings.load_profile(LONG_PROFILE if long_mode() else DEFAULT_PROFILE)


def fuzz_examples(default: int) -> int:
    """Return the examples a test runs: `default`, or the long mode's count."""
    return long_examples() if long_mode() else default


# Any string Python's JSON parser can produce, unpaired surrogates included (from
# escapes such as "\ud800"), and NUL.
any_string = st.text(st.characters(codec=None), max_size=80)
# Any JSON value, with integers beyond 64 bits and floats that JSON cannot write (NaN).
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(),
        any_string,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(any_string, children, max_size=4)
    ),
    max_leaves=12,
)


def stays_on_site(location: str) -> bool:
    """Return whether a browser following `location` stays on this site. Browsers drop
    tabs and line breaks from URLs and read a backslash as a slash (WHATWG URL)."""
    seen = re.sub(r"[\t\n\r]", "", location).replace("\\", "/")
    return seen.startswith("/") and not seen.startswith("//")


def receive_object(connection: ClientConnection, timeout_secs: float) -> dict[str, Any]:
    """Receive one frame of a socket under test and return the JSON object it carries."""
    frame = json.loads(connection.recv(timeout=timeout_secs))
    assert isinstance(frame, dict), frame
    return frame
