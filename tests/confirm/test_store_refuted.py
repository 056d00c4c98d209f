"""A refuted event never keeps its job's dedupe slot, in both stores."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from callbacks.store import InboundCallback, Outcome, Store, new_delivery_id

T = TypeVar("T")
NOW = 1_763_856_000.0
OWNER = "test-owner"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "sqlite":
        from callbacks.store.sqlite import SQLiteStore

        return lambda: SQLiteStore(tmp_path / "inbox.db")
    url = request.getfixturevalue("postgres_schema_url")  # skips when there is no server
    from callbacks.store.postgres import PostgresStore

    return lambda: PostgresStore(url)


def run(make_store: Callable[[], Store], scenario: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        store = make_store()
        await store.upgrade()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def callback(body: bytes, at: float) -> InboundCallback:
    return InboundCallback(
        delivery_id=new_delivery_id(at),
        route="ms",
        provider="metastudio",
        event_type="MetaStudioJobResult",
        dedupe_key="ms:job-1:SUCCEED",
        key_id=None,
        received_at=at,
        body=body,
    )


async def refute_claimed(store: Store) -> list[str]:
    claimed = await store.claim(owner=OWNER, now=NOW + 10, limit=10, lease_seconds=30)
    outcome = Outcome("refuted", 1, NOW + 10, {}, "refuted: asset_mismatch")
    await store.finish_many([(e.id, outcome) for e in claimed], owner=OWNER)
    return [e.id for e in claimed]


def test_a_genuine_callback_after_the_refutation_is_a_new_event(
    make_store: Callable[[], Store],
) -> None:
    async def scenario(store: Store) -> None:
        forged = await store.accept(callback(b'{"asset_id": "ATTACKER"}', NOW))
        assert await refute_claimed(store) == [forged.delivery_id]
        genuine = await store.accept(callback(b'{"asset_id": "real"}', NOW + 20))
        assert not genuine.duplicate
        refuted = await store.get(forged.delivery_id)
        assert refuted is not None
        assert refuted.status == "refuted"
        assert refuted.last_error == "refuted: asset_mismatch"

    run(make_store, scenario)


def test_duplicates_of_a_refuted_event_stay_duplicates(make_store: Callable[[], Store]) -> None:
    """Same key, same content: what refuted the original refutes its duplicates too."""

    async def scenario(store: Store) -> None:
        forged = await store.accept(callback(b'{"asset_id": "ATTACKER"}', NOW))
        again = await store.accept(callback(b'{"asset_id": "ATTACKER"}', NOW + 1))
        assert again.duplicate_of == forged.delivery_id
        await refute_claimed(store)
        kept = await store.get(again.delivery_id)
        assert kept is not None
        assert (kept.status, kept.duplicate_of) == ("duplicate", forged.delivery_id)
        assert await store.claim(owner=OWNER, now=NOW + 40, limit=10, lease_seconds=30) == []

    run(make_store, scenario)


def test_other_outcomes_keep_the_slot(make_store: Callable[[], Store]) -> None:
    async def scenario(store: Store) -> None:
        first = await store.accept(callback(b"{}", NOW))
        claimed = await store.claim(owner=OWNER, now=NOW + 10, limit=10, lease_seconds=30)
        done = Outcome("delivered", 1, NOW + 10, {}, None)
        await store.finish_many([(e.id, done) for e in claimed], owner=OWNER)
        again = await store.accept(callback(b"{}", NOW + 20))
        assert again.duplicate_of == first.delivery_id

    run(make_store, scenario)
