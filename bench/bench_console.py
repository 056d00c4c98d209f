"""The console's inbox pages deep in a large inbox: keyset pages against the first page.

Seeds a SQLite store (and PostgreSQL with --postgres) with --events callbacks, then times, side
by side in one run, the query behind each inbox page: the first page, a keyset page N events
deep (what the console runs: ``id < cursor``), the same page by OFFSET (what keyset paging
avoids), and a filtered page (route + status). Prints medians and ratios to the first page.

    python bench/bench_console.py [--events 20000] [--depth 19000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from callbacks.admin.queries import Query, find_events
from callbacks.store import EventFilter, InboundCallback, Store, new_delivery_id
from callbacks.store.base import event_columns

PAGE = 50


def _callbacks(count: int) -> list[InboundCallback]:
    start = time.time() - count
    out = []
    for n in range(count):
        route = ("st", "ms-video", "ms-live")[n % 3]
        out.append(
            InboundCallback(
                delivery_id=new_delivery_id(start + n),
                route=route,
                provider="sensetime" if route == "st" else "metastudio",
                event_type="SenseTimeCallback" if route == "st" else "MetaStudioJobResult",
                dedupe_key=f"{route}:{n}",
                key_id="k1",
                received_at=start + n,
                body=orjson.dumps({"taskId": n, "status": 2, "userData": "x" * 200}),
            )
        )
    return out


async def _median_ms(run: Callable[[], Awaitable[object]], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        await run()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times)


async def _offset_page(store: Store, depth: int) -> object:
    # What an OFFSET pager would run: the engine walks and drops `depth` rows first.
    # The same columns the console reads, so only the paging differs.
    if hasattr(store, "_read"):
        sql = f"SELECT {event_columns()} FROM events ORDER BY id DESC LIMIT {PAGE} OFFSET {depth}"  # noqa: S608
        return await store._read(lambda c: c.execute(sql).fetchall())
    from callbacks.store.postgres import EVENTS

    async with store._connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(
            f"SELECT {event_columns()} FROM {EVENTS} ORDER BY id DESC "  # noqa: S608
            f"LIMIT {PAGE} OFFSET {depth}"
        )
        return await cur.fetchall()


async def _measure(name: str, store: Store, events: int, depth: int, repeats: int) -> None:
    await store.upgrade()
    try:
        batch = _callbacks(events)
        for i in range(0, len(batch), 500):
            await asyncio.gather(*(store.accept(cb) for cb in batch[i : i + 500]))
        ids = [e.id for e in await store.list_events(EventFilter(limit=events))]
        cursor = ids[depth - 1]
        first = await _median_ms(lambda: find_events(store, Query(limit=PAGE)), repeats)
        deep = await _median_ms(
            lambda: find_events(store, Query(limit=PAGE, before=cursor)), repeats
        )
        offset = await _median_ms(lambda: _offset_page(store, depth), repeats)
        filtered = await _median_ms(
            lambda: find_events(store, Query(route="ms-live", status="pending", limit=PAGE)),
            repeats,
        )
    finally:
        await store.close()
    print(f"\n{name}: {events} events, page of {PAGE}, page {depth} events deep")
    print("| query | median ms | vs first page |\n|---|--:|--:|")
    for label, value in (
        ("first page (newest)", first),
        (f"keyset page {depth} deep (the console)", deep),
        (f"OFFSET {depth} (avoided)", offset),
        ("route + status filter, first page", filtered),
    ):
        print(f"| {label} | {value:.2f} | {value / first:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--depth", type=int, default=19_000)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument(
        "--postgres", help="also a PostgreSQL database (a schema is made and dropped)"
    )
    args = parser.parse_args()
    from callbacks.store.sqlite import SQLiteStore

    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(Path(folder) / "bench.db")
        asyncio.run(_measure("SQLite", store, args.events, args.depth, args.repeats))
    if args.postgres:
        import psycopg

        from callbacks.store.postgres import PostgresStore

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            sep = "&" if "?" in args.postgres else "?"
            url = f"{args.postgres}{sep}options=-csearch_path%3D{schema}"
            asyncio.run(
                _measure("PostgreSQL", PostgresStore(url), args.events, args.depth, args.repeats)
            )
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
