"""The console's queries: filters checked, keyset pages over both backends, job-id search."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.admin.queries import BadQuery, Query, find_events, job_ids, parse_moment
from callbacks.store import EventFilter, InboundCallback, Store, StoredEvent, new_delivery_id

NOW = 1_763_856_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        from callbacks.store.sqlite import SQLiteStore

        return SQLiteStore(tmp_path / "inbox.db")
    from callbacks.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("postgres_schema_url"))


def _callback(n: int, route: str, body: Mapping[str, object], key_id: str) -> InboundCallback:
    return InboundCallback(
        delivery_id=new_delivery_id(NOW + n),
        route=route,
        provider="metastudio" if route.startswith("ms") else "sensetime",
        event_type="MetaStudioJobResult" if route.startswith("ms") else "SenseTimeCallback",
        dedupe_key=f"{route}:{n}",
        key_id=key_id,
        received_at=NOW + n,
        body=orjson.dumps(body),
    )


def _seeded(store: Store) -> list[InboundCallback]:
    callbacks = []
    for n in range(30):
        if n % 3:
            callbacks.append(_callback(n, "st", {"taskId": 1000 + n, "status": 2}, "k-st"))
        else:
            callbacks.append(_callback(n, "ms", {"job_id": f"job-{n}", "result": "OK"}, "k-ms"))
    return callbacks


Results = tuple[list[StoredEvent], list[list[str]]]


def _run_all(store: Store, *queries: Query) -> list[Results]:
    """For each query, every page of its results in order (the store seeded once)."""

    async def pages_of(query: Query) -> Results:
        pages: list[list[str]] = []
        everything: list[StoredEvent] = []
        while True:
            page = await find_events(store, query)
            pages.append([e.id for e in page.events])
            everything += page.events
            if page.next_before is None:
                return everything, pages
            query = replace(query, before=page.next_before)

    async def main() -> list[Results]:
        await store.upgrade()
        try:
            for cb in _seeded(store):
                await store.accept(cb)
            return [await pages_of(q) for q in queries]
        finally:
            await store.close()

    return asyncio.run(main())


def _run(store: Store, query: Query) -> Results:
    return _run_all(store, query)[0]


def test_keyset_pages_cover_everything_newest_first_without_overlap(store: Store) -> None:
    events, pages = _run(store, Query(limit=7))
    ids = [e.id for e in events]
    assert len(ids) == 30
    assert ids == sorted(ids, reverse=True)
    assert [len(p) for p in pages] == [7, 7, 7, 7, 2]


def test_filters_by_route_type_key_and_time(store: Store) -> None:
    events, _ = _run(
        store,
        Query(
            route="st",
            event_type="SenseTimeCallback",
            key_id="k-st",
            since=NOW + 10,
            until=NOW + 20,
            limit=4,
        ),
    )
    assert [e.received_at - NOW for e in events] == [19, 17, 16, 14, 13, 11, 10]


def test_text_matches_job_and_task_ids_not_other_fields(store: Store) -> None:
    (jobs, _), (tasks, _) = _run_all(store, Query(text="job-2", limit=2), Query(text="1002"))
    assert sorted(job_ids(e)[0] for e in jobs) == ["job-21", "job-24", "job-27"]
    assert [job_ids(e) for e in tasks] == [["1002"]]


def test_store_filter_body_match_is_a_byte_match(store: Store) -> None:
    async def main() -> list[str]:
        await store.upgrade()
        try:
            for cb in _seeded(store):
                await store.accept(cb)
            rows = await store.list_events(EventFilter(body_contains=b'"job-9"', limit=100))
            return [r.body.decode() for r in rows]
        finally:
            await store.close()

    assert asyncio.run(main()) == ['{"job_id":"job-9","result":"OK"}']


def test_moments() -> None:
    assert parse_moment("1h", NOW, "since") == NOW - 3600
    assert parse_moment("2025-11-23T00:00:00Z", NOW, "since") == 1_763_856_000.0
    assert parse_moment("2025-11-23", NOW, "since") == 1_763_856_000.0
    assert parse_moment(None, NOW, "since") is None


def test_params_round_trip() -> None:
    query = Query(route="st", status="dead", since=NOW, text="job 1", before="0abc", limit=20)
    assert Query.from_params(query.params(), NOW) == query


_PARAM_NAMES = st.sampled_from(
    ["route", "status", "type", "key_id", "since", "until", "q", "before", "limit", "other"]
)


@given(st.dictionaries(_PARAM_NAMES, st.text(max_size=60), max_size=6))
def test_junk_parameters_raise_only_bad_query(params: dict[str, str]) -> None:
    try:
        query = Query.from_params(params, NOW)
    except BadQuery as exc:
        reason = exc.reason
        assert reason == "bad_filter"
        return
    assert 1 <= query.limit <= 500
    query.store_filter(query.limit).where_sql("?")
