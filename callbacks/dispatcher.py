"""Delivers stored events to the handlers, at least once, each handler isolated from the others.

The dispatcher holds events under a lease (hidden from other dispatchers), runs every handler
that has not yet succeeded, and writes each event's outcome as soon as that event is done:

- all handlers succeeded: ``delivered``;
- no handler is registered for the event: ``unhandled`` (``callbacks events replay`` delivers it
  once one is);
- some failed and may be retried: stays ``pending``, next attempt after exponential backoff with
  jitter; the handlers that succeeded are not called again;
- a handler failed ``max_attempts`` times, or raised :class:`~callbacks.PermanentError`: that
  handler is dead; the event is ``dead`` once no handler is left to retry, and the
  ``on_dead`` hooks are called once.

A handler call is bounded by ``handler_timeout`` (see :mod:`callbacks.dispatch.calls`); a slow
event holds one of the ``concurrency`` slots and nothing else. While its handlers run, the
event's lease is renewed every third of ``lease_seconds``; an outcome is written only if the
lease is still this dispatcher's (each claim is its own owner token), so a dispatcher that lost
a lease cannot overwrite the outcome of the one that took the event over.

Because state is written after the handlers ran, a process killed mid-handler redelivers that event
after restart: handlers get the stable ``delivery_id`` to make their side effects idempotent.

Events come two ways. A callback this process just accepted is *handed over*: the intake stores
it already leased to this dispatcher (see :meth:`Dispatcher.lease`) and passes the parsed body
along (:meth:`Dispatcher.take`), so it is delivered without reading it back from the store.
Everything else (retries, events whose process died, events accepted while the hand-over queue
was full) is *claimed* from the store, when woken and at least every ``poll_interval``. When the
store fails, claims, renewals and outcome writes wait for it with backoff
(:mod:`callbacks.dispatch.store_outage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, NamedTuple

import structlog

from callbacks import metrics
from callbacks.config import DispatchConfig, RouteConfig
from callbacks.confirm.seam import ConfirmationSeam
from callbacks.dispatch.backoff import jittered_backoff
from callbacks.dispatch.calls import CallResult, call_isolated
from callbacks.dispatch.store_outage import StoreOutage
from callbacks.dispatch.threads import HandlerThreads
from callbacks.errors import StoreUnavailable
from callbacks.events import Envelope, Event, build_event, event_from_stored
from callbacks.handlers import DeadLetter, Handlers, Registration, handler_name
from callbacks.store.base import (
    EventStatus,
    InboundCallback,
    Lease,
    Outcome,
    StoredEvent,
    WorkQueue,
)
from callbacks.store.group_commit import GroupCommit

log = structlog.get_logger("avatar_callbacks.dispatch")
_CLAIM_PER_SLOT = 16  # events held (running or waiting for a slot) per concurrent slot
_HANDOVER_ROUNDS = 4  # hand-over queue limit, in multiples of that; past it events wait in store
_MAX_WRITE_BATCH = 512
_Finished = tuple[str, str, Outcome]  # event id, lease owner, outcome


class Handover(NamedTuple):
    """A callback just accepted, stored leased to this dispatcher until ``until``, with its
    parsed body."""

    callback: InboundCallback
    route: RouteConfig
    raw: dict[str, Any]
    until: float


class _Work(NamedTuple):
    """One event held by this dispatcher, whichever way it came, with the lease it is held under."""

    id: str
    event: Event
    handler_state: Mapping[str, Any]
    attempts: int
    received_at: float
    last_error: str | None
    owner: str


def backoff_delay(attempt: int, config: DispatchConfig, rng: Callable[[], float]) -> float:
    """A handler retry's delay: exponential with "equal jitter", capped at ``backoff_max``."""
    return jittered_backoff(attempt, config.backoff_initial, config.backoff_max, rng)


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
        # Each claim round holds its events under an owner of its own: an event this dispatcher
        # lost and claimed again is then a different lease, and the old run cannot finish it.
        self._claims = itertools.count(1)
        self._handover_owner = f"{self.owner}/h"  # a callback is handed over once, at intake
        self._capacity = config.concurrency * _CLAIM_PER_SLOT
        self._slots = asyncio.Semaphore(config.concurrency)
        self._wake = asyncio.Event()
        self._claim_wanted = True  # the store may hold due events: claim
        self._handed: deque[Handover] = deque()
        self._held: dict[str, str] = {}  # event id -> lease owner, for every event held
        self._finishing: set[str] = set()  # held events whose outcome is being written
        self._lost: set[tuple[str, str]] = set()  # (id, owner) leases found lost while held
        self._tasks: set[asyncio.Task[None]] = set()
        self._threads = HandlerThreads(config.sync_threads)
        self._outage = StoreOutage(config.store_backoff_initial, config.store_backoff_max, rng)
        self._writes: GroupCommit[_Finished, bool] = GroupCommit(
            self._write_outcomes, max_batch=_MAX_WRITE_BATCH, name="dispatch-outcomes"
        )
        self._timeouts = {
            name: r.handler_timeout for name, r in routes.items() if r.handler_timeout
        }
        self._unhandled_types: set[str] = set()
        self._room_wanted = False  # the loop sleeps until held events make room
        self._start_soon = False  # hand-overs are about to be started
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    # -- the intake's side -----------------------------------------------------------------------

    def lease(self) -> Lease | None:
        """A lease for a callback about to be stored and handed over, or None when the queue is
        full (the event then waits in the store for a claim)."""
        if self._stopping or len(self._handed) >= self._capacity * _HANDOVER_ROUNDS:
            return None
        return Lease(self._handover_owner, self.clock() + self.config.lease_seconds)

    def take(
        self,
        callback: InboundCallback,
        route: RouteConfig,
        raw: dict[str, Any],
        lease: Lease | None,
    ) -> None:
        """A callback just stored: deliver it without reading it back if it was stored under
        :meth:`lease`'s ``lease``; without one, a claim finds it (now, not at the next poll).
        """
        if lease is None:
            self._claim_wanted = True
            self._wake.set()
            return
        self._handed.append(Handover(callback, route, raw, lease.until))
        if self._task is not None and not self._start_soon:
            # Started from a callback rather than by waking the loop: every hand-over of one
            # group commit resumes in the same turn of the event loop, and they start together.
            self._start_soon = True
            asyncio.get_running_loop().call_soon(self._start_handed_soon)

    def _start_handed_soon(self) -> None:
        self._start_soon = False
        if not self._stopping:
            self._start_handed()

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        if not len(self.handlers):
            log.warning(
                "no_handlers_configured",
                hint="set [handlers] modules in the config; until then every event is stored "
                "as unhandled (`callbacks events replay --unhandled` delivers them later)",
            )
        self._task = asyncio.create_task(self._run(), name="avatar-callbacks-dispatcher")
        self._heartbeat = asyncio.create_task(self._keep_leases(), name="dispatch-leases")

    @property
    def running(self) -> bool:
        """Started and its loop still going (for a health probe)."""
        return self._task is not None and not self._task.done() and not self._stopping

    @property
    def store_failing(self) -> bool:
        """Its last store operation failed and it is backing off (for a readiness probe)."""
        return self._outage.failing

    async def stop(self) -> None:
        """Stop taking events; events waiting for a slot give their lease back, running ones get
        up to the longest handler timeout to finish (then they are cancelled, and redelivered
        once their lease lapses)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=self._longest_timeout())
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        await self._writes.drain()
        await self._release_handed()
        self._threads.close()

    async def run_once(self) -> int:
        """Claim one round of due events and deliver it; returns when every outcome of the round
        is written (the background loop does not wait: each event is written when done)."""
        count, tasks = await self._claim(self._capacity - len(self._held))
        if tasks:
            await asyncio.gather(*tasks)
        return count

    async def run_handed(self) -> int:
        """Deliver the handed-over events there is room for; returns when they are written."""
        count, tasks = self._start_handed()
        if tasks:
            await asyncio.gather(*tasks)
        return count

    async def renew_leases(self) -> int:
        """Extend the lease of every event held, and of every hand-over waiting to start; returns
        how many held events were found lost."""
        held = [
            (event_id, owner)
            for event_id, owner in self._held.items()
            if event_id not in self._finishing and (event_id, owner) not in self._lost
        ]
        now = self.clock()
        # A hand-over that waits behind a backlog must not lapse meanwhile: another claimer
        # (a second worker, a replica) would take it while this one is about to start it.
        waiting = [
            (h.callback.delivery_id, self._handover_owner) for h in self._handed if h.until > now
        ]
        if not (held or waiting) or self._outage.wait_time() > 0:
            return 0
        until = now + self.config.lease_seconds
        try:
            renewed = await self.store.renew(held + waiting, until=until)
        except StoreUnavailable as exc:
            self._outage.failed(exc, "renew")
            return 0
        self._outage.succeeded()
        self._extend_handed({event_id for event_id, _ in waiting}, renewed, until)
        lost = [
            (event_id, owner)
            for event_id, owner in held
            if event_id not in renewed
            and self._held.get(event_id) == owner
            and event_id not in self._finishing
        ]
        for event_id, owner in lost:
            self._lost.add((event_id, owner))
            metrics.LEASES_LOST.labels("renew").inc()
            log.warning(
                "dispatch_lease_lost",
                delivery_id=event_id,
                at="renew",
                note="another dispatcher may run this event; this run's outcome is dropped",
            )
        return len(lost)

    def _extend_handed(self, asked: set[str], renewed: set[str], until: float) -> None:
        """Hand-overs renewed wait on under the new lease; those whose renewal found them taken
        over are left to whoever took them (they are skipped when their turn comes)."""

        def extended(handover: Handover) -> Handover:
            event_id = handover.callback.delivery_id
            if event_id in renewed:
                return handover._replace(until=max(until, handover.until))
            if event_id in asked:
                return handover._replace(until=0.0)
            return handover

        self._handed = deque(extended(h) for h in self._handed)

    async def _keep_leases(self) -> None:
        # Well inside the lease: two renewals can fail before another dispatcher may claim.
        interval = self.config.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("dispatch_renew_failed")

    async def _run(self) -> None:
        next_claim = 0.0  # monotonic time of the next claim without a wake-up
        while not self._stopping:
            self._wake.clear()
            try:
                self._start_handed()
                if self._claim_due(next_claim):
                    self._claim_wanted = False
                    claimed, _ = await self._claim(self._capacity - len(self._held))
                    if not claimed:
                        next_claim = time.monotonic() + self.config.poll_interval
                    continue
            except StoreUnavailable as exc:
                self._outage.failed(exc, "claim")
            except Exception:
                log.exception("dispatch_round_failed")
                next_claim = time.monotonic() + self.config.poll_interval
            wait = self._idle_time(next_claim)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def _has_room(self) -> bool:
        return len(self._held) < self._capacity

    def _claim_due(self, next_claim: float) -> bool:
        # Claim when at most half the capacity is held, so a claim brings a batch, not one event.
        return (
            len(self._held) <= self._capacity // 2
            and self._outage.wait_time() == 0
            and (self._claim_wanted or time.monotonic() >= next_claim)
        )

    def _idle_time(self, next_claim: float) -> float:
        """How long the loop may sleep unless woken (an event finishing, one handed over)."""
        if self._handed and self._has_room():
            return 0.0
        if len(self._held) > self._capacity // 2:
            self._room_wanted = True  # woken by the event that makes room
            return self.config.poll_interval
        now = time.monotonic()
        at = now if self._claim_wanted else next_claim
        return max(at - now, self._outage.wait_time(), 0.001 if self._claim_wanted else 0.0)

    async def _claim(self, limit: int) -> tuple[int, list[asyncio.Task[None]]]:
        """Claim up to ``limit`` due events and start them: how many, and their tasks."""
        if limit <= 0:
            return 0, []
        owner = f"{self.owner}/{next(self._claims)}"
        events = await self.store.claim(
            owner=owner,
            now=self.clock(),
            limit=limit,
            lease_seconds=self.config.lease_seconds,
        )
        self._outage.succeeded()
        return len(events), self._start_all([self._work(e, owner) for e in events])

    def _start_handed(self) -> tuple[int, list[asyncio.Task[None]]]:
        now = self.clock()
        items: list[_Work] = []
        while self._handed and len(self._held) + len(items) < self._capacity:
            callback, route, raw, until = self._handed.popleft()
            if until <= now:
                self._claim_wanted = True  # its lease lapsed: a claim takes it, once
                continue
            envelope = Envelope(callback.delivery_id, route, callback.key_id, callback.received_at)
            event = build_event(envelope, raw)
            item = _Work(
                callback.delivery_id,
                event,
                {},
                0,
                callback.received_at,
                None,
                self._handover_owner,
            )
            items.append(item)
        if self._handed:
            self._room_wanted = True  # the rest start when held events make room
        return len(items), self._start_all(items)

    def _start_all(self, items: Sequence[_Work]) -> list[asyncio.Task[None]]:
        """A task for each event with handlers; one for all those without (settled at once,
        their outcomes written together, so they cost no task each)."""
        tasks: list[asyncio.Task[None]] = []
        unhandled: list[tuple[_Work, Outcome]] = []
        for item in items:
            self._held[item.id] = item.owner
            if self.gate is not None and self.gate.applies(item.event.route):
                tasks.append(self._spawn(self._confirm_then_handle(item, self.gate)))
                continue
            registered = self.handlers.for_event(item.event)
            if registered:
                tasks.append(self._spawn(self._handle(item, registered)))
            else:
                unhandled.append((item, self._unhandled(item)))
        if unhandled:
            tasks.append(self._spawn(self._settle_unhandled(unhandled)))
        return tasks

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _settle_unhandled(self, settled: Sequence[tuple[_Work, Outcome]]) -> None:
        """Write the outcomes of events without handlers, in one write."""
        try:
            while batch := [(i, o) for i, o in settled if (i.id, i.owner) not in self._lost]:
                if wait := self._outage.wait_time():
                    await asyncio.sleep(wait)
                    continue
                try:
                    written = await self.store.finish([(i.id, i.owner, o) for i, o in batch])
                except StoreUnavailable as exc:
                    self._outage.failed(exc, "finish")
                    continue
                self._outage.succeeded()
                for item, _ in batch:
                    if item.id not in written:
                        metrics.LEASES_LOST.labels("finish").inc()
                        log.warning("dispatch_lease_lost", delivery_id=item.id, at="finish")
                return
        except Exception:
            log.exception("dispatch_event_failed", delivery_ids=[i.id for i, _ in settled])
        finally:
            for item, _ in settled:
                self._release(item)

    # -- one event -------------------------------------------------------------------------------

    async def _confirm_then_handle(self, item: _Work, gate: ConfirmationSeam) -> None:
        """Ask the platform before delivering: a confirmed event goes on to its handlers with the
        job details on it; a refuted one is settled as ``refuted``; one the platform cannot speak
        for yet stays pending, retried with backoff. Never raises; each event on its own, so a
        slow answer about one never holds back another."""
        try:
            try:
                verdict = await gate.screen(item.event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("confirm_failed", delivery_id=item.id)
                verdict = None
            now = self.clock()
            if verdict is not None and verdict.action == "deliver":
                if verdict.details is not None:
                    event = dataclasses.replace(item.event, job_details=verdict.details)
                    item = item._replace(event=event)
                registered = self.handlers.for_event(item.event)
                if registered:
                    await self._handle(item, registered)  # releases the item itself
                    return
                await self._write(item, self._unhandled(item))
            elif verdict is not None and verdict.action == "refute":
                error = f"refuted: {verdict.reason}"
                refuted = Outcome("refuted", item.attempts, now, item.handler_state, error)
                await self._write(item, refuted)
            else:
                rounds = item.attempts + 1
                reason = "confirmer_failed" if verdict is None else verdict.reason
                waiting = Outcome(
                    "pending",
                    rounds,
                    now + backoff_delay(rounds, self.config, self.rng),
                    item.handler_state,
                    f"awaiting confirmation: {reason}",
                )
                await self._write(item, waiting)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dispatch_event_failed", delivery_id=item.id)
        finally:
            self._release(item)

    async def _handle(self, item: _Work, registered: Sequence[Registration]) -> None:
        """Deliver one held event and write its outcome. Never raises."""
        try:
            async with self._slots:
                outcome = (
                    self._given_back(item)
                    if self._stopping
                    else await self._deliver(item, registered)
                )
            if await self._write(item, outcome) and outcome.status == "dead":
                log.error("event_dead", delivery_id=item.id, attempts=outcome.attempts)
                await self._call_dead_hooks(item, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("dispatch_event_failed", delivery_id=item.id)
        finally:
            self._release(item)

    def _release(self, item: _Work) -> None:
        if self._held.get(item.id) == item.owner:
            del self._held[item.id]
        self._finishing.discard(item.id)
        self._lost.discard((item.id, item.owner))
        if self._room_wanted and len(self._held) <= self._capacity // 2:
            self._room_wanted = False  # the loop waits for room: there is some now
            self._wake.set()

    async def _write(self, item: _Work, outcome: Outcome) -> bool:
        """Write the outcome while the lease is this run's; whether it was written."""
        while (item.id, item.owner) not in self._lost:
            if wait := self._outage.wait_time():
                await asyncio.sleep(wait)
                continue  # the lease may have been found lost meanwhile
            self._finishing.add(item.id)
            try:
                written = await self._writes.submit((item.id, item.owner, outcome))
            except StoreUnavailable as exc:
                self._outage.failed(exc, "finish")
                self._finishing.discard(item.id)
                continue
            self._outage.succeeded()
            if not written:
                metrics.LEASES_LOST.labels("finish").inc()
                log.warning("dispatch_lease_lost", delivery_id=item.id, at="finish")
            return written
        return False

    async def _write_outcomes(self, batch: list[_Finished]) -> list[bool]:
        written = await self.store.finish(batch)
        return [event_id in written for event_id, _, _ in batch]

    def _unhandled(self, item: _Work) -> Outcome:
        event = item.event
        if event.event_type not in self._unhandled_types:
            self._unhandled_types.add(event.event_type)
            log.warning(
                "no_handler_for_event_type",
                event_type=event.event_type,
                route=event.route,
                delivery_id=event.delivery_id,
                note="stored as unhandled; `callbacks events replay --unhandled` delivers "
                "such events once a handler is registered (logged once per event type)",
            )
        return Outcome(
            "unhandled", item.attempts, self.clock(), item.handler_state, item.last_error
        )

    def _given_back(self, item: _Work) -> Outcome:
        """At stop, for an event that never started: as it was, for the next claimer."""
        return Outcome("pending", item.attempts, self.clock(), item.handler_state, item.last_error)

    async def _deliver(self, item: _Work, registered: Sequence[Registration]) -> Outcome:
        """Run the event's handlers that have not yet succeeded or died; returns its new state."""
        event = item.event
        state: dict[str, Any] = {k: dict(v) for k, v in item.handler_state.items()}
        due = [r for r in registered if state.get(r.name, {}).get("status") not in ("ok", "dead")]
        attempt = item.attempts + 1 if due else item.attempts
        if attempt == 1:
            metrics.DISPATCH_LAG.observe(max(self.clock() - item.received_at, 0.0))
        timeout = self._timeouts.get(event.route, self.config.handler_timeout)
        last_error: str | None = item.last_error
        for registration in due:
            result = await self._call(registration, event, attempt, timeout)
            tries = int(state.get(registration.name, {}).get("attempts", 0)) + 1
            if result.ok:
                outcome = "ok"
                state[registration.name] = {"status": outcome, "attempts": tries}
            else:
                permanent = result.reason == "permanent"
                outcome = "dead" if permanent or tries >= self.config.max_attempts else "failed"
                last_error = f"{registration.name}: {result.error}"
                state[registration.name] = {
                    "status": outcome,
                    "attempts": tries,
                    "error": result.error,
                }
                if result.reason in ("timeout", "permanent"):
                    state[registration.name]["reason"] = result.reason
            metrics.HANDLER_ATTEMPTS.labels(registration.name, outcome).inc()
        return self._outcome(state, [r.name for r in registered], attempt, last_error)

    def _outcome(
        self, state: Mapping[str, Any], names: Sequence[str], attempt: int, error: str | None
    ) -> Outcome:
        """The event's status from its registered handlers' states (a handler since removed
        no longer holds it back)."""
        statuses = {state.get(name, {}).get("status") for name in names}
        now = self.clock()
        status: EventStatus
        if "failed" in statuses:
            status, next_at = "pending", now + backoff_delay(attempt, self.config, self.rng)
        elif "dead" in statuses:
            status, next_at = "dead", now
        else:
            status, next_at, error = "delivered", now, None
        return Outcome(status, attempt, next_at, state, error)

    async def _call(
        self, registration: Registration, event: Event, attempt: int, timeout: float
    ) -> CallResult:
        started = time.perf_counter()
        result = await call_isolated(
            registration.func, event, timeout=timeout, threads=self._threads, name=registration.name
        )
        if result.reason == "timeout":
            metrics.HANDLER_TIMEOUTS.labels(registration.name).inc()
        (log.info if result.ok else log.warning)(
            "handler_attempt",
            handler=registration.name,
            delivery_id=event.delivery_id,
            route=event.route,
            event_type=event.event_type,
            attempt=attempt,
            outcome="ok" if result.ok else "failed",
            reason=result.reason,
            error_type=result.error_type,
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return result

    async def _call_dead_hooks(self, item: _Work, outcome: Outcome) -> None:
        """Each ``on_dead`` hook once, isolated like a handler (its failure is only logged)."""
        hooks = self.handlers.dead_hooks
        if not hooks:
            return
        errors = {
            name: str(s.get("error", ""))
            for name, s in outcome.handler_state.items()
            if s.get("status") == "dead"
        }
        letter = DeadLetter(item.event, outcome.attempts, errors)
        timeout = self._timeouts.get(item.event.route, self.config.handler_timeout)
        for hook in hooks:
            name = handler_name(hook)
            result = await call_isolated(
                hook, letter, timeout=timeout, threads=self._threads, name=name
            )
            if not result.ok:
                log.warning(
                    "dead_hook_failed",
                    hook=name,
                    delivery_id=item.id,
                    reason=result.reason,
                    error_type=result.error_type,
                )

    # -- leases given back -----------------------------------------------------------------------

    async def _release_handed(self) -> None:
        """At stop: give the store back the leases of handed-over events not yet delivered."""
        if not self._handed:
            return
        now = self.clock()
        pending = Outcome("pending", 0, now, {}, None)
        outcomes = [(h.callback.delivery_id, self._handover_owner, pending) for h in self._handed]
        self._handed.clear()
        with contextlib.suppress(StoreUnavailable):  # the leases then lapse on their own
            await self.store.finish(outcomes)

    def _longest_timeout(self) -> float:
        return max([self.config.handler_timeout, *self._timeouts.values()])

    def _work(self, stored: StoredEvent, owner: str) -> _Work:
        """A claimed event as a work item."""
        return _Work(
            stored.id,
            event_from_stored(stored, self.routes.get(stored.route)),
            stored.handler_state,
            stored.attempts,
            stored.received_at,
            stored.last_error,
            owner,
        )
