"""The dispatcher against a real SQLite store, with a fake clock: retries, dead events, recovery."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.config import DispatchConfig, RouteConfig
from callbacks.dedupe import dedupe_key
from callbacks.dispatcher import Dispatcher, backoff_delay
from callbacks.events import (
    Event,
    MetaStudioJobResult,
    MetaStudioLiveEvent,
    RtmpStreamStateChange,
    SenseTimeCallback,
)
from callbacks.handlers import Handlers
from callbacks.intake import Intake, inbound_callback
from callbacks.store import InboundCallback, Outcome, StoredEvent, new_delivery_id
from callbacks.store.sqlite import SQLiteStore

VIDEO = RouteConfig(
    name="ms-video",
    path="/cb/video",
    provider="metastudio",
    public_url="https://hooks.example.com/cb/video",
    kind="video",
    auth="MSS_A",
)
LIVE = RouteConfig(
    name="ms-live",
    path="/cb/live",
    provider="metastudio",
    public_url="https://hooks.example.com/cb/live",
    kind="live",
    auth="MSS_A_HEAD",
)
SENSETIME = RouteConfig(
    name="st",
    path="/cb/st",
    provider="sensetime",
    public_url="https://hooks.example.com/cb/st",
)
ROUTES = {r.name: r for r in (VIDEO, LIVE, SENSETIME)}
CONFIG = DispatchConfig(
    max_attempts=3,
    backoff_initial=10.0,
    backoff_max=1000.0,
    concurrency=2,
    lease_seconds=60.0,
    poll_interval=0.01,
)


class Clock:
    """Starts at the real time (the store's re-queue uses it) and only moves when told to."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Recorder:
    """Handlers that remember every call, and fail while told to."""

    calls: dict[str, list[Event]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    threads: dict[str, int] = field(default_factory=dict)

    def record(self, name: str, event: Event) -> None:
        self.calls.setdefault(name, []).append(event)
        self.threads[name] = threading.get_ident()
        if name in self.failing:
            raise RuntimeError(f"{name} failed")

    def count(self, name: str) -> int:
        return len(self.calls.get(name, []))


def registry(recorder: Recorder) -> Handlers:
    h = Handlers()

    @h.on(MetaStudioJobResult)
    def sync_handler(event: MetaStudioJobResult) -> None:
        recorder.record("sync", event)

    @h.on(MetaStudioJobResult)
    async def async_handler(event: MetaStudioJobResult) -> None:
        await asyncio.sleep(0)
        recorder.record("async", event)

    @h.on(MetaStudioLiveEvent)
    def live_handler(event: MetaStudioLiveEvent) -> None:
        recorder.record("live", event)

    @h.on_any
    def audit(event: Event) -> None:
        recorder.record("audit", event)

    return h


def callback(route: RouteConfig, body: dict[str, Any], now: float) -> InboundCallback:
    return InboundCallback(
        delivery_id=new_delivery_id(now),
        route=route.name,
        provider=route.provider,
        event_type="test",
        dedupe_key=dedupe_key(route, body),
        key_id="abc123def456",
        received_at=now,
        body=orjson.dumps(body),
    )


JOB_BODY = {"result": "SUCCEED", "asset_id": "a-1", "job_id": "job-1"}


def run(tmp_path: Path, scenario: Callable[[SQLiteStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SQLiteStore(tmp_path / "callbacks.db")
        await store.upgrade()
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


async def stored(store: SQLiteStore, delivery_id: str) -> StoredEvent:
    event = await store.get(delivery_id)
    assert event is not None
    return event


# -- delivering --------------------------------------------------------------------------------


def test_sync_and_async_handlers_get_the_typed_event(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        assert (await stored(store, accepted.delivery_id)).status == "pending"
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock, rng=lambda: 0)

        assert await dispatcher.run_once() == 1
        assert await dispatcher.run_once() == 0  # nothing left

        for name in ("sync", "async", "audit"):
            (event,) = rec.calls[name]
            assert isinstance(event, MetaStudioJobResult)
            assert event.delivery_id == accepted.delivery_id
            assert event.job_id == "job-1"
            assert event.succeeded
            assert event.key_id == "abc123def456"
            assert event.raw == JOB_BODY
        assert rec.count("live") == 0
        assert rec.threads["sync"] != threading.get_ident()  # sync handlers run off the loop
        assert rec.threads["async"] == threading.get_ident()

        row = await stored(store, accepted.delivery_id)
        assert row.status == "delivered"
        assert row.attempts == 1
        assert row.last_error is None
        assert {s["status"] for s in row.handler_state.values()} == {"ok"}
        assert len(row.handler_state) == 3

    run(tmp_path, scenario)


def test_subclass_events_reach_base_class_handlers(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()
    body = {
        "event_type": "RTMP_STREAM_STATE_CHANGE",
        "message": orjson.dumps({"room_id": "r1", "state": "CONNECTED"}).decode(),
    }

    async def scenario(store: SQLiteStore) -> None:
        await store.accept(callback(LIVE, body, clock()))
        await store.accept(callback(SENSETIME, {"taskId": 5, "status": 35}, clock()))
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        assert await dispatcher.run_once() == 2
        (live,) = rec.calls["live"]
        assert isinstance(live, RtmpStreamStateChange)
        assert live.state == "CONNECTED"
        audited = {type(e) for e in rec.calls["audit"]}  # concurrent: in no particular order
        assert audited == {RtmpStreamStateChange, SenseTimeCallback}
        assert rec.count("sync") == rec.count("async") == 0

    run(tmp_path, scenario)


def test_event_of_a_removed_route_still_reaches_catch_alls(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        gone = RouteConfig("old", "/cb/old", "metastudio", "https://h.example/old", "video", "NONE")
        accepted = await store.accept(callback(gone, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        assert await dispatcher.run_once() == 1
        (event,) = rec.calls["audit"]
        assert type(event) is Event
        assert event.route == "old"
        assert rec.count("sync") == 0
        assert (await stored(store, accepted.delivery_id)).status == "delivered"

    run(tmp_path, scenario)


def test_event_without_matching_handlers_is_unhandled(tmp_path: Path) -> None:
    clock = Clock()

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, Handlers(), ROUTES, CONFIG, clock=clock)
        assert await dispatcher.run_once() == 1
        row = await stored(store, accepted.delivery_id)
        assert (row.status, row.attempts, row.last_error) == ("unhandled", 0, None)
        assert row.handler_state == {}
        assert await dispatcher.run_once() == 0  # settled: not claimed again

    run(tmp_path, scenario)


def test_many_events_with_limited_concurrency(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        for n in range(12):
            await store.accept(callback(VIDEO, dict(JOB_BODY, job_id=f"job-{n}"), clock()))
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        handled = 0
        while count := await dispatcher.run_once():
            handled += count
        assert handled == 12
        jobs = sorted(e.raw["job_id"] for e in rec.calls["async"])
        assert jobs == sorted(f"job-{n}" for n in range(12))
        assert await store.inbox_depth() == 0

    run(tmp_path, scenario)


# -- failing handlers --------------------------------------------------------------------------


def test_failing_handler_is_retried_with_backoff_then_dead(tmp_path: Path) -> None:
    rec, clock = Recorder(failing={"async"}), Clock()

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock, rng=lambda: 0.5)
        async_name = next(r.name for r in dispatcher.handlers.registrations if "async" in r.name)

        # Attempt 1: base 10 s, equal jitter at 0.5 -> 7.5 s.
        assert await dispatcher.run_once() == 1
        row = await stored(store, accepted.delivery_id)
        assert row.status == "pending"
        assert row.attempts == 1
        assert row.next_attempt_at == pytest.approx(clock() + 7.5)
        assert row.handler_state[async_name] == {
            "status": "failed",
            "attempts": 1,
            "error": "RuntimeError: async failed",
        }
        assert row.last_error == f"{async_name}: RuntimeError: async failed"
        assert await dispatcher.run_once() == 0  # not due yet
        clock.advance(7.4)
        assert await dispatcher.run_once() == 0
        clock.advance(0.1)

        # Attempt 2: base 20 s -> 15 s.
        assert await dispatcher.run_once() == 1
        row = await stored(store, accepted.delivery_id)
        assert (row.status, row.attempts) == ("pending", 2)
        assert row.next_attempt_at == pytest.approx(clock() + 15.0)
        clock.advance(15.0)

        # Attempt 3 = max_attempts: the handler is dead, and with it the event.
        assert await dispatcher.run_once() == 1
        row = await stored(store, accepted.delivery_id)
        assert row.status == "dead"
        assert row.attempts == 3
        assert row.handler_state[async_name]["status"] == "dead"
        assert row.handler_state[async_name]["attempts"] == 3
        clock.advance(10_000)
        assert await dispatcher.run_once() == 0

        # The handlers that succeeded ran exactly once; the failing one every attempt.
        assert rec.count("sync") == 1
        assert rec.count("audit") == 1
        assert rec.count("async") == 3
        ok = {n: s for n, s in row.handler_state.items() if n != async_name}
        assert len(ok) == 2
        assert all(s == {"status": "ok", "attempts": 1} for s in ok.values())

    run(tmp_path, scenario)


def test_delivery_id_is_the_stored_id_and_survives_retries(tmp_path: Path) -> None:
    rec, clock = Recorder(failing={"sync"}), Clock()

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock, rng=lambda: 1)
        assert await dispatcher.run_once() == 1
        rec.failing.clear()
        clock.advance(10)  # attempt 1 with rng 1: the full base of 10 s
        assert await dispatcher.run_once() == 1
        assert [e.delivery_id for e in rec.calls["sync"]] == [accepted.delivery_id] * 2
        assert (await stored(store, accepted.delivery_id)).status == "delivered"
        assert rec.count("async") == 1

    run(tmp_path, scenario)


def test_requeue_dead_reruns_only_the_failed_handler(tmp_path: Path) -> None:
    rec, clock = Recorder(failing={"sync"}), Clock()
    config = DispatchConfig(max_attempts=1, backoff_initial=1, concurrency=1)

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        other = await store.accept(callback(VIDEO, dict(JOB_BODY, job_id="other"), clock()))
        first = Dispatcher(store, registry(rec), ROUTES, config, clock=clock)
        assert await first.run_once() == 2  # sync fails on both, and one attempt is the limit
        assert (await stored(store, accepted.delivery_id)).status == "dead"
        assert (await stored(store, other.delivery_id)).status == "dead"
        assert rec.count("sync") == 2

        rec.failing.clear()  # the bug is fixed: replay the dead events
        assert await store.requeue(dead=True) == 2
        row = await stored(store, accepted.delivery_id)
        assert (row.status, row.attempts) == ("pending", 0)
        assert all(s["status"] == "ok" for s in row.handler_state.values())
        clock.advance(60)

        assert await first.run_once() == 2
        assert rec.count("sync") == 4  # the failed handler again, for each event
        assert rec.count("async") == 2  # not re-run
        assert rec.count("audit") == 2
        row = await stored(store, accepted.delivery_id)
        assert (row.status, row.attempts, row.last_error) == ("delivered", 1, None)
        assert await store.requeue(dead=True) == 0

    run(tmp_path, scenario)


def test_requeue_of_a_delivered_event_replays_every_handler(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        await dispatcher.run_once()
        assert await store.requeue([accepted.delivery_id]) == 1
        clock.advance(60)
        assert await dispatcher.run_once() == 1
        assert rec.count("sync") == rec.count("async") == rec.count("audit") == 2
        assert {e.delivery_id for e in rec.calls["audit"]} == {accepted.delivery_id}

    run(tmp_path, scenario)


# -- crashes -----------------------------------------------------------------------------------


def test_event_claimed_by_a_crashed_dispatcher_is_delivered_after_recover(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()
    path = tmp_path / "callbacks.db"

    async def main() -> None:
        # The first process claims the event, then dies before writing an outcome.
        old = SQLiteStore(path)
        await old.upgrade()
        await old.recover()
        accepted = await old.accept(callback(VIDEO, JOB_BODY, clock()))
        crashed = Dispatcher(old, registry(Recorder()), ROUTES, CONFIG, clock=clock)
        claimed = await old.claim(owner=crashed.owner, now=clock(), limit=10, lease_seconds=60)
        assert [e.id for e in claimed] == [accepted.delivery_id]
        await old.close()

        new = SQLiteStore(path)
        await new.open()
        try:
            dispatcher = Dispatcher(new, registry(rec), ROUTES, CONFIG, clock=clock)
            assert dispatcher.owner != crashed.owner
            assert await dispatcher.run_once() == 0  # still under the dead process's lease
            await new.recover()
            assert await dispatcher.run_once() == 1
            assert rec.count("sync") == rec.count("async") == 1
            assert rec.calls["sync"][0].delivery_id == accepted.delivery_id
            row = await stored(new, accepted.delivery_id)
            assert (row.status, row.attempts) == ("delivered", 1)
            # A late outcome from the crashed owner is not written.
            late = Outcome("pending", 1, clock(), {}, "late")
            late_round = [(accepted.delivery_id, late)]
            assert not await new.finish_many(late_round, owner=crashed.owner)
            assert (await stored(new, accepted.delivery_id)).status == "delivered"
        finally:
            await new.close()

    asyncio.run(main())


def test_expired_lease_lets_another_dispatcher_deliver(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        await store.claim(owner="gone", now=clock(), limit=10, lease_seconds=CONFIG.lease_seconds)
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        clock.advance(CONFIG.lease_seconds)
        assert await dispatcher.run_once() == 0
        clock.advance(1)
        assert await dispatcher.run_once() == 1
        assert (await stored(store, accepted.delivery_id)).status == "delivered"

    run(tmp_path, scenario)


def test_recover_beside_a_live_server_leaves_its_claims_to_their_leases(tmp_path: Path) -> None:
    clock = Clock()

    async def main() -> None:
        first, second = SQLiteStore(tmp_path / "db"), SQLiteStore(tmp_path / "db")
        await first.upgrade()
        await second.open()
        try:
            await first.recover()
            accepted = await first.accept(callback(VIDEO, JOB_BODY, clock()))
            held = await first.claim(owner="first", now=clock(), limit=10, lease_seconds=60)
            assert [e.id for e in held] == [accepted.delivery_id]
            # The first server is alive (it holds the server lock shared): its claim stands.
            await second.recover()
            assert not await second.claim(owner="second", now=clock(), limit=10, lease_seconds=60)
            # Until its lease lapses: a live server that stopped renewing is taken over.
            later = clock() + 61
            taken = await second.claim(owner="second", now=later, limit=10, lease_seconds=60)
            assert [e.id for e in taken] == [accepted.delivery_id]
            assert not await first.finish_many(
                [(accepted.delivery_id, Outcome("delivered", 1, later, {}, None))], owner="first"
            )
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())


def test_background_loop_delivers_and_stops(tmp_path: Path) -> None:
    rec = Recorder()

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG)
        dispatcher.start()
        try:
            inbound = callback(VIDEO, JOB_BODY, time.time())
            accepted = await store.accept(inbound)
            dispatcher.take(inbound, VIDEO, dict(JOB_BODY), None)  # stored unleased: claim it
            for _ in range(500):
                if (await stored(store, accepted.delivery_id)).status == "delivered":
                    break
                await asyncio.sleep(0.01)
        finally:
            await dispatcher.stop()
        assert (await stored(store, accepted.delivery_id)).status == "delivered"
        assert rec.count("async") == 1

    run(tmp_path, scenario)


# -- hand-over: events this process just accepted ------------------------------------------


async def accept_handed(
    store: SQLiteStore, dispatcher: Dispatcher, route: RouteConfig, body: dict[str, Any], now: float
) -> InboundCallback | None:
    """Accept through the intake, as the receiver does; the callback if it was stored leased to
    the dispatcher and handed over, None if the hand-over queue was full."""
    if dispatcher.lease() is None:
        return None
    inbound = callback(route, body, now)
    accepted = await Intake(store, dispatcher).accept(inbound, route, dict(body))
    assert not accepted.duplicate
    return inbound


def test_a_hand_over_waiting_behind_a_backlog_keeps_its_lease(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        inbound = await accept_handed(store, dispatcher, VIDEO, JOB_BODY, clock())
        assert inbound is not None
        # Not started yet (no slot): the heartbeat renews it with the events held.
        clock.advance(CONFIG.lease_seconds * 2 / 3)
        await dispatcher.renew_leases()
        clock.advance(CONFIG.lease_seconds * 2 / 3)  # past the lease it was stored with
        assert await store.claim(owner="other", now=clock(), limit=10, lease_seconds=60) == []
        assert await dispatcher.run_handed() == 1
        assert (await stored(store, inbound.delivery_id)).status == "delivered"

    run(tmp_path, scenario)


def test_handed_over_event_is_delivered_without_a_claim_and_hidden_from_claims(
    tmp_path: Path,
) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        inbound = await accept_handed(store, dispatcher, VIDEO, JOB_BODY, clock())
        assert inbound is not None
        # Stored leased to this dispatcher: no claim round (here or elsewhere) can take it.
        assert await store.claim(owner="other", now=clock(), limit=10, lease_seconds=60) == []
        assert await dispatcher.run_handed() == 1
        assert rec.count("sync") == rec.count("async") == rec.count("audit") == 1
        event = rec.calls["sync"][0]
        assert isinstance(event, MetaStudioJobResult)
        assert (event.delivery_id, event.job_id) == (inbound.delivery_id, "job-1")
        row = await stored(store, inbound.delivery_id)
        assert (row.status, row.attempts) == ("delivered", 1)
        assert await dispatcher.run_handed() == 0
        assert await dispatcher.run_once() == 0

    run(tmp_path, scenario)


def test_handed_over_event_whose_handler_fails_is_retried_by_claim_rounds(tmp_path: Path) -> None:
    rec, clock = Recorder(failing={"async"}), Clock()

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        inbound = await accept_handed(store, dispatcher, VIDEO, JOB_BODY, clock())
        assert inbound is not None
        assert await dispatcher.run_handed() == 1
        row = await stored(store, inbound.delivery_id)
        assert (row.status, row.attempts) == ("pending", 1)
        statuses = {name.rsplit(".", 1)[1]: st["status"] for name, st in row.handler_state.items()}
        assert statuses == {"sync_handler": "ok", "async_handler": "failed", "audit": "ok"}
        rec.failing.clear()
        clock.advance(CONFIG.backoff_max)
        assert await dispatcher.run_once() == 1
        assert rec.count("sync") == 1
        assert rec.count("async") == 2
        assert (await stored(store, inbound.delivery_id)).status == "delivered"

    run(tmp_path, scenario)


def test_handed_over_event_whose_lease_lapsed_goes_to_a_claim_round_once(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        inbound = await accept_handed(store, dispatcher, VIDEO, JOB_BODY, clock())
        assert inbound is not None
        clock.advance(CONFIG.lease_seconds + 1)  # the dispatcher fell that far behind
        assert await dispatcher.run_handed() == 0  # not delivered from the queue...
        assert await dispatcher.run_once() == 1  # ...but claimed from the store, once
        assert rec.count("sync") == 1
        assert (await stored(store, inbound.delivery_id)).status == "delivered"

    run(tmp_path, scenario)


def test_the_intake_hands_over_a_new_event_but_not_its_duplicate(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        intake = Intake(store, dispatcher)
        body = orjson.dumps(JOB_BODY)
        first = inbound_callback(VIDEO, JOB_BODY, body, key_id="k", received_at=clock())
        retry = inbound_callback(VIDEO, JOB_BODY, body, key_id="k", received_at=clock() + 1)
        assert (first.dedupe_key, first.event_type) == (retry.dedupe_key, "MetaStudioJobResult")
        assert first.delivery_id != retry.delivery_id
        assert not (await intake.accept(first, VIDEO, dict(JOB_BODY))).duplicate
        again = await intake.accept(retry, VIDEO, dict(JOB_BODY))
        assert again.duplicate_of == first.delivery_id
        assert await dispatcher.run_handed() == 1  # the first only
        assert await dispatcher.run_handed() == 0
        assert rec.count("sync") == 1
        assert (await stored(store, retry.delivery_id)).status == "duplicate"

    run(tmp_path, scenario)


def test_the_intake_without_a_dispatcher_only_stores(tmp_path: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        callback = inbound_callback(
            SENSETIME, {"taskId": 1}, b'{"taskId": 1}', key_id=None, received_at=time.time()
        )
        accepted = await Intake(store, None).accept(callback, SENSETIME, {"taskId": 1})
        event = await stored(store, accepted.delivery_id)
        assert (event.status, event.event_type, event.body) == (
            "pending",
            "SenseTimeCallback",
            b'{"taskId": 1}',
        )
        claimed = await store.claim(owner="o", now=time.time() + 1, limit=10, lease_seconds=60)
        assert [e.id for e in claimed] == [accepted.delivery_id]  # stored unleased

    run(tmp_path, scenario)


def test_full_hand_over_queue_leaves_events_to_claim_rounds(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()
    small = DispatchConfig(**{**CONFIG.__dict__, "concurrency": 1})

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, small, clock=clock)
        handed = 0
        while await accept_handed(store, dispatcher, SENSETIME, {"taskId": f"t-{handed}"}, clock()):
            handed += 1
        assert handed > 0  # the queue takes a few rounds, then says no
        left = callback(SENSETIME, {"taskId": "waits-in-the-store"}, clock())
        await store.accept(left)
        delivered = 0
        while n := await dispatcher.run_handed():
            delivered += n
        assert delivered == handed
        assert await dispatcher.run_once() == 1
        assert rec.count("audit") == handed + 1
        assert (await stored(store, left.delivery_id)).status == "delivered"

    run(tmp_path, scenario)


def test_stop_gives_back_the_leases_of_events_not_yet_delivered(tmp_path: Path) -> None:
    rec, clock = Recorder(), Clock()

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG, clock=clock)
        inbound = await accept_handed(store, dispatcher, VIDEO, JOB_BODY, clock())
        assert inbound is not None
        await dispatcher.stop()  # never started: nothing delivered, the lease is released
        assert dispatcher.lease() is None
        assert rec.count("sync") == 0
        claimed = await store.claim(owner="next", now=clock(), limit=10, lease_seconds=60)
        assert [e.id for e in claimed] == [inbound.delivery_id]
        assert claimed[0].attempts == 0

    run(tmp_path, scenario)


def test_background_loop_delivers_handed_over_events(tmp_path: Path) -> None:
    rec = Recorder()

    async def scenario(store: SQLiteStore) -> None:
        dispatcher = Dispatcher(store, registry(rec), ROUTES, CONFIG)
        dispatcher.start()
        try:
            inbound = await accept_handed(store, dispatcher, VIDEO, JOB_BODY, time.time())
            assert inbound is not None
            for _ in range(500):
                if (await stored(store, inbound.delivery_id)).status == "delivered":
                    break
                await asyncio.sleep(0.01)
        finally:
            await dispatcher.stop()
        assert (await stored(store, inbound.delivery_id)).status == "delivered"
        assert rec.count("async") == 1

    run(tmp_path, scenario)


# -- backoff -----------------------------------------------------------------------------------


def test_backoff_grows_exponentially_and_is_capped() -> None:
    config = DispatchConfig(backoff_initial=1.0, backoff_max=60.0)
    low = [backoff_delay(n, config, lambda: 0.0) for n in range(1, 9)]
    high = [backoff_delay(n, config, lambda: 1.0) for n in range(1, 9)]
    assert low == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert high == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay(0, config, lambda: 1.0) == 1.0  # attempt 0 counts as the first
    # Counters keep growing past max_attempts when handlers are added; the cap still holds.
    assert backoff_delay(5000, config, lambda: 1.0) == 60.0


@given(
    attempt=st.integers(min_value=0, max_value=20_000),
    initial=st.floats(min_value=0.001, max_value=3600),
    cap=st.floats(min_value=0.001, max_value=86400),
    r=st.floats(min_value=0, max_value=1),
)
def test_backoff_jitter_stays_between_half_and_full_base(
    attempt: int, initial: float, cap: float, r: float
) -> None:
    config = DispatchConfig(backoff_initial=initial, backoff_max=cap)
    exponent = max(attempt - 1, 0)
    base = cap if exponent > 64 else min(cap, initial * 2**exponent)
    delay = backoff_delay(attempt, config, lambda: r)
    assert base / 2 <= delay <= base
    assert delay <= cap
