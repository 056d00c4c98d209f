"""The store's work-queue role as the dispatcher uses it, the same on SQLite and PostgreSQL:
leases renewed per owner, outcomes written only where the claim is still their owner's, the
dead and unhandled counts, and replaying unhandled events."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbacks.store import Outcome, Store
from tests.store.test_contract import LEASE, NOW, StoreFactory, callback, run


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "sqlite":
        from callbacks.store.sqlite import SQLiteStore

        path = tmp_path / "inbox.db"
        return lambda: SQLiteStore(path)
    url = request.getfixturevalue("postgres_schema_url")  # skips when there is no server
    from callbacks.store.postgres import PostgresStore

    return lambda: PostgresStore(url)


def settled(status: str, attempts: int = 1) -> Outcome:
    return Outcome(status, attempts, NOW, {"h": {"status": "ok", "attempts": 1}}, None)  # type: ignore[arg-type]


def test_renew_extends_only_the_leases_still_held_by_their_owner(make_store: StoreFactory) -> None:
    async def scenario(store: Store) -> None:
        ids = [(await store.accept(callback())).delivery_id for _ in range(3)]
        claimed = await store.claim(owner="a/1", now=NOW, limit=2, lease_seconds=LEASE)
        [third] = await store.claim(owner="a/2", now=NOW, limit=5, lease_seconds=LEASE)
        first, second = (e.id for e in claimed)
        assert {first, second, third.id} == set(ids)
        # Renewed well before the lease ends: the events stay hidden past the first lease.
        renewed = await store.renew(
            [(first, "a/1"), (second, "a/1"), (third.id, "a/1")], until=NOW + 3 * LEASE
        )
        assert renewed == {first, second}  # the third is a/2's, not a/1's
        later = NOW + 2 * LEASE
        taken = await store.claim(owner="b/1", now=later, limit=5, lease_seconds=LEASE)
        assert [e.id for e in taken] == [third.id]  # only the lease nobody renewed lapsed
        assert await store.renew([(third.id, "a/2")], until=later + LEASE) == set()
        assert await store.renew([], until=later) == set()

    run(make_store, scenario)


def test_finish_writes_only_outcomes_whose_claim_is_still_their_owners(
    make_store: StoreFactory,
) -> None:
    async def scenario(store: Store) -> None:
        mine = (await store.accept(callback())).delivery_id
        lost = (await store.accept(callback())).delivery_id
        await store.claim(owner="a/1", now=NOW, limit=5, lease_seconds=LEASE)
        [taken] = await store.claim(owner="b/1", now=NOW + LEASE + 1, limit=1, lease_seconds=LEASE)
        assert taken.id in (mine, lost)
        mine, lost = (lost, mine) if taken.id == mine else (mine, lost)
        # a/1's lapsed lease on `mine` was renewed in time; `lost` went to b/1.
        written = await store.finish(
            [(mine, "a/1", settled("delivered")), (lost, "a/1", settled("dead"))]
        )
        assert written == {mine}
        assert (await store.get(lost)).status == "pending"  # type: ignore[union-attr]
        assert await store.finish([(lost, "b/1", settled("unhandled", 0))]) == {lost}
        assert await store.finish([(lost, "b/1", settled("delivered"))]) == set()  # released
        assert await store.finish([]) == set()

    run(make_store, scenario)


def test_dead_and_unhandled_are_counted_by_route_and_unhandled_ones_replayed(
    make_store: StoreFactory,
) -> None:
    async def scenario(store: Store) -> None:
        events = [
            (await store.accept(callback(route=route))).delivery_id
            for route in ("st", "st", "ms", "ms", "ms")
        ]
        claimed = await store.claim(owner="o", now=NOW, limit=10, lease_seconds=LEASE)
        assert len(claimed) == 5
        statuses = ["dead", "unhandled", "unhandled", "unhandled", "delivered"]
        outcomes = [(e, "o", settled(s)) for e, s in zip(events, statuses, strict=True)]
        assert await store.finish(outcomes) == set(events)
        assert await store.waiting_for_operator() == {
            ("st", "dead"): 1,
            ("st", "unhandled"): 1,
            ("ms", "unhandled"): 2,
        }
        assert await store.requeue(unhandled=True, route="ms") == 2
        assert await store.waiting_for_operator() == {("st", "dead"): 1, ("st", "unhandled"): 1}
        assert await store.requeue(unhandled=True, dead=True) == 2
        assert await store.waiting_for_operator() == {}
        again = await store.get(events[1])
        assert again is not None
        assert (again.status, again.attempts) == ("pending", 0)

    run(make_store, scenario)
