"""The intake: where a verified callback becomes a stored event and is handed to the dispatcher.

The receiver authenticates and parses; everything from here on is the intake's: the delivery id,
the event type and the dedupe key (:func:`inbound_callback`), then the durable write and the hand
over (:meth:`Intake.accept`). How the dispatcher takes an event over (stored already leased to it,
delivered without being read back) is between the dispatcher and the store: the intake only passes
the dispatcher's lease along.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

from callbacks import metrics
from callbacks.config import RouteConfig
from callbacks.dedupe import dedupe_key
from callbacks.dispatcher import Dispatcher
from callbacks.errors import StoreUnavailable
from callbacks.events import event_class
from callbacks.shared_timeout import SharedTimeout
from callbacks.store.base import Accepted, InboundCallback, Inbox, new_delivery_id


def inbound_callback(
    route: RouteConfig,
    raw: Mapping[str, Any],
    body: bytes,
    *,
    key_id: str | None,
    received_at: float,
) -> InboundCallback:
    """The record the store keeps for a verified ``body`` (parsed as ``raw``) on ``route``."""
    return InboundCallback(
        delivery_id=new_delivery_id(received_at),
        route=route.name,
        provider=route.provider,
        event_type=event_class(route, raw).__name__,
        dedupe_key=dedupe_key(route, raw),
        key_id=key_id,
        received_at=received_at,
        body=body,
    )


class Intake:
    """Stores callbacks durably and hands the new ones to this process's dispatcher, if any.

    ``write_timeout`` (seconds; None: no limit) bounds each write: past it the callback is
    answered 503 so the platform retries while it still waits for an answer. The write may still
    commit afterwards; the retry is then stored as its duplicate, and the event is delivered
    from the store like any other.
    """

    def __init__(
        self, store: Inbox, dispatcher: Dispatcher | None, *, write_timeout: float | None = None
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.write_timeout = write_timeout
        self._bound_write = None if write_timeout is None else SharedTimeout(write_timeout)
        self.writes = WriteHealth()

    async def accept(
        self, callback: InboundCallback, route: RouteConfig, raw: dict[str, Any]
    ) -> Accepted:
        """Return once ``callback`` is committed (a duplicate is stored as one and not handed
        over). Raises :class:`StoreUnavailable` when the store cannot take it."""
        dispatcher = self.dispatcher
        lease = None if dispatcher is None else dispatcher.lease()
        started = time.perf_counter()
        try:
            async with nullcontext() if self._bound_write is None else self._bound_write():
                accepted = await self.store.accept(callback, lease)
        except TimeoutError:
            self.writes.failed()
            raise StoreUnavailable(
                f"the store did not commit the callback within {self.write_timeout} s"
            ) from None
        except StoreUnavailable:
            self.writes.failed()
            raise
        self.writes.succeeded()
        metrics.STORE_WRITE_LATENCY.observe(time.perf_counter() - started)
        if dispatcher is not None and accepted.duplicate_of is None:
            dispatcher.take(callback, route, raw, lease)
        return accepted


class WriteHealth:
    """Whether the last write of a callback failed (disk full, read-only database, a lock held
    elsewhere...), for ``/readyz``.

    A failure counts for :attr:`hold` seconds unless a write succeeds first. It has to lapse on
    its own: a replica reported unready gets no traffic, so no write could ever clear it; once
    it lapses, traffic returns and the next write tells again.
    """

    hold = 15.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._failed_at: float | None = None

    def failed(self) -> None:
        self._failed_at = self._clock()

    def succeeded(self) -> None:
        self._failed_at = None

    @property
    def failing(self) -> bool:
        failed_at = self._failed_at
        return failed_at is not None and self._clock() - failed_at < self.hold
