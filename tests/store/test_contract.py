"""One contract for every inbox backend: SQLite and PostgreSQL must behave the same.

Each test runs once per backend. The PostgreSQL runs use a private schema per test (the
``postgres_schema_url`` fixture) and skip, with the reason, when there is no server. The tests are
plain functions that run a coroutine with ``asyncio.run``; time is passed in (``now``), never
slept.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from callbacks.errors import SchemaOutOfDate, StoreUnavailable
from callbacks.store import (
    SCHEMA_VERSION,
    EventFilter,
    InboundCallback,
    KeyUsage,
    Lease,
    Outcome,
    Store,
    new_delivery_id,
)

T = TypeVar("T")
StoreFactory = Callable[[], Store]
NOW = 1_763_856_000.0
LEASE = 30.0
BODY = b'{"jobId": 7, "state": "SUCCEED", "text": "caf\xc3\xa9"}\x00\xff\xfe'


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of unopened stores that all share one database (file or schema)."""
    if request.param == "sqlite":
        from callbacks.store.sqlite import SQLiteStore

        path = tmp_path / "inbox.db"
        return lambda: SQLiteStore(path)
    url = request.getfixturevalue("postgres_schema_url")  # skips when there is no server
    from callbacks.store.postgres import PostgresStore

    return lambda: PostgresStore(url)


def run(make_store: StoreFactory, scenario: Callable[[Store], Awaitable[T]]) -> T:
    """Upgrade a fresh store, run ``scenario`` on it, close it."""

    async def main() -> T:
        store = make_store()
        await store.upgrade()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


_sequence = iter(range(1, 1_000_000))


def callback(
    *,
    dedupe_key: str | None = None,
    route: str = "sensetime",
    key_id: str | None = "k1",
    received_at: float = NOW,
    body: bytes = BODY,
) -> InboundCallback:
    """A callback with a unique delivery id that sorts by ``received_at`` (then by creation)."""
    n = next(_sequence)
    return InboundCallback(
        delivery_id=new_delivery_id(received_at)[:12] + f"{n:020x}",
        route=route,
        provider="sensetime" if route == "sensetime" else "metastudio",
        event_type="job.finished",
        dedupe_key=dedupe_key or f"dedupe-{n}",
        key_id=key_id,
        received_at=received_at,
        body=body,
    )


def outcome(status: Any, handler_state: dict[str, Any], attempts: int = 1) -> Outcome:
    return Outcome(
        status, attempts, NOW, handler_state, "b: boom" if status != "delivered" else None
    )


async def accept_all(store: Store, *callbacks: InboundCallback) -> list[str]:
    return [(await store.accept(cb)).delivery_id for cb in callbacks]


async def make_dead(store: Store, cb: InboundCallback, handler_state: dict[str, Any]) -> None:
    """Store ``cb`` and take it through one dispatch round that ends with it dead."""
    await store.accept(cb)
    claimed = await store.claim(owner="d", now=NOW + 1, limit=100, lease_seconds=LEASE)
    assert cb.delivery_id in {e.id for e in claimed}
    for event in claimed:
        final = outcome("dead", handler_state) if event.id == cb.delivery_id else None
        if final is None:  # put back anything else this claim took
            final = Outcome("pending", 0, NOW, {}, None)
        assert await store.finish_many([(event.id, final)], owner="d") == 1


# -- schema --------------------------------------------------------------------------------------


def test_open_without_schema_raises_schema_out_of_date(make_store: StoreFactory) -> None:
    async def main() -> None:
        store = make_store()
        with pytest.raises(SchemaOutOfDate, match="callbacks db upgrade"):
            await store.open()
        await store.close()

    asyncio.run(main())


def test_upgrade_is_idempotent_and_then_open_works(make_store: StoreFactory) -> None:
    async def main() -> None:
        first = make_store()
        assert await first.upgrade() == SCHEMA_VERSION
        assert await first.upgrade() == SCHEMA_VERSION
        await first.close()
        second = make_store()
        assert await second.upgrade() == SCHEMA_VERSION
        await second.close()
        opened = make_store()
        await opened.open()
        await opened.ping()
        assert await opened.inbox_depth() == 0
        await opened.close()

    asyncio.run(main())


def set_schema_version(request: pytest.FixtureRequest, tmp_path: Path, version: int) -> None:
    """Write ``version`` into the schema of the store ``make_store`` makes, as a release would."""
    if request.node.callspec.params["make_store"] == "sqlite":
        with contextlib.closing(sqlite3.connect(tmp_path / "inbox.db")) as conn, conn:
            conn.execute("UPDATE schema_version SET version = ?", (version,))
        return
    import psycopg

    url = request.getfixturevalue("postgres_schema_url")
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute("UPDATE avatar_callbacks_schema_version SET version = %s", (version,))


def test_a_schema_from_a_newer_release_is_refused_the_same_way_by_every_backend(
    make_store: StoreFactory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    newer = SCHEMA_VERSION + 1

    async def main() -> None:
        store = make_store()
        await store.upgrade()
        await store.close()
        set_schema_version(request, tmp_path, newer)
        for attempt in ("open", "upgrade"):  # neither may touch a schema it does not know
            store = make_store()
            with pytest.raises(
                SchemaOutOfDate, match=f"version {newer}, from a newer release.*run the newer"
            ):
                await getattr(store, attempt)()
            await store.close()

    asyncio.run(main())


# -- accepting -----------------------------------------------------------------------------------


def test_accept_stores_the_event_and_get_returns_it_intact(make_store: StoreFactory) -> None:
    cb = callback(key_id=None)

    async def scenario(store: Store) -> None:
        accepted = await store.accept(cb)
        assert accepted.delivery_id == cb.delivery_id
        assert not accepted.duplicate
        event = await store.get(cb.delivery_id)
        assert event is not None
        assert (event.id, event.route, event.provider, event.event_type) == (
            cb.delivery_id,
            cb.route,
            cb.provider,
            cb.event_type,
        )
        assert event.body == BODY
        assert isinstance(event.body, bytes)
        assert event.key_id is None
        assert event.received_at == NOW
        assert event.status == "pending"
        assert event.attempts == 0
        assert event.next_attempt_at == NOW
        assert event.handler_state == {}
        assert event.last_error is None
        assert event.duplicate_of is None

    run(make_store, scenario)


def test_get_matches_a_unique_id_prefix_only(make_store: StoreFactory) -> None:
    a, b = callback(), callback()

    async def scenario(store: Store) -> None:
        await accept_all(store, a, b)
        common = 0
        while a.delivery_id[common] == b.delivery_id[common]:
            common += 1
        found = await store.get(a.delivery_id[: common + 1])
        assert found is not None
        assert found.id == a.delivery_id
        assert await store.get(a.delivery_id[:common]) is None  # ambiguous
        assert await store.get("ffff") is None  # nothing
        assert await store.get("%") is None  # a literal, not a wildcard
        assert await store.get("_") is None

    run(make_store, scenario)


def test_a_duplicate_dedupe_key_is_kept_as_a_duplicate_of_the_original(
    make_store: StoreFactory,
) -> None:
    original, again, third = (callback(dedupe_key="job-7") for _ in range(3))

    async def scenario(store: Store) -> None:
        first = await store.accept(original)
        second = await store.accept(again)
        last = await store.accept(third)
        assert first.duplicate_of is None
        assert second.duplicate_of == original.delivery_id
        assert last.duplicate_of == original.delivery_id
        assert second.delivery_id == again.delivery_id
        duplicate = await store.get(again.delivery_id)
        assert duplicate is not None
        assert duplicate.status == "duplicate"
        assert duplicate.duplicate_of == original.delivery_id
        # A duplicate keeps the digest of what it carried, not the body again.
        assert duplicate.body == b""
        assert duplicate.body_sha256 == hashlib.sha256(BODY).hexdigest()
        kept = await store.get(original.delivery_id)
        assert kept is not None
        assert kept.body == BODY
        assert kept.body_sha256 is None
        assert await store.inbox_depth() == 1
        pending = await store.list_events(EventFilter(status="pending"))
        assert [e.id for e in pending] == [original.delivery_id]
        assert len(await store.list_events(EventFilter(status="duplicate"))) == 2

    run(make_store, scenario)


def test_duplicates_of_a_large_body_do_not_store_it_again(make_store: StoreFactory) -> None:
    """19 replays of a 1 MiB callback must not add ~19 MiB."""
    big = (
        b'{"blob": "'
        + bytes(random.Random(7).choice(b"abcdef0123456789") for _ in range(1 << 20))
        + b'"}'
    )
    original = callback(dedupe_key="big", body=big)
    replays = [callback(dedupe_key="big", body=big) for _ in range(19)]

    async def scenario(store: Store) -> int:
        await store.accept(original)
        before = await _stored_bytes(store)
        for replay in replays:
            assert (await store.accept(replay)).duplicate_of == original.delivery_id
        return await _stored_bytes(store) - before

    growth = run(make_store, scenario)
    assert growth < 256 * 1024, f"19 duplicates of a 1 MiB body added {growth} bytes"


async def _stored_bytes(store: Store) -> int:
    """The table's size as the database counts it (pages in use, TOAST included)."""
    from callbacks.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            pages, free, size = (
                conn.execute(f"PRAGMA {p}").fetchone()[0]
                for p in ("page_count", "freelist_count", "page_size")
            )
        return int((pages - free) * size)
    from callbacks.store.postgres import EVENTS

    async with store._connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute("SELECT pg_total_relation_size(%s)", (EVENTS,))
        row = await cur.fetchone()
    return int(row[0])


# -- claiming and finishing ----------------------------------------------------------------------


def test_claim_takes_due_events_and_hides_them_for_the_lease(make_store: StoreFactory) -> None:
    due = [callback(received_at=NOW - 10 + i) for i in range(3)]
    later = callback(received_at=NOW + 100)  # next_attempt_at starts at received_at

    async def scenario(store: Store) -> None:
        await accept_all(store, *due, later)
        claimed = await store.claim(owner="a", now=NOW, limit=10, lease_seconds=LEASE)
        assert [e.id for e in claimed] == sorted(cb.delivery_id for cb in due)
        assert (
            await store.claim(owner="b", now=NOW + LEASE - 1, limit=10, lease_seconds=LEASE) == []
        )
        taken_over = await store.claim(owner="b", now=NOW + LEASE + 1, limit=10, lease_seconds=999)
        assert {e.id for e in taken_over} == {cb.delivery_id for cb in due}
        # ``later`` became due too at NOW + 100, not before
        final = await store.claim(owner="c", now=NOW + 100, limit=10, lease_seconds=LEASE)
        assert [e.id for e in final] == [later.delivery_id]

    run(make_store, scenario)


def test_an_event_accepted_leased_is_hidden_from_claims_until_its_lease_ends(
    make_store: StoreFactory,
) -> None:
    """The receiver's hand-over: stored already claimed, finished by its owner without a claim."""
    plain = callback(received_at=NOW - 2)
    leased = callback(received_at=NOW - 1)
    lapsed = callback()

    async def scenario(store: Store) -> None:
        await store.accept(plain)
        await store.accept(leased, Lease("mine", NOW + LEASE))
        await store.accept(lapsed, Lease("dead", NOW + LEASE))
        claimed = await store.claim(owner="other", now=NOW, limit=10, lease_seconds=LEASE)
        assert [e.id for e in claimed] == [plain.delivery_id]
        done = Outcome("delivered", 1, NOW, {"h": {"status": "ok", "attempts": 1}}, None)
        assert await store.finish_many([(leased.delivery_id, done)], owner="other") == 0
        assert await store.finish_many([(leased.delivery_id, done)], owner="mine") == 1
        stored = await store.get(leased.delivery_id)
        assert stored is not None
        assert stored.status == "delivered"
        # The lease of an owner that never finished lapses like a claim's.
        late = await store.claim(owner="next", now=NOW + LEASE + 1, limit=10, lease_seconds=LEASE)
        assert {e.id for e in late} == {plain.delivery_id, lapsed.delivery_id}

    run(make_store, scenario)


def test_claim_respects_the_limit_oldest_due_first(make_store: StoreFactory) -> None:
    cbs = [callback(received_at=NOW - 100 + i) for i in range(5)]

    async def scenario(store: Store) -> None:
        await accept_all(store, *reversed(cbs))
        claimed = await store.claim(owner="a", now=NOW, limit=2, lease_seconds=LEASE)
        assert [e.id for e in claimed] == [cbs[0].delivery_id, cbs[1].delivery_id]
        rest = await store.claim(owner="a", now=NOW, limit=10, lease_seconds=LEASE)
        assert len(rest) == 3

    run(make_store, scenario)


def test_finish_writes_the_outcome_only_for_the_owner(make_store: StoreFactory) -> None:
    cb = callback()
    state = {"a": {"status": "ok", "attempts": 1}, "b": {"status": "failed", "attempts": 1}}

    async def scenario(store: Store) -> None:
        await store.accept(cb)
        [event] = await store.claim(owner="mine", now=NOW, limit=1, lease_seconds=LEASE)
        retry = Outcome("pending", 1, NOW + 50, state, "b: boom")
        assert await store.finish_many([(event.id, retry)], owner="someone-else") == 0
        assert await store.finish_many([(event.id, retry)], owner="mine") == 1
        assert await store.finish_many([(event.id, retry)], owner="mine") == 0  # claim released
        stored = await store.get(cb.delivery_id)
        assert stored is not None
        assert (stored.status, stored.attempts, stored.next_attempt_at) == ("pending", 1, NOW + 50)
        assert stored.handler_state == state
        assert stored.last_error == "b: boom"
        # released: claimable again once due, without waiting for the lease
        assert await store.claim(owner="x", now=NOW + 49, limit=1, lease_seconds=LEASE) == []
        again = await store.claim(owner="x", now=NOW + 50, limit=1, lease_seconds=LEASE)
        assert [e.id for e in again] == [cb.delivery_id]
        done = Outcome("delivered", 2, NOW + 51, {"a": state["a"], "b": {"status": "ok"}}, None)
        assert await store.finish_many([(cb.delivery_id, done)], owner="x") == 1
        assert await store.inbox_depth() == 0
        assert await store.claim(owner="x", now=NOW + 999, limit=1, lease_seconds=LEASE) == []

    run(make_store, scenario)


# -- re-queueing -----------------------------------------------------------------------------


MIXED = {
    "ok-one": {"status": "ok", "attempts": 1},
    "dead-one": {"status": "dead", "attempts": 5, "error": "x"},
}


def test_requeue_dead_resets_only_the_failed_handlers(make_store: StoreFactory) -> None:
    a, b = callback(route="sensetime"), callback(route="metastudio")

    async def scenario(store: Store) -> None:
        await make_dead(store, a, MIXED)
        await make_dead(store, b, MIXED)
        assert await store.requeue(dead=True) == 2
        for cb in (a, b):
            event = await store.get(cb.delivery_id)
            assert event is not None
            assert (event.status, event.attempts, event.last_error) == ("pending", 0, None)
            assert event.handler_state == {"ok-one": MIXED["ok-one"]}
        assert await store.requeue(dead=True) == 0
        claimed = await store.claim(owner="z", now=time.time(), limit=10, lease_seconds=LEASE)
        assert {e.id for e in claimed} == {a.delivery_id, b.delivery_id}

    run(make_store, scenario)


def test_requeue_dead_by_route(make_store: StoreFactory) -> None:
    a, b = callback(route="sensetime"), callback(route="metastudio")

    async def scenario(store: Store) -> None:
        await make_dead(store, a, MIXED)
        await make_dead(store, b, MIXED)
        assert await store.requeue(dead=True, route="metastudio") == 1
        event_a, event_b = await store.get(a.delivery_id), await store.get(b.delivery_id)
        assert event_a is not None
        assert event_b is not None
        assert (event_a.status, event_b.status) == ("dead", "pending")

    run(make_store, scenario)


def test_requeue_by_ids_forgets_every_handler_when_all_succeeded(
    make_store: StoreFactory,
) -> None:
    delivered, dead, original, duplicate = (
        callback(),
        callback(),
        callback(dedupe_key="dup"),
        callback(dedupe_key="dup"),
    )
    all_ok = {"a": {"status": "ok", "attempts": 1}, "b": {"status": "ok", "attempts": 2}}

    async def scenario(store: Store) -> None:
        await accept_all(store, delivered)
        [event] = await store.claim(owner="d", now=NOW, limit=1, lease_seconds=LEASE)
        assert await store.finish_many([(event.id, outcome("delivered", all_ok))], owner="d") == 1
        await make_dead(store, dead, MIXED)
        await accept_all(store, original, duplicate)
        ids = [delivered.delivery_id, dead.delivery_id, duplicate.delivery_id, "nope"]
        assert await store.requeue(ids) == 2  # the duplicate and the unknown id are skipped
        replayed = await store.get(delivered.delivery_id)
        assert replayed is not None
        assert (replayed.status, replayed.handler_state) == ("pending", {})
        partly = await store.get(dead.delivery_id)
        assert partly is not None
        assert partly.handler_state == {"ok-one": MIXED["ok-one"]}
        still = await store.get(duplicate.delivery_id)
        assert still is not None
        assert still.status == "duplicate"

    run(make_store, scenario)


# -- purging, key usage, depth, listing ----------------------------------------------------------


def test_purge_removes_old_events_that_are_not_pending(make_store: StoreFactory) -> None:
    old_done, old_pending, new_done = (
        callback(dedupe_key="old", received_at=NOW - 1000),
        callback(received_at=NOW - 1000),
        callback(received_at=NOW - 10),
    )
    old_duplicate = callback(dedupe_key="old", received_at=NOW - 999)

    async def scenario(store: Store) -> None:
        await accept_all(store, old_done, old_pending, new_done, old_duplicate)
        claimed = await store.claim(owner="d", now=NOW, limit=10, lease_seconds=LEASE)
        assert len(claimed) == 3
        for event in claimed:
            status = "pending" if event.id == old_pending.delivery_id else "delivered"
            assert await store.finish_many([(event.id, outcome(status, {}))], owner="d") == 1
        assert await store.purge(NOW - 500) == 2  # old_done and old_duplicate
        remaining = {e.id for e in await store.list_events(EventFilter())}
        assert remaining == {old_pending.delivery_id, new_done.delivery_id}
        assert await store.purge(NOW - 500) == 0

    run(make_store, scenario)


def test_purge_keeps_dead_events_unless_asked_and_a_dry_run_only_counts(
    make_store: StoreFactory,
) -> None:
    done, dead = callback(received_at=NOW - 1000), callback(received_at=NOW - 1000)

    async def scenario(store: Store) -> None:
        await accept_all(store, done, dead)
        for event in await store.claim(owner="d", now=NOW, limit=10, lease_seconds=LEASE):
            status = "dead" if event.id == dead.delivery_id else "delivered"
            assert await store.finish_many([(event.id, outcome(status, {}))], owner="d") == 1
        assert await store.purge(NOW, include_dead=True, dry_run=True) == 2
        assert await store.purge(NOW, dry_run=True) == 1
        assert len(await store.list_events(EventFilter())) == 2, "a dry run deletes nothing"
        assert await store.purge(NOW) == 1
        assert [e.id for e in await store.list_events(EventFilter())] == [dead.delivery_id]
        assert await store.purge(NOW, include_dead=True) == 1
        assert await store.list_events(EventFilter()) == []

    run(make_store, scenario)


def test_key_usage_counts_the_last_day_per_route_and_key(make_store: StoreFactory) -> None:
    cbs = [
        callback(route="sensetime", key_id="k1", received_at=NOW - 90_000),
        callback(route="sensetime", key_id="k1", received_at=NOW - 100),
        callback(route="sensetime", key_id="k1", received_at=NOW - 50),
        callback(route="sensetime", key_id="k2", received_at=NOW - 90_000),
        callback(route="metastudio", key_id="k1", received_at=NOW - 10),
        callback(route="metastudio", key_id=None, received_at=NOW - 10),
    ]

    async def scenario(store: Store) -> None:
        await accept_all(store, *cbs)
        usage = sorted(await store.key_usage(NOW), key=lambda u: (u.route, u.key_id))
        assert usage == [
            KeyUsage("metastudio", "k1", NOW - 10, 1),
            KeyUsage("sensetime", "k1", NOW - 50, 2),
            KeyUsage("sensetime", "k2", NOW - 90_000, 0),
        ]

    run(make_store, scenario)


def test_key_usage_keeps_the_latest_verification_in_any_order_duplicates_included(
    make_store: StoreFactory,
) -> None:
    """A retry verified with the key is evidence of its use too; a late-arriving older callback
    does not move the last verification back."""
    newest = callback(key_id="k1", received_at=NOW - 20, dedupe_key="same")
    retry = callback(key_id="k2", received_at=NOW - 5, dedupe_key="same")
    older = callback(key_id="k1", received_at=NOW - 3_000)

    async def scenario(store: Store) -> None:
        await accept_all(store, newest)
        assert (await store.accept(retry)).duplicate_of == newest.delivery_id
        await accept_all(store, older)
        usage = sorted(await store.key_usage(NOW), key=lambda u: u.key_id)
        assert usage == [
            KeyUsage("sensetime", "k1", NOW - 20, 2),
            KeyUsage("sensetime", "k2", NOW - 5, 1),
        ]

    run(make_store, scenario)


def test_time_ranges_keep_every_event_inside_them(make_store: StoreFactory) -> None:
    """The lists' since/until and the purge bound the id as well; events a millisecond either
    side of a bound fall on the side their received_at says."""
    at = [NOW - 0.0015, NOW - 0.0004, NOW, NOW + 0.0004, NOW + 0.0016]
    cbs = [callback(received_at=t) for t in at]

    async def scenario(store: Store) -> None:
        await accept_all(store, *cbs)
        since = await store.list_events(EventFilter(since=NOW - 0.0004))
        assert sorted(e.id for e in since) == [c.delivery_id for c in cbs[1:]]
        until = await store.list_events(EventFilter(until=NOW + 0.0004))
        assert sorted(e.id for e in until) == [c.delivery_id for c in cbs[:3]]
        both = await store.list_events(EventFilter(since=NOW, until=NOW + 0.0016))
        assert sorted(e.id for e in both) == [c.delivery_id for c in cbs[2:4]]

    run(make_store, scenario)


def test_inbox_depth_counts_pending_events_only(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        assert await store.inbox_depth() == 0
        await accept_all(store, callback(), callback(dedupe_key="d"), callback(dedupe_key="d"))
        assert await store.inbox_depth() == 2
        [event, _] = await store.claim(owner="o", now=NOW, limit=10, lease_seconds=LEASE)
        assert await store.inbox_depth() == 2  # claimed is still pending
        assert await store.finish_many([(event.id, outcome("delivered", {}))], owner="o") == 1
        assert await store.inbox_depth() == 1

    run(make_store, scenario)


def test_list_filters_newest_first(make_store: StoreFactory) -> None:
    cbs = [
        callback(route="sensetime" if i % 2 else "metastudio", received_at=NOW + i)
        for i in range(6)
    ]

    async def scenario(store: Store) -> None:
        await accept_all(store, *cbs)
        newest_first = [cb.delivery_id for cb in reversed(cbs)]
        assert [e.id for e in await store.list_events(EventFilter())] == newest_first
        assert [e.id for e in await store.list_events(EventFilter(limit=2))] == newest_first[:2]
        by_route = await store.list_events(EventFilter(route="sensetime"))
        assert [e.id for e in by_route] == [
            cbs[5].delivery_id,
            cbs[3].delivery_id,
            cbs[1].delivery_id,
        ]
        since = await store.list_events(EventFilter(since=NOW + 4))
        assert [e.id for e in since] == [cbs[5].delivery_id, cbs[4].delivery_id]
        combined = await store.list_events(EventFilter(route="metastudio", since=NOW + 1, limit=1))
        assert [e.id for e in combined] == [cbs[4].delivery_id]
        [event, *_] = await store.claim(owner="o", now=NOW + 10, limit=1, lease_seconds=LEASE)
        assert await store.finish_many([(event.id, outcome("dead", MIXED))], owner="o") == 1
        dead = await store.list_events(EventFilter(status="dead"))
        assert [e.id for e in dead] == [event.id]
        assert dead[0].handler_state == MIXED
        assert await store.list_events(EventFilter(status="delivered")) == []

    run(make_store, scenario)


# -- availability --------------------------------------------------------------------------------


def test_a_closed_store_is_unavailable(make_store: StoreFactory) -> None:
    async def main() -> None:
        store = make_store()
        await store.upgrade()
        await store.ping()
        await store.close()
        with pytest.raises(StoreUnavailable):
            await store.accept(callback())
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.claim(owner="o", now=NOW, limit=1, lease_seconds=LEASE)

    asyncio.run(main())
