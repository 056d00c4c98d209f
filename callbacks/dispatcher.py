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
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog

from callbacks import metrics
from callbacks.config import DispatchConfig, RouteConfig
from callbacks.events import Envelope, Event, build_event
from callbacks.handlers import Handlers, Registration
from callbacks.store import EventStatus, Outcome, Store, StoredEvent, StoreUnavailable

log = structlog.get_logger("avatar_callbacks.dispatch")
_ERROR_TEXT_LIMIT = 300
_CLAIM_PER_SLOT = 16  # events claimed per round for each concurrent handler slot


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
        store: Store,
        handlers: Handlers,
        routes: Mapping[str, RouteConfig],
        config: DispatchConfig,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.handlers = handlers
        self.routes = routes
        self.config = config
        self.clock = clock
        self.rng = rng
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Something was stored: look now instead of at the next poll."""
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

    async def _run(self) -> None:
        while not self._stopping:
            try:
                handled = await self.run_once()
            except StoreUnavailable as exc:
                log.warning("dispatch_store_unavailable", error=str(exc))
                handled = 0
            except Exception:
                log.exception("dispatch_round_failed")
                handled = 0
            if handled or self._stopping:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_interval)

    async def run_once(self) -> int:
        """Claim one batch of due events, deliver it, and write every outcome back at once.

        One write per round rather than per event keeps the dispatcher ahead of the intake
        under load: the rounds share the store's group commits with the incoming callbacks.
        """
        events = await self.store.claim(
            owner=self.owner,
            now=self.clock(),
            limit=self.config.concurrency * _CLAIM_PER_SLOT,
            lease_seconds=self.config.lease_seconds,
        )
        if not events:
            return 0
        limit = asyncio.Semaphore(self.config.concurrency)

        async def one(stored: StoredEvent) -> tuple[str, Outcome]:
            async with limit:
                return stored.id, await self.deliver(stored)

        outcomes = await asyncio.gather(*(one(e) for e in events))
        finished = await self.store.finish_many(outcomes, owner=self.owner)
        if finished < len(outcomes):
            log.warning("dispatch_claims_lost", lost=len(outcomes) - finished)
        for event_id, outcome in outcomes:
            if outcome.status == "dead":
                log.error("event_dead", delivery_id=event_id, attempts=outcome.attempts)
        return len(events)

    async def deliver(self, stored: StoredEvent) -> Outcome:
        """Run the handlers that have not yet succeeded for one event; returns its new state."""
        event = self._event(stored)
        state: dict[str, Any] = {k: dict(v) for k, v in stored.handler_state.items()}
        attempt = stored.attempts + 1
        if attempt == 1:
            metrics.DISPATCH_LAG.observe(max(self.clock() - stored.received_at, 0.0))
        last_error: str | None = None
        for registration in self.handlers.for_event(event):
            previous = state.get(registration.name, {})
            if previous.get("status") in ("ok", "dead"):
                continue
            error = await self._call(registration, event, attempt)
            tries = int(previous.get("attempts", 0)) + 1
            if error is None:
                outcome = "ok"
                state[registration.name] = {"status": outcome, "attempts": tries}
            else:
                outcome = "dead" if tries >= self.config.max_attempts else "failed"
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

    async def _call(self, registration: Registration, event: Event, attempt: int) -> str | None:
        """Run one handler; returns a short error text, or None on success. Never raises."""
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
        else:
            error = error_type = None
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
        return error

    def _event(self, stored: StoredEvent) -> Event:
        raw = orjson.loads(stored.body)
        route = self.routes.get(stored.route)
        if route is None:  # the route was removed from the config since: catch-alls still run
            return Event(
                delivery_id=stored.id,
                route=stored.route,
                provider=stored.provider,
                key_id=stored.key_id,
                received_at=stored.received_at,
                raw=raw,
            )
        envelope = Envelope(stored.id, route, stored.key_id, stored.received_at)
        return build_event(envelope, raw)


def _is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    )
