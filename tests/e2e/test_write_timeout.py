"""A store that cannot take a write in time answers 503 (the platform retries), never a request
held for as long as a lock lasts; once the lock is gone, callbacks are stored again and every one
that was acknowledged is there. Real server processes, locks held by another connection."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import Route, ServerProcess, Setup, keys_for, sample_body, signed_request

pytestmark = pytest.mark.slow

ROUTES = [Route("st", "sensetime", "https://hooks.example.com/cb/st")]
KEYS = keys_for(ROUTES)
ROUTE = ROUTES[0]


# The platforms give up on an answer after about 3 s; a little more, for a loaded test machine.
# A request the store holds longer than that is, for the platform, lost.
PLATFORM_PATIENCE = 5.0


def post(setup: Setup, n: int) -> httpx.Response:
    with httpx.Client(timeout=PLATFORM_PATIENCE) as client:
        return signed_request(ROUTE, KEYS["st"], sample_body(ROUTE, n)).send(client, setup.base_url)


def post_many(setup: Setup, numbers: range) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(numbers)) as pool:
        return list(pool.map(lambda n: post(setup, n), numbers))


def check_locked_then_free(
    setup: Setup, release: Callable[[], object], stored_ids: Callable[[], set[str]]
) -> None:
    """While the lock is held every answer is a 503; after, 200s, and nothing acknowledged is
    missing (the 503'd callbacks, sent again as the platform would, are stored too)."""
    try:
        during = [r for start in (0, 10, 20) for r in post_many(setup, range(start, start + 3))]
        readiness = httpx.get(f"{setup.base_url}/readyz", timeout=PLATFORM_PATIENCE)
    finally:
        release()
    assert [(r.status_code, r.json()["reason"]) for r in during] == [
        (503, "store_unavailable")
    ] * len(during)
    # Writes fail: the orchestrator should send traffic elsewhere.
    assert readiness.status_code == 503
    assert "store_writes_failing" in readiness.json()["reasons"]
    after = [post(setup, n) for n in range(100, 105)]
    ready_again = httpx.get(f"{setup.base_url}/readyz", timeout=PLATFORM_PATIENCE)
    assert (ready_again.status_code, ready_again.json()) == (200, {"status": "ready"})
    retried = [r for start in (0, 10, 20) for r in post_many(setup, range(start, start + 3))]
    assert {r.status_code for r in after + retried} == {200}
    acknowledged = {r.json()["delivery_id"] for r in after + retried}
    assert acknowledged <= stored_ids()


def test_sqlite_write_lock_held_elsewhere_answers_503(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS).write()
    server = ServerProcess(setup).start()
    db = setup.root / "callbacks.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        assert post(setup, 999).status_code == 200
        holder.execute("BEGIN IMMEDIATE")  # what a long CLI purge would hold

        def stored() -> set[str]:
            with sqlite3.connect(db) as conn:
                return {row[0] for row in conn.execute("SELECT id FROM events")}

        check_locked_then_free(setup, lambda: holder.execute("COMMIT"), stored)
    finally:
        holder.close()
        server.stop()
    assert "Traceback" not in server.output()


@pytest.mark.postgres
def test_postgres_table_lock_held_elsewhere_answers_503(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    import psycopg

    from callbacks.store.postgres import EVENTS, PostgresStore

    async def upgrade() -> None:
        store = PostgresStore(postgres_schema_url)
        await store.upgrade()
        await store.close()

    asyncio.run(upgrade())
    setup = Setup(tmp_path, ROUTES, KEYS, store_url=postgres_schema_url).write()
    server = ServerProcess(setup).start()
    locked = threading.Event()
    done = threading.Event()

    def hold_lock() -> None:
        # Held for up to 9 s: far past the ~3 s the platform waits for an answer.
        with psycopg.connect(postgres_schema_url) as conn:
            conn.execute(f"LOCK TABLE {EVENTS} IN ACCESS EXCLUSIVE MODE")
            locked.set()
            done.wait(9)

    holder = threading.Thread(target=hold_lock)
    try:
        assert post(setup, 999).status_code == 200
        holder.start()
        assert locked.wait(10)

        def stored() -> set[str]:
            with psycopg.connect(postgres_schema_url) as conn:
                rows = conn.execute(f"SELECT id FROM {EVENTS}").fetchall()  # noqa: S608
                return {row[0] for row in rows}

        check_locked_then_free(setup, done.set, stored)
    finally:
        done.set()
        holder.join(15)
        server.stop()
    assert "Traceback" not in server.output()
