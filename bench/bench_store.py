"""How many callbacks per second each inbox backend accepts, durably, under concurrency.

Run as ``python bench/bench_store.py [--tasks 64] [--total 5000]``. ``--tasks`` asyncio tasks each
call ``Store.accept`` in a loop (every callback has its own dedupe key) until ``--total`` callbacks
are stored; both backends run in the same process and run, one after the other, because these
machines are noisy: compare the ratio, not the absolute numbers. Each accept is committed to disk
before it returns (SQLite: WAL + ``synchronous=FULL`` with group commit; PostgreSQL:
``synchronous_commit`` as the server has it, normally on).

PostgreSQL: ``CALLBACKS_BENCH_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
the run uses a fresh schema and drops it afterwards. SQLite: a file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callbacks.store import InboundCallback, Store, new_delivery_id
from callbacks.store.sqlite import SQLiteStore

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
# A realistic callback: a small JSON document of about 1 kB.
BODY = (
    b'{"taskId": 123456, "status": 2, "videoUrl": "https://cdn.example.com/v/' + b"x" * 925 + b'"}'
)


@dataclass
class Result:
    name: str
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: int) -> float:
        """The q-th percentile latency in milliseconds."""
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[q - 1] * 1000


def make_callback(run_id: str, n: int) -> InboundCallback:
    now = time.time()
    return InboundCallback(
        delivery_id=new_delivery_id(now),
        route="sensetime",
        provider="sensetime",
        event_type="job.finished",
        dedupe_key=f"{run_id}-{n}",
        key_id="k1",
        received_at=now,
        body=BODY,
    )


async def load(store: Store, *, tasks: int, total: int, run_id: str) -> tuple[float, list[float]]:
    """``tasks`` workers share a counter up to ``total``; returns wall time and latencies."""
    counter = iter(range(total))
    latencies: list[float] = []

    async def worker() -> None:
        for n in counter:
            callback = make_callback(run_id, n)
            started = time.perf_counter()
            await store.accept(callback)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return time.perf_counter() - started, latencies


async def measure(name: str, store: Store, *, tasks: int, total: int) -> Result:
    await store.upgrade()
    try:
        # Warm up (connections, prepared statements, page cache); not counted.
        await load(store, tasks=tasks, total=tasks * 4, run_id=f"warm-{uuid.uuid4().hex}")
        seconds, latencies = await load(store, tasks=tasks, total=total, run_id=uuid.uuid4().hex)
    finally:
        await store.close()
    return Result(name, seconds, latencies)


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A URL whose connections use a new schema, dropped on the way out."""
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def postgres_settings(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        names = ("server_version", "synchronous_commit", "fsync")
        values = [conn.execute("SELECT current_setting(%s)", (n,)).fetchone() for n in names]
    version, sync, fsync = (row[0] if row else "?" for row in values)
    return f"PostgreSQL {version}, synchronous_commit={sync}, fsync={fsync}"


def report(results: list[Result], out: Callable[[str], None] = print) -> None:
    out(f"{'backend':<12} {'callbacks/s':>12} {'p50 ms':>9} {'p99 ms':>9}")
    for r in results:
        out(f"{r.name:<12} {r.rate:>12.0f} {r.percentile(50):>9.2f} {r.percentile(99):>9.2f}")
    if len(results) == 2:
        sqlite, postgres = results
        out(f"ratio postgresql/sqlite (callbacks/s): {postgres.rate / sqlite.rate:.2f}")


async def main_async(args: argparse.Namespace) -> list[Result]:
    from callbacks.store.postgres import PostgresStore

    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        sqlite = SQLiteStore(Path(tmp) / "inbox.db")
        results.append(await measure("sqlite", sqlite, tasks=args.tasks, total=args.total))
    with postgres_schema(args.postgres_url) as url:
        store = PostgresStore(url, max_size=args.pool_size)
        results.append(await measure("postgresql", store, tasks=args.tasks, total=args.total))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=64, help="concurrent accept() loops")
    parser.add_argument("--total", type=int, default=5000, help="callbacks per backend")
    parser.add_argument("--pool-size", type=int, default=10, help="PostgreSQL pool max_size")
    args = parser.parse_args()
    args.postgres_url = os.environ.get("CALLBACKS_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    print(
        f"{args.total} callbacks ({len(BODY)} B bodies) per backend, {args.tasks} concurrent "
        f"tasks, PostgreSQL pool max_size={args.pool_size}"
    )
    print(postgres_settings(args.postgres_url))
    report(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
