"""Delivers stored events to the handlers, at least once, each handler isolated from the others.

The dispatcher claims due events from the store (a lease hides them from other dispatchers), runs
every handler that has not yet succeeded, and writes the outcome back:

- all handlers succeeded: ``delivered``;
- some failed and may be retried: stays ``pending``, next attempt after exponential backoff with
  jitter; the handlers that succeeded are not called again;
- a handler failed ``max_attempts`` times: that handler is dead; the event is ``dead`` once no
  handler is left to retry (``callbacks events replay`` re-queues it).

Because state is written after the handlers ran, a process killed mid-handler redelivers that event
after restart: handlers get the stable ``delivery_id`` to make their side effects idempotent.

Events come two ways. A callback this process just accepted is *handed over*: the intake stores
it already leased to this dispatcher (see :meth:`Dispatcher.lease`) and passes the parsed body
along (:meth:`Dispatcher.take`), so it is delivered without reading it back from the store.
Everything else (retries, events whose process died, events accepted while the hand-over queue
was full) is *claimed* from the store in rounds, when woken and at least every ``poll_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import structlog

from callbacks import metrics
from callbacks.config import DispatchConfig, RouteConfig
from callbacks.confirm.seam import ConfirmationSeam
from callbacks.errors import DeliveryRefused, StoreUnavailable
from callbacks.events import Envelope, Event, build_event, event_from_stored
from callbacks.handlers import Handlers, Registration
from callbacks.store.base import (
    EventStatus,
    InboundCallback,
    Lease,
    Outcome,
    StoredEvent,
    WorkQueue,
)

log = structlog.get_logger("avatar_callbacks.dispatch")
_ERROR_TEXT_LIMIT = 300
_CLAIM_PER_SLOT = 16  # events claimed per round for each concurrent handler slot
_HANDOVER_ROUNDS = 4  # hand-over queue limit, in rounds: past it, events wait in the store


class Handover(NamedTuple):
    """A callback just accepted, stored leased to this dispatcher until ``until``, with its
    parsed body."""

    callback: InboundCallback
    route: RouteConfig
    raw: dict[str, Any]
    until: float


class _Work(NamedTuple):
    """One event of a round, whichever way it came."""

    id: str
    event: Event
    handler_state: Mapping[str, Any]
    attempts: int
    received_at: float


def backoff_delay(attempt: int, config: DispatchConfig, rng: Callable[[], float]) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped."""
    # 2**64 times the smallest backoff_initial is past any backoff_max; a larger power overflows
    # (attempt counts dispatch rounds, which can outgrow one handler's max_attempts).
    exponent = min(max(attempt - 1, 0), 64)
    base: float = min(config.backoff_max, config.backoff_initial * 2.0**exponent)
    return base / 2 + base / 2 * rng()


class Dispatcher:
    def __init__(
        self,
        store: WorkQueue,
        handlers: Handlers,
        routes: Mapping[str, RouteConfig],
        config: DispatchConfig,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
        gate: ConfirmationSeam | None = None,
    ) -> None:
        self.store = store
        self.gate = gate  # confirmation before delivery (callbacks/confirm/gate.py)
        self.handlers = handlers
        self.routes = routes
        self.config = config
        self.clock = clock
        self.rng = rng
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = asyncio.Event()
        self._claim_wanted = True  # the store may hold due events: claim a round
        self._handed: deque[Handover] = deque()
        self._round_size = config.concurrency * _CLAIM_PER_SLOT
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def lease(self) -> Lease | None:
        """A lease for a callback about to be stored and handed over, or None when the queue is
        full (the event then waits in the store for a claim round)."""
        if self._stopping or len(self._handed) >= self._round_size * _HANDOVER_ROUNDS:
            return None
        return Lease(self.owner, self.clock() + self.config.lease_seconds)

    def take(
        self,
        callback: InboundCallback,
        route: RouteConfig,
        raw: dict[str, Any],
        lease: Lease | None,
    ) -> None:
        """A callback just stored: deliver it without reading it back if it was stored under
        :meth:`lease`'s ``lease``; without one, a claim round finds it (now, not at the next poll).
        """
        if lease is None:
            self._claim_wanted = True
        else:
            self._handed.append(Handover(callback, route, raw, lease.until))
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="avatar-callbacks-dispatcher")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            # Let the round in progress finish: its handlers ran, their outcome must be written.
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._release_handed()

    async def _run(self) -> None:
        next_claim = 0.0  # monotonic time of the next claim round without a wake-up
        while not self._stopping:
            try:
                if self._handed:
                    handled = await self.run_handed()
                elif self._claim_wanted or time.monotonic() >= next_claim:
                    self._claim_wanted = False
                    handled = await self.run_once()
                    if not handled:
                        next_claim = time.monotonic() + self.config.poll_interval
                else:
                    handled = 0
            except StoreUnavailable as exc:
                log.warning("dispatch_store_unavailable", error=str(exc))
                handled = 0
            except Exception:
                log.exception("dispatch_round_failed")
                handled = 0
            if handled or self._stopping or self._handed or self._claim_wanted:
                continue
            self._wake.clear()
            timeout = max(next_claim - time.monotonic(), 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def run_once(self) -> int:
        """Claim one round of due events from the store, deliver it, write every outcome back.

        One write per round rather than per event keeps the dispatcher ahead of the intake
        under load: the rounds share the store's group commits with the incoming callbacks.
        """
        events = await self.store.claim(
            owner=self.owner,
            now=self.clock(),
            limit=self._round_size,
            lease_seconds=self.config.lease_seconds,
        )
        if not events:
            return 0
        await self._deliver_round([self._work(e) for e in events])
        return len(events)

    async def run_handed(self) -> int:
        """Deliver one round of handed-over events."""
        now = self.clock()
        work: list[_Work] = []
        while self._handed and len(work) < self._round_size:
            callback, route, raw, until = self._handed.popleft()
            if until <= now:
                self._claim_wanted = True  # its lease lapsed: a claim round takes it, once
                continue
            envelope = Envelope(callback.delivery_id, route, callback.key_id, callback.received_at)
            event = build_event(envelope, raw)
            work.append(_Work(callback.delivery_id, event, {}, 0, callback.received_at))
        if work:
            await self._deliver_round(work)
        return len(work)

    async def _deliver_round(self, work: Sequence[_Work]) -> None:
        limit = asyncio.Semaphore(self.config.concurrency)

        async def one(item: _Work, due: list[Registration]) -> tuple[str, Outcome]:
            async with limit:
                return item.id, await self._deliver(item, due)

        outcomes: list[tuple[str, Outcome]] = []
        if self.gate is not None:
            work = await self._confirmed(work, outcomes)
        # Events no handler waits for are settled inline: a task each would cost more than them.
        waiting: list[tuple[_Work, list[Registration]]] = []
        for item in work:
            due = self._handlers_due(item)
            if due:
                waiting.append((item, due))
            else:
                outcomes.append((item.id, await self._deliver(item, due)))
        outcomes += await asyncio.gather(*(one(item, due) for item, due in waiting))
        finished = await self.store.finish_many(outcomes, owner=self.owner)
        if finished < len(outcomes):
            log.warning("dispatch_claims_lost", lost=len(outcomes) - finished)
        for event_id, outcome in outcomes:
            if outcome.status == "dead":
                log.error("event_dead", delivery_id=event_id, attempts=outcome.attempts)

    async def _confirmed(
        self, work: Sequence[_Work], outcomes: list[tuple[str, Outcome]]
    ) -> list[_Work]:
        """The round's events the platform confirms, with its job details on them; the others'
        outcomes (refuted, or pending until the platform can say) are added to ``outcomes``."""
        assert self.gate is not None
        gate = self.gate
        asked = [item for item in work if gate.applies(item.event.route)]
        verdicts = await asyncio.gather(*(gate.screen(item.event) for item in asked))
        verdict_of = {item.id: v for item, v in zip(asked, verdicts, strict=True)}
        kept: list[_Work] = []
        now = self.clock()
        for item in work:
            v = verdict_of.get(item.id)
            if v is None or v.action == "deliver":
                if v is not None and v.details is not None:
                    item = item._replace(
                        event=dataclasses.replace(item.event, job_details=v.details)
                    )
                kept.append(item)
            elif v.action == "refute":
                error = f"refuted: {v.reason}"
                outcomes.append(
                    (item.id, Outcome("refuted", item.attempts, now, item.handler_state, error))
                )
            else:
                rounds = item.attempts + 1
                next_at = now + backoff_delay(rounds, self.config, self.rng)
                error = f"awaiting confirmation: {v.reason}"
                outcomes.append(
                    (item.id, Outcome("pending", rounds, next_at, item.handler_state, error))
                )
        return kept

    async def _release_handed(self) -> None:
        """At stop: give the store back the leases of handed-over events not yet delivered."""
        if not self._handed:
            return
        now = self.clock()
        pending = Outcome("pending", 0, now, {}, None)
        outcomes = [(h.callback.delivery_id, pending) for h in self._handed]
        self._handed.clear()
        with contextlib.suppress(StoreUnavailable):  # the leases then lapse on their own
            await self.store.finish_many(outcomes, owner=self.owner)

    def _handlers_due(self, item: _Work) -> list[Registration]:
        """The event's handlers that have not yet succeeded or died."""
        return [
            r
            for r in self.handlers.for_event(item.event)
            if item.handler_state.get(r.name, {}).get("status") not in ("ok", "dead")
        ]

    async def _deliver(self, item: _Work, due: list[Registration]) -> Outcome:
        """Run the handlers ``due`` for one event; returns its new state."""
        event = item.event
        state: dict[str, Any] = {k: dict(v) for k, v in item.handler_state.items()}
        attempt = item.attempts + 1
        if attempt == 1:
            metrics.DISPATCH_LAG.observe(max(self.clock() - item.received_at, 0.0))
        last_error: str | None = None
        for registration in due:
            previous = state.get(registration.name, {})
            error, refused = await self._call(registration, event, attempt)
            tries = int(previous.get("attempts", 0)) + 1
            if error is None:
                outcome = "ok"
                state[registration.name] = {"status": outcome, "attempts": tries}
            else:
                outcome = "dead" if refused or tries >= self.config.max_attempts else "failed"
                last_error = f"{registration.name}: {error}"
                state[registration.name] = {"status": outcome, "attempts": tries, "error": error}
            metrics.HANDLER_ATTEMPTS.labels(registration.name, outcome).inc()
        return self._outcome(state, attempt, last_error)

    def _outcome(self, state: Mapping[str, Any], attempt: int, error: str | None) -> Outcome:
        statuses = {s["status"] for s in state.values()}
        now = self.clock()
        status: EventStatus
        if "failed" in statuses:
            status, next_at = "pending", now + backoff_delay(attempt, self.config, self.rng)
        elif "dead" in statuses:
            status, next_at = "dead", now
        else:
            status, next_at = "delivered", now
        return Outcome(status, attempt, next_at, state, error)

    async def _call(
        self, registration: Registration, event: Event, attempt: int
    ) -> tuple[str | None, bool]:
        """Run one handler; returns a short error text (None on success) and whether the
        handler refused for good (:class:`DeliveryRefused`: no retry). Never raises."""
        started = time.perf_counter()
        try:
            func = registration.func
            if _is_async(func):
                await func(event)  # type: ignore[misc]
            else:
                result = await asyncio.to_thread(func, event)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            error: str | None = f"{type(exc).__name__}: {exc}"[:_ERROR_TEXT_LIMIT]
            error_type: str | None = type(exc).__name__
            refused = isinstance(exc, DeliveryRefused)
        else:
            error = error_type = None
            refused = False
        (log.info if error is None else log.warning)(
            "handler_attempt",
            handler=registration.name,
            delivery_id=event.delivery_id,
            route=event.route,
            event_type=event.event_type,
            attempt=attempt,
            outcome="ok" if error is None else "failed",
            error_type=error_type,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return error, refused

    def _work(self, stored: StoredEvent) -> _Work:
        """A claimed event as a round's work item."""
        return _Work(
            stored.id,
            event_from_stored(stored, self.routes.get(stored.route)),
            stored.handler_state,
            stored.attempts,
            stored.received_at,
        )


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    )
