"""The gauges sampled from the store when metrics are scraped: dead and unhandled events by route
(every replica sees the same store, so each reports the same figures)."""

from __future__ import annotations

from prometheus_client import Gauge

from callbacks import metrics
from callbacks.store.base import WorkQueue

_GAUGES: dict[str, Gauge] = {
    "dead": metrics.DEAD_EVENTS,
    "unhandled": metrics.UNHANDLED_EVENTS,
}
_reported: set[tuple[str, str]] = set()


async def sample_operator_gauges(store: WorkQueue) -> None:
    """Set the gauges from the store's counts; a route whose count fell to none reads 0."""
    counts = await store.waiting_for_operator()
    for route, status in _reported - counts.keys():
        _GAUGES[status].labels(route).set(0)
    for (route, status), count in counts.items():
        if status in _GAUGES:
            _GAUGES[status].labels(route).set(count)
            _reported.add((route, status))
