"""PostgreSQL only: several replicas (here, several pools) sharing one inbox.

What the contract suite cannot show with one process: dedupe races between replicas, claims that
never overlap (SKIP LOCKED), a crashed replica's claim taken over after its lease, concurrent
schema upgrades, and connection errors that do not leak the URL's password.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

pytest.importorskip("psycopg")

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from callbacks.errors import StoreUnavailable
from callbacks.store import (
    SCHEMA_VERSION,
    Accepted,
    InboundCallback,
    Outcome,
    StoredEvent,
    new_delivery_id,
)
from callbacks.store.postgres import EVENTS, PostgresStore

pytestmark = pytest.mark.postgres

T = TypeVar("T")
NOW = 1_763_856_000.0
LEASE = 30.0


def callback(dedupe_key: str, received_at: float = NOW) -> InboundCallback:
    return InboundCallback(
        delivery_id=new_delivery_id(received_at),
        route="sensetime",
        provider="sensetime",
        event_type="job.finished",
        dedupe_key=dedupe_key,
        key_id="k1",
        received_at=received_at,
        body=b'{"taskId": 1}',
    )


def with_replicas(url: str, scenario: Callable[[PostgresStore, PostgresStore], Awaitable[T]]) -> T:
    """Two stores with a pool each, as two receiver replicas would have, on one schema."""

    async def main() -> T:
        one, two = PostgresStore(url), PostgresStore(url)
        await one.upgrade()
        await two.open()
        try:
            return await scenario(one, two)
        finally:
            await one.close()
            await two.close()

    return asyncio.run(main())


async def count_by_status(url: str) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(f"SELECT status, COUNT(*) FROM {EVENTS} GROUP BY status")  # noqa: S608
        return {str(status): int(count) for status, count in await cur.fetchall()}


def test_replicas_accepting_the_same_keys_keep_one_pending_event_each(
    postgres_schema_url: str,
) -> None:
    keys = [f"job-{i}" for i in range(50)]

    async def scenario(one: PostgresStore, two: PostgresStore) -> list[tuple[str, Accepted]]:
        calls = [(key, store) for key in keys for store in (one, two)]

        async def accept(key: str, store: PostgresStore) -> tuple[str, Accepted]:
            return key, await store.accept(callback(key))

        return await asyncio.gather(*(accept(key, store) for key, store in calls))

    results = with_replicas(postgres_schema_url, scenario)
    assert asyncio.run(count_by_status(postgres_schema_url)) == {"pending": 50, "duplicate": 50}
    for key in keys:
        pair = [accepted for k, accepted in results if k == key]
        originals = [a for a in pair if not a.duplicate]
        duplicates = [a for a in pair if a.duplicate]
        assert len(originals) == 1
        assert len(duplicates) == 1
        assert duplicates[0].duplicate_of == originals[0].delivery_id


def test_accept_waits_for_a_racing_insert_and_records_a_duplicate_of_it(
    postgres_schema_url: str,
) -> None:
    """The other replica's insert is still uncommitted when ours starts: the race path."""
    rival = callback("contended")
    ours = callback("contended")

    async def scenario(one: PostgresStore, two: PostgresStore) -> Accepted:
        async with await psycopg.AsyncConnection.connect(postgres_schema_url) as conn:
            await conn.execute(
                f"INSERT INTO {EVENTS} (id, route, provider, event_type, dedupe_key, "  # noqa: S608
                "received_at, body, status, next_attempt_at, updated_at) "
                "VALUES (%s, 'sensetime', 'sensetime', 'job.finished', 'contended', "
                "%s, %s, 'pending', %s, %s)",
                (rival.delivery_id, NOW, rival.body, NOW, NOW),
            )
            pending = asyncio.create_task(one.accept(ours))
            await asyncio.sleep(0.5)
            assert not pending.done()  # waiting on the rival's uncommitted unique key
            await conn.commit()
        return await pending

    accepted = with_replicas(postgres_schema_url, scenario)
    assert accepted.delivery_id == ours.delivery_id
    assert accepted.duplicate_of == rival.delivery_id
    assert asyncio.run(count_by_status(postgres_schema_url)) == {"pending": 1, "duplicate": 1}


def test_replicas_claiming_at_once_take_every_event_exactly_once(
    postgres_schema_url: str,
) -> None:
    async def drain(store: PostgresStore, owner: str) -> list[StoredEvent]:
        taken: list[StoredEvent] = []
        while batch := await store.claim(owner=owner, now=NOW, limit=7, lease_seconds=3600):
            taken += batch
        return taken

    async def scenario(
        one: PostgresStore, two: PostgresStore
    ) -> tuple[set[str], list[StoredEvent], list[StoredEvent]]:
        accepted = await asyncio.gather(
            *(one.accept(callback(f"job-{i}", NOW - i)) for i in range(300))
        )
        first, second = await asyncio.gather(drain(one, "one"), drain(two, "two"))
        return {a.delivery_id for a in accepted}, first, second

    ids, first, second = with_replicas(postgres_schema_url, scenario)
    claimed = [e.id for e in first + second]
    assert len(claimed) == len(set(claimed)) == 300
    assert set(claimed) == ids
    assert first
    assert second


def test_a_crashed_replicas_claim_is_taken_over_after_its_lease(postgres_schema_url: str) -> None:
    async def scenario(crashed: PostgresStore, alive: PostgresStore) -> None:
        cb = callback("job-1")
        await crashed.accept(cb)
        [event] = await crashed.claim(owner="crashed", now=NOW, limit=5, lease_seconds=LEASE)
        await alive.recover()  # a no-op: the claim stays until the lease runs out
        assert (
            await alive.claim(owner="alive", now=NOW + LEASE - 1, limit=5, lease_seconds=LEASE)
            == []
        )
        [again] = await alive.claim(
            owner="alive", now=NOW + LEASE + 1, limit=5, lease_seconds=LEASE
        )
        assert again.id == event.id == cb.delivery_id
        done = Outcome("delivered", 1, NOW + LEASE + 2, {"h": {"status": "ok"}}, None)
        assert await crashed.finish_many([(cb.delivery_id, done)], owner="crashed") == 0
        assert await alive.finish_many([(cb.delivery_id, done)], owner="alive") == 1
        assert await alive.inbox_depth() == 0

    with_replicas(postgres_schema_url, scenario)


def test_concurrent_upgrades_all_succeed(postgres_schema_url: str) -> None:
    async def main() -> list[int]:
        stores = [PostgresStore(postgres_schema_url) for _ in range(4)]
        try:
            return await asyncio.gather(*(s.upgrade() for s in stores))
        finally:
            for store in stores:
                await store.close()

    assert asyncio.run(main()) == [SCHEMA_VERSION] * 4


def test_postgres_scheme_url_is_accepted(postgres_schema_url: str) -> None:
    url = "postgres://" + postgres_schema_url.split("://", 1)[1]

    async def main() -> None:
        store = PostgresStore(url)
        await store.upgrade()
        await store.ping()
        await store.close()

    asyncio.run(main())


def test_commits_are_durable_even_if_the_server_says_otherwise(postgres_schema_url: str) -> None:
    """A server (or role, or URL) with ``synchronous_commit = off`` would break accept's promise."""
    url = postgres_schema_url + "%20-csynchronous_commit%3Doff"

    async def main() -> str:
        store = PostgresStore(url)
        await store.upgrade()
        try:
            async with store._connection() as conn:
                cur = await conn.execute("SHOW synchronous_commit")
                row = await cur.fetchone()
        finally:
            await store.close()
        assert row is not None
        return str(row[0])

    assert asyncio.run(main()) == "on"


def test_unreachable_server_is_unavailable_without_the_password() -> None:
    store = PostgresStore("postgresql://callbacks:s3cret-pw@127.0.0.1:1/callbacks", timeout=2)
    with pytest.raises(StoreUnavailable) as info:
        asyncio.run(store.open())
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in repr(store)


def test_connection_errors_do_not_show_the_password(postgres_url: str) -> None:
    params = conninfo_to_dict(postgres_url)
    params.update(dbname="no_such_database_here", password="s3cret-pw")
    store = PostgresStore(make_conninfo("", **params))
    with pytest.raises(StoreUnavailable, match="no_such_database_here") as info:
        asyncio.run(store.open())
    assert "s3cret-pw" not in str(info.value)


def test_an_invalid_url_is_reported_without_quoting_it() -> None:
    store = PostgresStore("postgresql://user:s3cret-pw@[::1/db?nonsense")
    with pytest.raises(StoreUnavailable, match="not valid") as info:
        asyncio.run(store.upgrade())
    assert "s3cret-pw" not in str(info.value)


def test_one_unstorable_callback_does_not_fail_its_batch(postgres_schema_url: str) -> None:
    """A NUL character is not storable in PostgreSQL text: only that callback fails."""

    async def main() -> list[Accepted | BaseException]:
        store = PostgresStore(postgres_schema_url)
        await store.upgrade()
        try:
            batch = [callback(f"ok-{i}") for i in range(20)]
            batch.insert(7, callback("bad-\x00-key"))
            return await asyncio.gather(*(store.accept(c) for c in batch), return_exceptions=True)
        finally:
            await store.close()

    results = asyncio.run(main())
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1
    assert isinstance(failed[0], StoreUnavailable)
    assert isinstance(results[7], StoreUnavailable)
    assert asyncio.run(count_by_status(postgres_schema_url)) == {"pending": 20}


def test_duplicates_inside_one_batch_point_at_the_first(postgres_schema_url: str) -> None:
    async def main() -> list[Accepted]:
        store = PostgresStore(postgres_schema_url)
        await store.upgrade()
        try:
            batch = [callback(f"key-{i % 5}") for i in range(40)]
            return list(await asyncio.gather(*(store.accept(c) for c in batch)))
        finally:
            await store.close()

    results = asyncio.run(main())
    originals = {r.delivery_id for r in results if not r.duplicate}
    assert len(originals) == 5
    assert all(r.duplicate_of in originals for r in results if r.duplicate)
    assert asyncio.run(count_by_status(postgres_schema_url)) == {"pending": 5, "duplicate": 35}
