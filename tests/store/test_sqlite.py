"""SQLite only: what the contract suite cannot show about its write path."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from callbacks.store import InboundCallback, new_delivery_id
from callbacks.store.sqlite import SQLiteStore


def _callback(n: int) -> InboundCallback:
    now = time.time()
    return InboundCallback(
        delivery_id=new_delivery_id(now),
        route="st",
        provider="sensetime",
        event_type="SenseTimeCallback",
        dedupe_key=f"st:body:{n}",
        key_id="k",
        received_at=now,
        body=b'{"taskId": %d}' % n,
    )


def test_a_write_lock_held_elsewhere_neither_blocks_the_loop_nor_loses_the_callback(
    tmp_path: Path,
) -> None:
    """The CLI (another process) may hold the write lock; the receiver's loop must keep going."""
    db = tmp_path / "callbacks.db"
    held = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(5)
        other.execute("COMMIT")
        other.close()

    async def main() -> tuple[int, str]:
        store = SQLiteStore(db)
        await store.upgrade()
        holder = threading.Thread(target=hold_lock)
        holder.start()
        await asyncio.to_thread(held.wait, 5)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while not release.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        accepting = asyncio.create_task(store.accept(_callback(1)))
        await asyncio.sleep(0.3)
        assert not accepting.done(), "the write cannot have committed while the lock is held"
        release.set()
        accepted = await accepting
        await ticker
        holder.join()
        stored = await store.get(accepted.delivery_id)
        await store.close()
        assert stored is not None
        return ticks, stored.status

    ticks, status = asyncio.run(main())
    assert ticks >= 10, "the event loop was blocked while waiting for the lock"
    assert status == "pending"


def test_callbacks_submitted_together_share_one_commit(tmp_path: Path) -> None:
    async def main() -> int:
        store = SQLiteStore(tmp_path / "callbacks.db")
        await store.upgrade()
        commits = 0
        real_commit = store._committer.submit

        def counting_submit(fn, *args):  # type: ignore[no-untyped-def]
            nonlocal commits
            commits += 1
            return real_commit(fn, *args)

        store._committer.submit = counting_submit  # type: ignore[method-assign,assignment]
        results = await asyncio.gather(*(store.accept(_callback(n)) for n in range(50)))
        await store.close()
        assert len({r.delivery_id for r in results}) == 50
        return commits

    assert asyncio.run(main()) <= 2


def test_the_write_connection_keeps_statement_journals_in_memory(tmp_path: Path) -> None:
    """A batch's INSERT otherwise spills its statement journal to a temporary file, a write per
    page on the loop; the reader's large sorts still spill rather than grow the process."""

    async def main() -> tuple[int, int]:
        store = SQLiteStore(tmp_path / "callbacks.db")
        await store.upgrade()
        assert store._conn is not None
        assert store._reader is not None
        writer = store._conn.execute("PRAGMA temp_store").fetchone()[0]
        reader = store._reader.execute("PRAGMA temp_store").fetchone()[0]
        await store.close()
        return writer, reader

    assert asyncio.run(main()) == (2, 0)  # MEMORY, DEFAULT
