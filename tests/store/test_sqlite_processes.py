"""Several processes on one SQLite file, as ``callbacks serve --workers N`` runs them: each accepts
and claims at once, and no event is ever claimed by two of them, nor stored twice for one key."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
from collections import Counter
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

from callbacks.store import InboundCallback, Outcome, new_delivery_id
from callbacks.store.sqlite import SQLiteStore

WORKERS = 3
OWN = 150  # callbacks each process accepts that only it sends
SHARED = 60  # dedupe keys every process sends (a platform retry landing on another worker)


def _callback(key: str) -> InboundCallback:
    return InboundCallback(
        delivery_id=new_delivery_id(),
        route="st",
        provider="sensetime",
        event_type="task.done",
        dedupe_key=key,
        key_id="k1",
        received_at=time.time(),
        body=b'{"taskId": "' + key.encode() + b'"}',
    )


def _worker(path: str, worker: int, start: Barrier, results: Any) -> None:
    """Accept this worker's callbacks and the shared ones, then claim and settle until nothing is
    pending; report what was accepted as what, every id claimed and every outcome refused."""

    async def main() -> tuple[list[tuple[str, str, str | None]], list[str], list[str]]:
        store = SQLiteStore(Path(path))
        await store.open()
        await store.recover()
        try:
            keys = [f"own-{worker}-{n}" for n in range(OWN)] + [
                f"shared-{n}" for n in range(SHARED)
            ]
            start.wait()
            accepted = await asyncio.gather(*(store.accept(_callback(k)) for k in keys))
            kept = [(k, a.delivery_id, a.duplicate_of) for k, a in zip(keys, accepted, strict=True)]
            claimed: list[str] = []
            refused: list[str] = []
            rounds = 0
            while True:
                rounds += 1
                owner = f"worker{worker}/{rounds}"
                now = time.time()
                events = await store.claim(owner=owner, now=now, limit=7, lease_seconds=60)
                if not events:
                    if await store.inbox_depth() == 0:
                        return kept, claimed, refused
                    await asyncio.sleep(0.005)
                    continue
                claimed += [e.id for e in events]
                await asyncio.sleep(0.002)  # hold the claims while the others claim
                done = Outcome("delivered", 1, now, {}, None)
                written = await store.finish([(e.id, owner, done) for e in events])
                refused += [e.id for e in events if e.id not in written]
        finally:
            await store.close()

    try:
        results.put((worker, asyncio.run(main())))
    except BaseException as exc:
        results.put((worker, repr(exc)))
        raise


def test_processes_on_one_file_never_claim_the_same_event_nor_store_a_key_twice(
    tmp_path: Path,
) -> None:
    path = tmp_path / "callbacks.db"

    async def create() -> None:
        store = SQLiteStore(path)
        await store.upgrade()
        await store.close()

    asyncio.run(create())
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(target=_worker, args=(str(path), w, start, results)) for w in range(WORKERS)
    ]
    for process in processes:
        process.start()
    try:
        reports = dict(results.get(timeout=60) for _ in processes)
    finally:
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    failed = {w: report for w, report in reports.items() if isinstance(report, str)}
    assert not failed
    assert all(process.exitcode == 0 for process in processes)

    claims = Counter(i for _, claimed, _ in reports.values() for i in claimed)
    twice = {i for i, count in claims.items() if count > 1}
    assert not twice, f"{len(twice)} events were claimed by two claimers"
    assert not [i for _, _, refused in reports.values() for i in refused], "a claim was lost"
    originals = {i for kept, _, _ in reports.values() for _, i, dup in kept if dup is None}
    assert set(claims) == originals, "every stored event is claimed, and only those"
    # The unique dedupe key, not any process's memory, decides: one original per shared key.
    per_key = Counter(k for kept, _, _ in reports.values() for k, _, dup in kept if dup is None)
    assert all(per_key[f"shared-{n}"] == 1 for n in range(SHARED))
    assert len(originals) == WORKERS * OWN + SHARED


def test_a_worker_starts_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    """A worker uvicorn (re)starts while the CLI purges: an up-to-date schema takes no write, and
    a start-up release that cannot get the lock in time leaves the claims to their leases."""
    path = tmp_path / "callbacks.db"

    async def main() -> None:
        first = SQLiteStore(path)
        await first.upgrade()
        await first.accept(_callback("held"))
        await first.claim(owner="dead", now=time.time(), limit=1, lease_seconds=60)
        await first.close()
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # what a long CLI purge holds
        worker = SQLiteStore(path, write_timeout=0.2)
        try:
            await worker.upgrade()
            await worker.recover()
        finally:
            holder.execute("COMMIT")
            holder.close()
        try:
            # Not released later behind the workers' backs: left to the lease.
            assert not await worker.claim(owner="w", now=time.time(), limit=1, lease_seconds=60)
            later = time.time() + 61
            assert await worker.claim(owner="w", now=later, limit=1, lease_seconds=60)
        finally:
            await worker.close()

    asyncio.run(main())
