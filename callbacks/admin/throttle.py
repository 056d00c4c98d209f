"""Failed sign-ins, counted per client address: past ``limit`` in ``window`` seconds, that
address is refused (429 with Retry-After) until its oldest failure in the window ages out.

Tokens are long random strings, so guessing one is hopeless anyway; the limit keeps a script
from trying, keeps the log quiet, and shows up in a metric. A blocked address is refused before
its token is even looked at, so a right guess while blocked gains nothing. Memory is bounded:
past ``max_clients`` addresses, the one seen longest ago is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict, deque

LIMIT = 10
WINDOW_SECONDS = 60.0
MAX_CLIENTS = 10_000


class FailedSignIns:
    def __init__(
        self,
        *,
        limit: int = LIMIT,
        window: float = WINDOW_SECONDS,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        failures = self._recent(client, now)
        if failures is None or len(failures) < self.limit:
            return 0.0
        # Measured from the cut-off ``_recent`` kept the failure by, not as ``oldest + window -
        # now``: that sum can round to 0 for a failure still in the window (1e-130 + 60 == 60),
        # and a blocked address would be told it may try now.
        return min(self.window, failures[0] - (now - self.window))

    def failed(self, client: str, now: float) -> None:
        failures = self._recent(client, now)
        if failures is None:
            failures = self._failures[client] = deque(maxlen=self.limit)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
        failures.append(now)
        self._failures.move_to_end(client)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        failures = self._failures.get(client)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        return failures
