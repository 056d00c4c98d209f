"""What cannot stall the dispatcher: hung handlers, lost leases, permanent failures, no handler."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from callbacks import DeadLetter, PermanentError
from callbacks.config import DispatchConfig
from callbacks.dispatch.store_outage import StoreOutage
from callbacks.dispatcher import Dispatcher
from callbacks.errors import CallbacksError, DeliveryRefused
from callbacks.events import Event, MetaStudioJobResult, SenseTimeCallback
from callbacks.handlers import Handlers
from callbacks.store.sqlite import SQLiteStore
from tests.dispatcher.test_dispatcher import (
    CONFIG,
    JOB_BODY,
    ROUTES,
    SENSETIME,
    VIDEO,
    Clock,
    accept_handed,
    callback,
    run,
    stored,
)

FAST = replace(CONFIG, handler_timeout=0.2, concurrency=4)


def sample(name: str, labels: dict[str, str]) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def until(predicate: object, *, limit: float = 20.0) -> None:
    """Wait for a condition on the loop (a guard against hanging, not a timing assertion)."""
    async with asyncio.timeout(limit):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.005)


# -- hung handlers ---------------------------------------------------------------------------


def test_a_hung_handler_does_not_hold_back_other_events(tmp_path: Path) -> None:
    release = asyncio.Event()
    started: list[str] = []
    finished: list[str] = []
    h = Handlers()

    @h.on(MetaStudioJobResult)
    async def slow_when_told(event: MetaStudioJobResult) -> None:
        started.append(event.job_id or "")
        if event.job_id == "hangs":
            await release.wait()
        finished.append(event.job_id or "")

    async def scenario(store: SQLiteStore) -> None:
        config = replace(CONFIG, handler_timeout=60.0, concurrency=2)
        dispatcher = Dispatcher(store, h, ROUTES, config)
        hung = await store.accept(callback(VIDEO, dict(JOB_BODY, job_id="hangs"), 0))
        dispatcher.start()
        try:
            await until(lambda: started == ["hangs"])
            others = []
            for n in range(5):  # accepted as the receiver does: handed over to the dispatcher
                other = await accept_handed(
                    store, dispatcher, VIDEO, dict(JOB_BODY, job_id=f"j{n}"), 1.0 + n
                )
                assert other is not None
                others.append(other)
            await until(lambda: len(finished) == 5)
            await until(lambda: set(dispatcher._held) == {hung.delivery_id})
            # Every other event was delivered and written while the first still hangs.
            assert sorted(finished) == [f"j{n}" for n in range(5)]
            for other in others:
                assert (await stored(store, other.delivery_id)).status == "delivered"
            assert "hangs" not in finished
            assert started[0] == "hangs"
            assert (await stored(store, hung.delivery_id)).status == "pending"
            release.set()
            await until(lambda: "hangs" in finished)
        finally:
            await dispatcher.stop()
        assert (await stored(store, hung.delivery_id)).status == "delivered"

    run(tmp_path, scenario)


def test_an_async_handler_past_its_timeout_is_cancelled_and_retried(tmp_path: Path) -> None:
    clock = Clock()
    cancelled: list[str] = []
    h = Handlers()

    @h.on(MetaStudioJobResult)
    async def never_returns(event: MetaStudioJobResult) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(event.delivery_id)
            raise

    async def scenario(store: SQLiteStore) -> None:
        name = f"{__name__}.test_an_async_handler_past_its_timeout_is_cancelled_and_retried"
        name += ".<locals>.never_returns"
        before = sample("avatar_callbacks_handler_timeouts_total", {"handler": name})
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, h, ROUTES, FAST, clock=clock, rng=lambda: 1.0)
        assert await dispatcher.run_once() == 1
        await until(lambda: cancelled == [accepted.delivery_id])
        row = await stored(store, accepted.delivery_id)
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at == pytest.approx(clock() + FAST.backoff_initial)
        assert row.handler_state[name] == {
            "status": "failed",
            "attempts": 1,
            "error": "timeout: no result after 0.2 s",
            "reason": "timeout",
        }
        assert row.last_error == f"{name}: timeout: no result after 0.2 s"
        after = sample("avatar_callbacks_handler_timeouts_total", {"handler": name})
        assert after == before + 1

    run(tmp_path, scenario)


def test_an_async_handler_that_ignores_cancellation_still_cannot_hold_its_event(
    tmp_path: Path,
) -> None:
    clock = Clock()
    h = Handlers()
    release = asyncio.Event()

    @h.on(MetaStudioJobResult)
    async def stubborn(event: MetaStudioJobResult) -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # swallowed: a badly written handler

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, h, ROUTES, FAST, clock=clock)
        assert await dispatcher.run_once() == 1  # returns although the handler never ends
        row = await stored(store, accepted.delivery_id)
        assert row.status == "pending"
        assert "timeout" in (row.last_error or "")
        release.set()

    run(tmp_path, scenario)


def test_a_sync_handler_past_its_timeout_fails_and_its_thread_is_let_go(tmp_path: Path) -> None:
    clock = Clock()
    release = threading.Event()
    returned = threading.Event()
    h = Handlers()

    @h.on(MetaStudioJobResult)
    def blocks(event: MetaStudioJobResult) -> None:
        release.wait(30)
        returned.set()

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, h, ROUTES, FAST, clock=clock)
        with capture_logs() as logs:
            assert await dispatcher.run_once() == 1
            row = await stored(store, accepted.delivery_id)
            assert (row.status, row.attempts) == ("pending", 1)
            (state,) = row.handler_state.values()
            assert state["reason"] == "timeout"
            # The attempt failed, the thread still runs the handler: Python cannot stop it.
            assert not returned.is_set()
            assert dispatcher._threads.abandoned == 1
            release.set()
            await until(lambda: dispatcher._threads.abandoned == 0)
        assert returned.is_set()
        late = [e for e in logs if e["event"] == "handler_returned_after_timeout"]
        assert [e["handler"] for e in late] == [next(iter(row.handler_state))]

    run(tmp_path, scenario)


def test_hung_sync_handlers_hold_at_most_the_pool_and_later_calls_fail_not_queue(
    tmp_path: Path,
) -> None:
    clock = Clock()
    release = threading.Event()
    h = Handlers()

    @h.on(MetaStudioJobResult)
    def blocks(event: MetaStudioJobResult) -> None:
        release.wait(30)

    async def scenario(store: SQLiteStore) -> None:
        config = replace(FAST, handler_threads=1)
        first = await store.accept(callback(VIDEO, dict(JOB_BODY, job_id="1"), clock()))
        dispatcher = Dispatcher(store, h, ROUTES, config, clock=clock)
        assert await dispatcher.run_once() == 1  # times out; its thread stays held
        second = await store.accept(callback(VIDEO, dict(JOB_BODY, job_id="2"), clock()))
        assert await dispatcher.run_once() == 1
        first_row = await stored(store, first.delivery_id)
        second_row = await stored(store, second.delivery_id)
        assert "timeout" in (first_row.last_error or "")
        assert "no free handler thread" in (second_row.last_error or "")
        assert second_row.status == "pending"  # retried later, like any failure
        release.set()
        await until(lambda: dispatcher._threads.abandoned == 0)
        clock.advance(10_000)
        assert await dispatcher.run_once() == 2
        release.clear()

    run(tmp_path, scenario)


def test_a_route_can_have_its_own_handler_timeout(tmp_path: Path) -> None:
    clock = Clock()
    h = Handlers()

    @h.on_any
    async def takes_a_moment(event: Event) -> None:
        await asyncio.sleep(0.3)

    async def scenario(store: SQLiteStore) -> None:
        routes = dict(ROUTES, st=replace(SENSETIME, handler_timeout=5.0))
        config = replace(FAST, handler_timeout=0.05)
        video = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        st = await store.accept(callback(SENSETIME, {"taskId": 1}, clock()))
        dispatcher = Dispatcher(store, h, routes, config, clock=clock)
        assert await dispatcher.run_once() == 2
        assert (await stored(store, video.delivery_id)).status == "pending"  # 0.05 s: too short
        assert (await stored(store, st.delivery_id)).status == "delivered"  # its route's 5 s

    run(tmp_path, scenario)


# -- permanent failures and the on_dead hook ---------------------------------------------------


def test_permanent_error_kills_that_delivery_at_once_and_on_dead_runs_once(
    tmp_path: Path,
) -> None:
    clock = Clock()
    calls: list[str] = []
    letters: list[DeadLetter] = []
    h = Handlers()

    @h.on(MetaStudioJobResult)
    def refuses(event: MetaStudioJobResult) -> None:
        calls.append("refuses")
        raise PermanentError(f"job {event.job_id} was deleted at the platform")

    @h.on_any
    async def fine(event: Event) -> None:
        calls.append("fine")

    @h.on_dead
    async def park(dead: DeadLetter) -> None:
        letters.append(dead)

    @h.on_dead
    def broken_hook(dead: DeadLetter) -> None:
        raise RuntimeError("the pager is down")

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, h, ROUTES, CONFIG, clock=clock)
        with capture_logs() as logs:
            assert await dispatcher.run_once() == 1
        row = await stored(store, accepted.delivery_id)
        assert (row.status, row.attempts) == ("dead", 1)  # max_attempts is 3: not waited for
        refuses_name = next(n for n in row.handler_state if n.endswith("refuses"))
        message = "PermanentError: job job-1 was deleted at the platform"
        assert row.handler_state[refuses_name] == {
            "status": "dead",
            "attempts": 1,
            "error": message,
            "reason": "permanent",
        }
        assert row.last_error == f"{refuses_name}: {message}"
        assert calls == ["refuses", "fine"]
        (letter,) = letters
        assert letter.event.delivery_id == accepted.delivery_id
        assert letter.attempts == 1
        assert letter.errors == {refuses_name: message}
        failed_hooks = [e for e in logs if e["event"] == "dead_hook_failed"]
        assert [e["error_type"] for e in failed_hooks] == ["RuntimeError"]
        clock.advance(10_000)
        assert await dispatcher.run_once() == 0  # dead: never retried, the hook not called again
        assert len(letters) == 1

    run(tmp_path, scenario)


def test_on_dead_runs_when_retries_run_out_and_not_while_any_remain(tmp_path: Path) -> None:
    clock = Clock()
    letters: list[DeadLetter] = []
    h = Handlers()

    @h.on(MetaStudioJobResult)
    def always_fails(event: MetaStudioJobResult) -> None:
        raise RuntimeError("downstream is down")

    h.on_dead(letters.append)

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        dispatcher = Dispatcher(store, h, ROUTES, CONFIG, clock=clock)
        for attempt in range(1, CONFIG.max_attempts + 1):
            assert await dispatcher.run_once() == 1
            assert len(letters) == (1 if attempt == CONFIG.max_attempts else 0)
            clock.advance(CONFIG.backoff_max)
        assert (await stored(store, accepted.delivery_id)).status == "dead"
        assert letters[0].attempts == CONFIG.max_attempts

    run(tmp_path, scenario)


def test_permanent_error_is_a_callbacks_error_and_sinks_refusals_are_permanent() -> None:
    assert issubclass(PermanentError, CallbacksError)
    assert issubclass(DeliveryRefused, PermanentError)


def test_handlers_include_carries_the_dead_hooks() -> None:
    inner, outer = Handlers(), Handlers()

    @inner.on_dead
    def hook(dead: DeadLetter) -> None: ...

    outer.include(inner)
    outer.include(inner)
    assert outer.dead_hooks == (hook,)


# -- unhandled events --------------------------------------------------------------------------


def test_unhandled_events_are_replayed_into_handlers_added_later(tmp_path: Path) -> None:
    clock = Clock()
    got: list[Event] = []
    only_sensetime = Handlers()
    only_sensetime.on(SenseTimeCallback, got.append)
    with_video = Handlers()
    with_video.include(only_sensetime)
    with_video.on(MetaStudioJobResult, got.append)

    async def scenario(store: SQLiteStore) -> None:
        video = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        again = await store.accept(callback(VIDEO, dict(JOB_BODY, job_id="2"), clock()))
        st = await store.accept(callback(SENSETIME, {"taskId": 7}, clock()))
        with capture_logs() as logs:
            first = Dispatcher(store, only_sensetime, ROUTES, CONFIG, clock=clock)
            assert await first.run_once() == 3
        warned = [e for e in logs if e["event"] == "no_handler_for_event_type"]
        assert [e["event_type"] for e in warned] == ["MetaStudioJobResult"]  # once per type
        assert (await stored(store, video.delivery_id)).status == "unhandled"
        assert (await stored(store, again.delivery_id)).status == "unhandled"
        assert (await stored(store, st.delivery_id)).status == "delivered"
        assert await store.waiting_for_operator() == {("ms-video", "unhandled"): 2}

        # The handler is deployed: replay what had none.
        assert await store.requeue(unhandled=True, route="st") == 0
        assert await store.requeue(unhandled=True) == 2
        clock.advance(60)  # the re-queue is due at the real time
        second = Dispatcher(store, with_video, ROUTES, CONFIG, clock=clock)
        assert await second.run_once() == 2
        for event in (video, again):
            row = await stored(store, event.delivery_id)
            assert (row.status, row.attempts) == ("delivered", 1)
        assert sorted(e.delivery_id for e in got) == sorted(
            [st.delivery_id, video.delivery_id, again.delivery_id]
        )
        assert await store.waiting_for_operator() == {}

    run(tmp_path, scenario)


def test_a_removed_handler_no_longer_holds_its_events_back(tmp_path: Path) -> None:
    clock = Clock()
    h = Handlers()

    @h.on(MetaStudioJobResult)
    def flaky(event: MetaStudioJobResult) -> None:
        raise RuntimeError("once")

    @h.on_any
    def stays(event: Event) -> None: ...

    without_flaky = Handlers()
    without_flaky.on_any(stays)

    async def scenario(store: SQLiteStore) -> None:
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        assert await Dispatcher(store, h, ROUTES, CONFIG, clock=clock).run_once() == 1
        assert (await stored(store, accepted.delivery_id)).status == "pending"
        clock.advance(CONFIG.backoff_max)
        after_deploy = Dispatcher(store, without_flaky, ROUTES, CONFIG, clock=clock)
        assert await after_deploy.run_once() == 1
        row = await stored(store, accepted.delivery_id)
        assert row.status == "delivered"
        assert row.last_error is None

    run(tmp_path, scenario)


def test_no_handlers_at_all_is_warned_at_start(tmp_path: Path) -> None:
    async def scenario(store: SQLiteStore) -> None:
        with capture_logs() as logs:
            dispatcher = Dispatcher(store, Handlers(), ROUTES, CONFIG)
            dispatcher.start()
            await dispatcher.stop()
            with_one = Handlers()
            with_one.on_any(lambda event: None)
            dispatcher = Dispatcher(store, with_one, ROUTES, CONFIG)
            dispatcher.start()
            await dispatcher.stop()
        assert [e["event"] for e in logs].count("no_handlers_configured") == 1

    run(tmp_path, scenario)


# -- leases ------------------------------------------------------------------------------------


def test_a_renewed_lease_keeps_other_dispatchers_off_a_long_handler(tmp_path: Path) -> None:
    clock = Clock()
    release = asyncio.Event()
    runs: list[str] = []
    h = Handlers()

    @h.on(MetaStudioJobResult)
    async def long_job(event: MetaStudioJobResult) -> None:
        runs.append(event.delivery_id)
        await release.wait()

    async def scenario(store: SQLiteStore) -> None:
        config = replace(CONFIG, handler_timeout=3600.0)
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        first = Dispatcher(store, h, ROUTES, config, clock=clock)
        other = Dispatcher(store, h, ROUTES, config, clock=clock)
        running = asyncio.create_task(first.run_once())
        await until(lambda: len(runs) == 1)
        for _ in range(3):  # the handler outlives its lease three times over
            clock.advance(config.lease_seconds * 0.6)
            assert await first.renew_leases() == 0
            clock.advance(config.lease_seconds * 0.6)
            assert await other.run_once() == 0
        release.set()
        assert await running == 1
        assert runs == [accepted.delivery_id]
        assert (await stored(store, accepted.delivery_id)).status == "delivered"

    run(tmp_path, scenario)


def test_a_run_whose_lease_was_lost_cannot_overwrite_the_new_owners_outcome(
    tmp_path: Path,
) -> None:
    clock = Clock()
    release = asyncio.Event()
    runs: list[str] = []
    slow, quick = Handlers(), Handlers()

    @slow.on(MetaStudioJobResult)
    async def stuck(event: MetaStudioJobResult) -> None:
        runs.append("stuck")
        await release.wait()
        raise RuntimeError("late, and wrong")

    @quick.on(MetaStudioJobResult)
    async def stuck_fixed(event: MetaStudioJobResult) -> None:
        runs.append("quick")

    async def scenario(store: SQLiteStore) -> None:
        config = replace(CONFIG, handler_timeout=3600.0)
        before = sample("avatar_callbacks_lease_renewals_lost_total", {"at": "renew"})
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        first = Dispatcher(store, slow, ROUTES, config, clock=clock)
        running = asyncio.create_task(first.run_once())
        await until(lambda: runs == ["stuck"])
        # No renewal reached the store in time (a paused process, say): another one takes over.
        clock.advance(config.lease_seconds + 1)
        assert await Dispatcher(store, quick, ROUTES, config, clock=clock).run_once() == 1
        taken_over = await stored(store, accepted.delivery_id)
        assert taken_over.status == "delivered"
        with capture_logs() as logs:
            assert await first.renew_leases() == 1
        assert [e["event"] for e in logs] == ["dispatch_lease_lost"]
        release.set()
        assert await running == 1
        row = await stored(store, accepted.delivery_id)
        assert (row.status, row.handler_state, row.attempts) == (
            "delivered",
            taken_over.handler_state,
            taken_over.attempts,
        )
        after = sample("avatar_callbacks_lease_renewals_lost_total", {"at": "renew"})
        assert after == before + 1

    run(tmp_path, scenario)


def test_an_outcome_is_refused_when_the_lease_changed_hands_before_any_renewal(
    tmp_path: Path,
) -> None:
    clock = Clock()
    release = asyncio.Event()
    h = Handlers()

    @h.on(MetaStudioJobResult)
    async def stuck(event: MetaStudioJobResult) -> None:
        await release.wait()

    async def scenario(store: SQLiteStore) -> None:
        config = replace(CONFIG, handler_timeout=3600.0)
        before = sample("avatar_callbacks_lease_renewals_lost_total", {"at": "finish"})
        accepted = await store.accept(callback(VIDEO, JOB_BODY, clock()))
        first = Dispatcher(store, h, ROUTES, config, clock=clock)
        running = asyncio.create_task(first.run_once())
        await until(lambda: bool(first._held))
        clock.advance(config.lease_seconds + 1)
        [taken] = await store.claim(owner="other", now=clock(), limit=5, lease_seconds=60)
        assert taken.id == accepted.delivery_id
        release.set()
        await running
        row = await stored(store, accepted.delivery_id)
        assert (row.status, row.attempts) == ("pending", 0)  # still the other claimer's
        after = sample("avatar_callbacks_lease_renewals_lost_total", {"at": "finish"})
        assert after == before + 1

    run(tmp_path, scenario)


# -- the store failing -------------------------------------------------------------------------


def test_store_outage_backs_off_and_logs_once_per_state_change() -> None:
    outage = StoreOutage(0.5, 30.0, rng=lambda: 1.0)
    with capture_logs() as logs:
        delays = [outage.failed(RuntimeError("read-only"), "claim") for _ in range(12)]
        assert outage.failing
        assert outage.wait_time() > 0
        outage.succeeded()
        outage.succeeded()
    assert delays[:7] == [0.5, 1, 2, 4, 8, 16, 30]
    assert set(delays[6:]) == {30.0}  # capped
    assert [(e["event"], e.get("failures")) for e in logs] == [
        ("dispatch_store_unavailable", None),
        ("dispatch_store_recovered", 12),
    ]
    assert not outage.failing
    assert outage.wait_time() == 0


def test_store_outage_jitter_stays_within_half_and_full_delay() -> None:
    low = StoreOutage(1.0, 8.0, rng=lambda: 0.0)
    high = StoreOutage(1.0, 8.0, rng=lambda: 1.0)
    for _ in range(6):
        a, b = low.failed(OSError(), "claim"), high.failed(OSError(), "claim")
        assert a == b / 2


def test_dispatch_config_reads_timeouts_and_store_backoff() -> None:
    from callbacks.config import parse_config

    route = {
        "name": "st",
        "path": "/cb/st",
        "provider": "sensetime",
        "public_url": "https://hooks.example.com/cb/st",
    }
    config = parse_config({"routes": [route]})
    assert config.dispatch.handler_timeout == 30.0
    assert config.dispatch.sync_threads == config.dispatch.concurrency
    assert config.routes[0].handler_timeout is None
    config = parse_config(
        {
            "dispatch": {
                "handler_timeout": 2,
                "handler_threads": 3,
                "store_backoff_initial": 0.1,
                "store_backoff_max": 5,
            },
            "routes": [dict(route, handler_timeout=120)],
        }
    )
    assert config.dispatch == DispatchConfig(
        handler_timeout=2.0, handler_threads=3, store_backoff_initial=0.1, store_backoff_max=5.0
    )
    assert config.dispatch.sync_threads == 3
    assert config.routes[0].handler_timeout == 120.0
    from callbacks.errors import ConfigError

    for bad in ({"handler_timeout": 0}, {"handler_timeout": "30"}, {"handler_threads": -1}):
        with pytest.raises(ConfigError, match=r"dispatch\.handler_t"):
            parse_config({"dispatch": bad})
    with pytest.raises(ConfigError, match=r"routes\[0\] \(st\).handler_timeout"):
        parse_config({"routes": [dict(route, handler_timeout=-1)]})


SETTINGS = st.sampled_from(
    ["handler_timeout", "handler_threads", "store_backoff_initial", "store_backoff_max"]
)
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@given(setting=SETTINGS, value=VALUES, on_route=st.booleans())
def test_any_dispatch_setting_value_is_taken_in_range_or_refused_with_config_error(
    setting: str, value: object, on_route: bool
) -> None:
    from callbacks.config import parse_config
    from callbacks.errors import ConfigError

    route = {
        "name": "st",
        "path": "/cb/st",
        "provider": "sensetime",
        "public_url": "https://hooks.example.com/cb/st",
    }
    if on_route:
        setting = "handler_timeout"
        data: dict[str, object] = {"routes": [dict(route, handler_timeout=value)]}
    else:
        data = {"dispatch": {setting: value}}
    refused: ConfigError | None = None
    try:
        config = parse_config(data)
    except ConfigError as exc:
        refused = exc
    if refused is not None:
        assert setting in refused.setting
        return
    taken = config.routes[0].handler_timeout if on_route else getattr(config.dispatch, setting)
    assert taken == value
    assert not isinstance(value, bool)
    assert isinstance(taken, int | float)
    assert taken >= 0
