"""Writes that fail outright, not slowly: a full disk under SQLite and a PostgreSQL database
turned read-only (what a failover to a standby looks like). Each answers 503 while it lasts,
``/readyz`` says why, and once the fault is gone callbacks are stored again with nothing
acknowledged missing. Real server processes; the faults are made, not mocked."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support import Route, ServerProcess, Setup, keys_for, sample_body, signed_request

pytestmark = pytest.mark.slow

ROUTES = [Route("st", "sensetime", "https://hooks.example.com/cb/st")]
KEYS = keys_for(ROUTES)
ROUTE = ROUTES[0]
PLATFORM_PATIENCE = 5.0


def post(setup: Setup, n: int) -> httpx.Response:
    with httpx.Client(timeout=PLATFORM_PATIENCE) as client:
        return signed_request(ROUTE, KEYS["st"], sample_body(ROUTE, n)).send(client, setup.base_url)


def post_until_stored(setup: Setup, n: int, attempts: int = 5) -> httpx.Response:
    for _ in range(attempts - 1):
        answer = post(setup, n)
        if answer.status_code != 503:
            return answer
        time.sleep(0.5)
    return post(setup, n)


def readiness(setup: Setup) -> httpx.Response:
    return httpx.get(f"{setup.base_url}/readyz", timeout=PLATFORM_PATIENCE)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that can really fill up. Mounting needs root."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is made with a small tmpfs, which needs root and mount(8)")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; returns the filler to delete."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


def test_sqlite_disk_full_answers_503_and_recovers(small_disk: Path) -> None:
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
        ready = readiness(setup)
        assert ready.status_code == 503
        assert "store_writes_failing" in ready.json()["reasons"]

        filler.unlink()
        after = [post(setup, n) for n in range(1, 40)]  # the platform sends them again
        assert {r.status_code for r in after} == {200}
        assert (readiness(setup).status_code, readiness(setup).json()) == (
            200,
            {"status": "ready"},
        )
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
    import asyncio

    import psycopg

    from callbacks.store.postgres import EVENTS, PostgresStore

    url, name = postgres_database

    async def upgrade() -> None:
        store = PostgresStore(url)
        await store.upgrade()
        await store.close()

    asyncio.run(upgrade())
    setup = Setup(tmp_path, ROUTES, KEYS, store_url=url).write()
    server = ServerProcess(setup).start()
    try:
        assert post(setup, 0).status_code == 200
        set_read_only(postgres_url, name, read_only=True)
        during = [post(setup, n) for n in range(1, 6)]
        assert {(r.status_code, r.json()["reason"]) for r in during} == {(503, "store_unavailable")}
        ready = readiness(setup)
        assert ready.status_code == 503
        assert "store_writes_failing" in ready.json()["reasons"]

        set_read_only(postgres_url, name, read_only=False)
        # The first writes after the switch may still meet a session the switch ended (503,
        # retried as the platform would); each callback is then stored.
        after = [post_until_stored(setup, n) for n in range(1, 6)]
        assert {r.status_code for r in after} == {200}
        assert readiness(setup).status_code == 200
    finally:
        server.stop()
    with psycopg.connect(url) as conn:
        stored = {row[0] for row in conn.execute(f"SELECT id FROM {EVENTS}")}  # noqa: S608
    assert {r.json()["delivery_id"] for r in after} <= stored
    assert "Traceback" not in server.output()
