"""Exponential backoff with jitter, for handler retries and for a failing store alike."""

from __future__ import annotations

from collections.abc import Callable


def jittered_backoff(attempt: int, initial: float, cap: float, rng: Callable[[], float]) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped.

    Attempt 1 waits ``initial`` at most; each later one doubles it, up to ``cap``.
    """
    # 2**64 times the smallest initial is past any cap; a larger power overflows (attempt
    # counts dispatch rounds, which can outgrow one handler's max_attempts).
    exponent = min(max(attempt - 1, 0), 64)
    base: float = min(cap, initial * 2.0**exponent)
    return base / 2 + base / 2 * rng()
