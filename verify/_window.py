"""The timestamp window both platforms' signatures share."""

from __future__ import annotations

import time
from collections.abc import Callable

from verify._errors import TimestampExpired, TimestampInFuture

Clock = Callable[[], float]
"""Returns the current Unix time in seconds. Injectable so tests and replays can fix the time."""

DEFAULT_MAX_AGE = 300
DEFAULT_MAX_FUTURE_SKEW = 300


def check_window(
    timestamp: int,
    *,
    clock: Clock = time.time,
    max_age: int = DEFAULT_MAX_AGE,
    max_future_skew: int = DEFAULT_MAX_FUTURE_SKEW,
) -> int:
    """Raise unless ``timestamp`` is at most ``max_age`` s old and ``max_future_skew`` s ahead.

    Both bounds are inclusive: an age of exactly ``max_age`` passes. Returns ``now`` (whole
    seconds) so callers can report the observed skew.
    """
    now = int(clock())
    if now - timestamp > max_age:
        raise TimestampExpired(timestamp=timestamp, now=now, max_age=max_age)
    if timestamp - now > max_future_skew:
        raise TimestampInFuture(timestamp=timestamp, now=now, max_future_skew=max_future_skew)
    return now
