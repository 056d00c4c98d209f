"""The gauges sampled from the store: the inbox depth, and dead and unhandled events by route
(every replica sees the same store, so each reports the same figures). The receiver samples
them when ``/metrics`` is scraped; ``callbacks dispatch --listen``, whose listener runs on
another thread than the store's loop, every few seconds (:func:`keep_sampling`)."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import Gauge

from callbacks import metrics
from callbacks.errors import StoreUnavailable
from callbacks.store.base import WorkQueue

_GAUGES: dict[str, Gauge] = {
    "dead": metrics.DEAD_EVENTS,
    "unhandled": metrics.UNHANDLED_EVENTS,
}
_reported: set[tuple[str, str]] = set()


async def sample_store_gauges(store: WorkQueue) -> None:
    """Set every gauge from the store's counts; a route whose count fell to none reads 0.
    Raises StoreUnavailable when the store cannot say (the gauges keep their last figures)."""
    metrics.INBOX_DEPTH.set(await store.inbox_depth())
    counts = await store.waiting_for_operator()
    for route, status in _reported - counts.keys():
        _GAUGES[status].labels(route).set(0)
    for (route, status), count in counts.items():
        if status in _GAUGES:
            _GAUGES[status].labels(route).set(count)
            _reported.add((route, status))


async def keep_sampling(store: WorkQueue, interval: float) -> None:
    """Sample every gauge every ``interval`` seconds until cancelled; a failing store leaves
    the last figures (the dispatcher's own backoff and /readyz tell about the outage)."""
    while True:
        with contextlib.suppress(StoreUnavailable):
            await sample_store_gauges(store)
        await asyncio.sleep(interval)
