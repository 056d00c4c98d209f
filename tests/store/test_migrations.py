"""Upgrading a store made by an earlier release: each test builds the old schema itself, fills it
the way that release did, upgrades with this one and checks what the rows became."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from callbacks.config import RouteConfig
from callbacks.dedupe import dedupe_key
from callbacks.intake import inbound_callback
from callbacks.store import SCHEMA_VERSION, Store

VIDEO = RouteConfig(
    name="ms-video",
    path="/cb/ms-video",
    provider="metastudio",
    public_url="https://hooks.example.com/cb/ms-video",
    kind="video",
    auth="MSS_A",
)
SENSETIME = RouteConfig(
    name="st", path="/cb/st", provider="sensetime", public_url="https://hooks.example.com/cb/st"
)
GENUINE = {"job_id": "j1", "result": "SUCCEED", "asset_id": "a1"}
SENSETIME_BODY = {"taskId": 7, "status": 2, "timestamp": 1_700_000_000, "signature": "a" * 32}
NOW = 1_763_856_000.0

# What schema 1 stored: (id, route, provider, dedupe_key, duplicate_of, status, body).
V1_ROWS: list[tuple[str, str, str, str | None, str | None, str, bytes]] = [
    ("0001", "ms-video", "metastudio", "ms-video:job:j1:SUCCEED", None, "delivered", b""),
    ("0002", "st", "sensetime", "st:body:" + "0" * 32, None, "pending", b""),
    ("0003", "ms-video", "metastudio", None, "0001", "duplicate", b""),
    ("0004", "ms-video", "metastudio", "kept-as-is", None, "delivered", b"\xff not json"),
    # The same job and result under a route whose kind changed: one new key for two events.
    ("0005", "ms-video", "metastudio", "ms-video:body:" + "1" * 32, None, "delivered", b""),
]
BODIES = {
    "0001": orjson.dumps(GENUINE),
    "0002": orjson.dumps(SENSETIME_BODY),
    "0003": orjson.dumps(GENUINE),
    "0005": orjson.dumps({"result": "SUCCEED", "job_id": "j1", "asset_id": "a1"}),
}


def v1_rows() -> Iterator[tuple[Any, ...]]:
    for event_id, route, provider, key, duplicate_of, status, body in V1_ROWS:
        yield (
            event_id,
            route,
            provider,
            "MetaStudioJobResult",
            key,
            duplicate_of,
            "k1",
            NOW,
            BODIES.get(event_id, body),
            status,
            NOW,
            NOW,
        )


INSERT_COLUMNS = (
    "id, route, provider, event_type, dedupe_key, duplicate_of, key_id, received_at, body, "
    "status, next_attempt_at, updated_at"
)


def make_sqlite_v1(path: Path) -> Callable[[], Store]:
    from callbacks.store.sqlite import _SCHEMA_1, SQLiteStore

    conn = sqlite3.connect(path)
    for statement in _SCHEMA_1:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version (version) VALUES (1)")
    marks = ", ".join("?" * 12)
    conn.executemany(f"INSERT INTO events ({INSERT_COLUMNS}) VALUES ({marks})", v1_rows())  # noqa: S608
    conn.commit()
    conn.close()
    return lambda: SQLiteStore(path)


def make_postgres_v1(url: str) -> Callable[[], Store]:
    import psycopg

    from callbacks.store.postgres import _SCHEMA_1, EVENTS, VERSIONS, PostgresStore

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in _SCHEMA_1:
            conn.execute(statement)
        conn.execute(f"INSERT INTO {VERSIONS} (version) VALUES (1)")  # noqa: S608
        marks = ", ".join(["%s"] * 12)
        with conn.cursor() as cur:
            insert = f"INSERT INTO {EVENTS} ({INSERT_COLUMNS}) VALUES ({marks})"  # noqa: S608
            cur.executemany(insert, v1_rows())
    return lambda: PostgresStore(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def v1_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    if request.param == "sqlite":
        return make_sqlite_v1(tmp_path / "callbacks.db")
    return make_postgres_v1(request.getfixturevalue("postgres_schema_url"))


def test_a_schema_1_store_must_be_upgraded_first(v1_store: Callable[[], Store]) -> None:
    from callbacks.errors import SchemaOutOfDate

    async def main() -> None:
        store = v1_store()
        with pytest.raises(SchemaOutOfDate, match="version 1"):
            await store.open()
        await store.close()

    asyncio.run(main())


def test_upgrade_from_schema_1_rekeys_stored_events(v1_store: Callable[[], Store]) -> None:
    async def main() -> dict[str, Any]:
        store = v1_store()
        assert await store.upgrade() == SCHEMA_VERSION
        try:
            # A true retry of the stored genuine callback is its duplicate...
            retry = inbound_callback(
                VIDEO, GENUINE, orjson.dumps(GENUINE), key_id="k1", received_at=NOW + 1
            )
            # ...while a forged body reusing the job and result is an event of its own.
            forged_raw = dict(GENUINE, asset_id="forged")
            forged = inbound_callback(
                VIDEO, forged_raw, orjson.dumps(forged_raw), key_id="k1", received_at=NOW + 2
            )
            sensetime_retry_raw = dict(SENSETIME_BODY, timestamp=1_700_000_100, signature="b" * 32)
            sensetime_retry = inbound_callback(
                SENSETIME,
                sensetime_retry_raw,
                orjson.dumps(sensetime_retry_raw),
                key_id="k1",
                received_at=NOW + 3,
            )
            return {
                "retry": await store.accept(retry),
                "forged": await store.accept(forged),
                "sensetime": await store.accept(sensetime_retry),
                "events": {e.id: e for e in await store.list_events(_all())},
            }
        finally:
            await store.close()

    result = asyncio.run(main())
    assert result["retry"].duplicate_of == "0001"
    assert not result["forged"].duplicate
    assert result["sensetime"].duplicate_of == "0002"
    events = result["events"]
    assert {i: events[i].status for i in ("0001", "0002", "0003", "0004", "0005")} == {
        "0001": "delivered",
        "0002": "pending",
        "0003": "duplicate",
        "0004": "delivered",
        "0005": "delivered",
    }


def test_upgrade_from_schema_1_writes_new_keys(v1_store: Callable[[], Store]) -> None:
    async def main() -> None:
        store = v1_store()
        await store.upgrade()
        await store.close()

    asyncio.run(main())
    keys = _stored_keys(v1_store)
    assert keys["0001"] == dedupe_key(VIDEO, GENUINE)
    assert keys["0002"] == dedupe_key(SENSETIME, SENSETIME_BODY)
    assert keys["0003"] is None  # duplicates never hold a key
    assert keys["0004"] == "kept-as-is"  # not JSON: nothing to compute a key from
    assert keys["0005"] is None  # same content as 0001, which came first and keeps the key


def test_upgrade_from_schema_1_keeps_only_the_digest_of_duplicates(
    v1_store: Callable[[], Store],
) -> None:
    async def main() -> dict[str, Any]:
        store = v1_store()
        await store.upgrade()
        try:
            return {e.id: e for e in await store.list_events(_all())}
        finally:
            await store.close()

    events = asyncio.run(main())
    assert events["0003"].body == b""
    assert events["0003"].body_sha256 == hashlib.sha256(BODIES["0003"]).hexdigest()
    assert events["0001"].body == BODIES["0001"]  # events keep their bodies
    assert events["0001"].body_sha256 is None


def _all() -> Any:
    from callbacks.store import EventFilter

    return EventFilter(limit=100)


def _stored_keys(factory: Callable[[], Store]) -> dict[str, str | None]:
    store = factory()
    from callbacks.store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        with sqlite3.connect(store.path) as conn:
            return dict(conn.execute("SELECT id, dedupe_key FROM events"))
    import psycopg

    from callbacks.store.postgres import EVENTS

    with psycopg.connect(store._url) as conn:  # type: ignore[attr-defined]
        rows = conn.execute(f"SELECT id, dedupe_key FROM {EVENTS}").fetchall()  # noqa: S608
        return {row[0]: row[1] for row in rows}


def _list_plan(path: Path, where: Any) -> str:
    """SQLite's query plan for the operator's list (newest first) filtered by ``where``."""
    clauses, params = where.where_sql("?")
    with sqlite3.connect(path) as conn:
        return " ".join(
            str(row[3])
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN SELECT id FROM events{clauses} ORDER BY id DESC LIMIT 50",  # noqa: S608
                params,
            )
        )


def test_upgrade_to_schema_4_lists_a_route_newest_first_from_its_index(tmp_path: Path) -> None:
    """The operator's list by route reads the route's index in id order: no table walk, no sort."""
    from callbacks.store import EventFilter
    from callbacks.store.sqlite import SQLiteStore

    path = tmp_path / "callbacks.db"
    make_sqlite_v1(path)
    assert asyncio.run(SQLiteStore(path).upgrade()) == SCHEMA_VERSION
    plan = _list_plan(path, EventFilter(route="ms-video", status="dead"))
    assert "events_by_route (route=?)" in plan
    assert "TEMP B-TREE" not in plan


def _postgres_indexes_after_upgrade(url: str) -> dict[str, str]:
    """A schema-1 PostgreSQL store upgraded by this release: its events indexes by name."""
    import psycopg

    store = make_postgres_v1(url)()

    async def main() -> None:
        assert await store.upgrade() == SCHEMA_VERSION
        await store.close()

    asyncio.run(main())
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
        ).fetchall()
    return dict(rows)


@pytest.mark.postgres
def test_postgres_schema_4_has_the_route_index(postgres_schema_url: str) -> None:
    from callbacks.store.postgres import EVENTS

    indexes = _postgres_indexes_after_upgrade(postgres_schema_url)
    assert "(route, id)" in indexes[f"{EVENTS}_by_route"]


def _sqlite_at_schema_4(path: Path, rows: list[tuple[str, str, float]]) -> None:
    """A file as release 4 left it: its migrations, then events (route, key id, received_at)."""
    from callbacks.store.base import new_delivery_id
    from callbacks.store.sqlite import _MIGRATIONS

    conn = sqlite3.connect(path)
    for version, step in _MIGRATIONS:
        if version <= 4:
            step(conn)
    conn.execute("INSERT INTO schema_version (version) VALUES (4)")
    marks = ", ".join("?" * 12)
    conn.executemany(
        f"INSERT INTO events ({INSERT_COLUMNS}) VALUES ({marks})",  # noqa: S608
        [
            (
                new_delivery_id(at),
                route,
                "sensetime",
                "SenseTimeCallback",
                f"k-{n}",
                None,
                key,
                at,
                b"{}",
                "delivered",
                at,
                at,
            )
            for n, (route, key, at) in enumerate(rows)
        ],
    )
    conn.commit()
    conn.close()


def test_upgrade_to_schema_5_keeps_key_usage_and_drops_the_range_indexes(tmp_path: Path) -> None:
    from callbacks.store import KeyUsage
    from callbacks.store.sqlite import SQLiteStore

    path = tmp_path / "callbacks.db"
    _sqlite_at_schema_4(
        path,
        [("st", "k1", NOW - 90_000), ("st", "k1", NOW - 60), ("st", "k2", NOW - 90_000)],
    )
    store = SQLiteStore(path)

    async def main() -> list[KeyUsage]:
        assert await store.upgrade() == SCHEMA_VERSION
        try:
            return await store.key_usage(NOW)
        finally:
            await store.close()

    assert asyncio.run(main()) == [
        KeyUsage("st", "k1", NOW - 60, 1),
        KeyUsage("st", "k2", NOW - 90_000, 0),
    ]
    with sqlite3.connect(path) as conn:
        indexes = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    assert "events_received" not in indexes
    assert "events_key_usage" not in indexes


def test_a_time_range_reads_the_primary_key_range(tmp_path: Path) -> None:
    from callbacks.store import EventFilter
    from callbacks.store.sqlite import SQLiteStore

    path = tmp_path / "callbacks.db"
    assert asyncio.run(SQLiteStore(path).upgrade()) == SCHEMA_VERSION
    plan = _list_plan(path, EventFilter(since=NOW - 3600, until=NOW))
    assert "USING INDEX sqlite_autoindex_events_1 (id>? AND id<?)" in plan, plan


@pytest.mark.postgres
def test_postgres_schema_5_has_no_received_at_index(postgres_schema_url: str) -> None:
    from callbacks.store.postgres import EVENTS

    indexes = _postgres_indexes_after_upgrade(postgres_schema_url)
    assert f"{EVENTS}_received" not in indexes
    assert f"{EVENTS}_key_usage" in indexes  # kept: see the schema 5 migration's note
