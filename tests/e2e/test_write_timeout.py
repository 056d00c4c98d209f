"""A store that cannot take a write in time, or at all (a full disk, a read-only database),
answers 503 (the platform retries), never a request held for as long as a lock lasts, and
``/readyz`` says why; once the fault is gone, callbacks are stored again and every one that was
acknowledged is there. Real server processes; locks held by another connection, faults made for
real."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.disk import fill, small_filesystem
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


def get_readiness(setup: Setup) -> httpx.Response:
    return httpx.get(f"{setup.base_url}/readyz", timeout=PLATFORM_PATIENCE)


def post_many(setup: Setup, numbers: range) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=len(numbers)) as pool:
        return list(pool.map(lambda n: post(setup, n), numbers))


def upgrade_postgres(url: str) -> None:
    """The schema, as `callbacks db upgrade` makes it before the receivers start."""
    from callbacks.store.postgres import PostgresStore

    async def upgrade() -> None:
        store = PostgresStore(url)
        await store.upgrade()
        await store.close()

    asyncio.run(upgrade())


def check_locked_then_free(
    setup: Setup,
    release: Callable[[], object],
    stored_ids: Callable[[], set[str]],
    *,
    one_process: bool = True,
) -> None:
    """While the lock is held every answer is a 503; after, 200s, and nothing acknowledged is
    missing (the 503'd callbacks, sent again as the platform would, are stored too). Readiness is
    a worker's own: with several, which one answers ``/readyz`` is the kernel's choice, so it is
    checked with one (``one_process``)."""
    try:
        during = [r for start in (0, 10, 20) for r in post_many(setup, range(start, start + 3))]
        readiness = get_readiness(setup)
    finally:
        release()
    assert [(r.status_code, r.json()["reason"]) for r in during] == [
        (503, "store_unavailable")
    ] * len(during)
    # Writes fail: the orchestrator should send traffic elsewhere.
    if one_process:
        assert readiness.status_code == 503
        assert "store_writes_failing" in readiness.json()["reasons"]
    after = [post(setup, n) for n in range(100, 105)]
    ready_again = httpx.get(f"{setup.base_url}/readyz", timeout=PLATFORM_PATIENCE)
    if one_process:
        assert (ready_again.status_code, ready_again.json()) == (200, {"status": "ready"})
    retried = [r for start in (0, 10, 20) for r in post_many(setup, range(start, start + 3))]
    assert {r.status_code for r in after + retried} == {200}
    acknowledged = {r.json()["delivery_id"] for r in after + retried}
    assert acknowledged <= stored_ids()


@pytest.mark.parametrize("workers", [1, 2])
def test_sqlite_write_lock_held_elsewhere_answers_503(tmp_path: Path, workers: int) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS).write()
    server = ServerProcess(setup, env={"CALLBACKS_WORKERS": str(workers)}).start()
    db = setup.root / "callbacks.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        assert post(setup, 999).status_code == 200
        holder.execute("BEGIN IMMEDIATE")  # what a long CLI purge would hold

        def stored() -> set[str]:
            with sqlite3.connect(db) as conn:
                return {row[0] for row in conn.execute("SELECT id FROM events")}

        release = lambda: holder.execute("COMMIT")  # noqa: E731
        check_locked_then_free(setup, release, stored, one_process=workers == 1)
    finally:
        holder.close()
        server.stop()
    assert "Traceback" not in server.output()


@pytest.mark.postgres
def test_postgres_table_lock_held_elsewhere_answers_503(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    import psycopg

    from callbacks.store.postgres import EVENTS

    upgrade_postgres(postgres_schema_url)
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


# Writes that fail outright, not slowly: a full disk under SQLite, and a PostgreSQL database
# turned read-only (what a failover to a standby looks like).


def post_until_stored(setup: Setup, n: int, attempts: int = 5) -> httpx.Response:
    for _ in range(attempts - 1):
        answer = post(setup, n)
        if answer.status_code != 503:
            return answer
        time.sleep(0.5)
    return post(setup, n)


def test_sqlite_disk_full_answers_503_and_recovers(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", "4m") as disk:
        check_disk_full(disk)


def check_disk_full(small_disk: Path) -> None:
    # The server's log goes to the same full disk, as a `serve >> file` would: a log line that
    # cannot be written must not change an answer.
    setup = Setup(small_disk / "cb", ROUTES, KEYS).write()
    server = ServerProcess(setup).start()
    try:
        assert post(setup, 0).status_code == 200
        filler = fill(small_disk)
        # Enough callbacks to need pages the full disk cannot give.
        during = [post(setup, n) for n in range(1, 40)]
        refused = [r for r in during if r.status_code != 200]
        assert refused, "a full disk must refuse some writes"
        assert {(r.status_code, r.json()["reason"]) for r in refused} == {
            (503, "store_unavailable")
        }
        ready = get_readiness(setup)
        assert ready.status_code == 503
        assert "store_writes_failing" in ready.json()["reasons"]

        filler.unlink()
        after = [post(setup, n) for n in range(1, 40)]  # the platform sends them again
        assert {r.status_code for r in after} == {200}
        ready_again = get_readiness(setup)
        assert (ready_again.status_code, ready_again.json()) == (200, {"status": "ready"})
    finally:
        server.stop()
    acknowledged = {r.json()["delivery_id"] for r in during + after if r.status_code == 200}
    with sqlite3.connect(setup.root / "callbacks.db") as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM events")}
    assert acknowledged <= stored
    assert "Traceback" not in server.output()


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A database of its own, so it can be made read-only without touching anyone else's."""
    import psycopg

    name = f"cb_readonly_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = urlsplit(postgres_url)._replace(path=f"/{name}").geturl()
    try:
        yield url, name
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def set_read_only(admin_url: str, name: str, read_only: bool) -> None:
    """Flip the database and drop its sessions, as a failover does: the receiver's pool has to
    reconnect and finds the new state."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        value = "on" if read_only else "off"
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = {value}")
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


@pytest.mark.postgres
def test_postgres_read_only_answers_503_and_recovers(
    tmp_path: Path, postgres_url: str, postgres_database: tuple[str, str]
) -> None:
    import psycopg

    from callbacks.store.postgres import EVENTS

    url, name = postgres_database
    upgrade_postgres(url)
    setup = Setup(tmp_path, ROUTES, KEYS, store_url=url).write()
    server = ServerProcess(setup).start()
    try:
        assert post(setup, 0).status_code == 200
        set_read_only(postgres_url, name, read_only=True)
        during = [post(setup, n) for n in range(1, 6)]
        assert {(r.status_code, r.json()["reason"]) for r in during} == {(503, "store_unavailable")}
        ready = get_readiness(setup)
        assert ready.status_code == 503
        assert "store_writes_failing" in ready.json()["reasons"]

        set_read_only(postgres_url, name, read_only=False)
        # The first writes after the switch may still meet a session the switch ended (503,
        # retried as the platform would); each callback is then stored.
        after = [post_until_stored(setup, n) for n in range(1, 6)]
        assert {r.status_code for r in after} == {200}
        assert get_readiness(setup).status_code == 200
    finally:
        server.stop()
    with psycopg.connect(url) as conn:
        stored = {row[0] for row in conn.execute(f"SELECT id FROM {EVENTS}")}  # noqa: S608
    assert {r.json()["delivery_id"] for r in after} <= stored
    assert "Traceback" not in server.output()
