"""The store as the dispatcher sees it: working, or failing since some moment.

A store that fails fast (a read-only database, a full disk) must not turn the dispatcher into a
loop of failed queries and log lines: after a failure every store call of the dispatcher waits
until :attr:`StoreOutage.retry_at`, which backs off exponentially (capped, jittered), and the log
gets one line when the outage starts and one, with the count of failures, when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from callbacks.dispatch.backoff import jittered_backoff

log = structlog.get_logger("avatar_callbacks.dispatch")


class StoreOutage:
    def __init__(self, initial: float, cap: float, rng: Callable[[], float]) -> None:
        self.initial = initial
        self.cap = cap
        self.rng = rng
        self.failures = 0
        self.retry_at = 0.0  # monotonic: no store call before this
        self._since = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def wait_time(self) -> float:
        """Seconds until the store may be tried again (0: now)."""
        return max(self.retry_at - time.monotonic(), 0.0)

    def failed(self, exc: BaseException, action: str) -> float:
        """A store call (``action``: claim, finish, renew) failed; returns the seconds to wait."""
        now = time.monotonic()
        self.failures += 1
        delay = jittered_backoff(self.failures, self.initial, self.cap, self.rng)
        self.retry_at = now + delay
        if self.failures == 1:
            self._since = now
            log.warning(
                "dispatch_store_unavailable",
                action=action,
                error=str(exc),
                retrying_in_s=round(delay, 3),
            )
        return delay

    def succeeded(self) -> None:
        if not self.failures:
            return
        log.warning(
            "dispatch_store_recovered",
            failures=self.failures,
            outage_s=round(time.monotonic() - self._since, 3),
        )
        self.failures = 0
        self.retry_at = 0.0
