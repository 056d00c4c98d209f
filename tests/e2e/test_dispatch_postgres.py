"""The dispatcher on PostgreSQL, through real server processes: a handler longer than the lease
runs once across two replicas, and a database turned read-only neither spins nor floods."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from callbacks.store.postgres import PostgresStore
from tests.e2e.dispatch_support import log_records, send_all, use_handlers
from tests.e2e.test_dispatch_resilience import FAILING_UNTIL_FIXED, assert_quiet_while_failing
from tests.support import Route, ServerProcess, Setup, keys_for, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ST = Route("st", "sensetime", "https://hooks.example.com/callbacks/st")
KEYS = keys_for([ST])
EVENTS = "avatar_callbacks_events"

LONG_HANDLER = """
import os, time
from callbacks import Handlers
from e2e_record import write

handlers = Handlers()

@handlers.on_any
def long_job(event):
    write({"phase": "start", "id": event.delivery_id, "pid": os.getpid()})
    time.sleep(float(os.environ["E2E_HANDLER_SECONDS"]))
    write({"phase": "end", "id": event.delivery_id, "pid": os.getpid()})
"""


def _upgrade(url: str) -> None:
    async def main() -> None:
        store = PostgresStore(url)
        await store.upgrade()
        await store.close()

    asyncio.run(main())


def _row(url: str, event_id: str) -> tuple[str, int, float | None, str | None]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT status, attempts, claimed_until, claimed_by FROM {EVENTS} WHERE id = %s",  # noqa: S608
            (event_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


def test_a_handler_longer_than_the_lease_runs_once_across_two_replicas(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    lease = 1.5
    _upgrade(postgres_schema_url)
    events_file = tmp_path / "events.jsonl"
    setups = []
    for name in ("one", "two"):
        setup = Setup(
            tmp_path / name,
            [ST],
            KEYS,
            store_url=postgres_schema_url,
            dispatch={"lease_seconds": lease, "poll_interval": 0.1},
        ).write()
        use_handlers(setup, LONG_HANDLER)
        setups.append(setup)
    env = {"E2E_EVENTS_FILE": str(events_file), "E2E_HANDLER_SECONDS": str(lease * 4)}
    servers = [ServerProcess(s, env=env).start() for s in setups]
    try:
        [event_id] = send_all(setups[0], KEYS["st"], ST, [{"taskId": 1, "status": 2}])

        def records() -> list[dict[str, object]]:
            if not events_file.exists():
                return []
            return [orjson.loads(line) for line in events_file.read_bytes().splitlines() if line]

        assert wait_for(lambda: any(r["phase"] == "start" for r in records()), timeout=20)
        _, _, first_until, owner = _row(postgres_schema_url, event_id)
        assert first_until is not None
        assert owner is not None
        # While the handler runs, its lease keeps moving past where it first ended, and stays
        # with the first replica: the second, claiming every 0.1 s, never gets it.
        assert wait_for(
            lambda: (_row(postgres_schema_url, event_id)[2] or 0) > first_until + lease,
            timeout=20,
        )
        assert _row(postgres_schema_url, event_id)[3] == owner
        assert wait_for(lambda: any(r["phase"] == "end" for r in records()), timeout=30)
        assert wait_for(lambda: _row(postgres_schema_url, event_id)[0] == "delivered", timeout=20)
        time.sleep(lease * 2)  # had the lease lapsed, the other replica would have run it now
        starts = [r for r in records() if r["phase"] == "start"]
        assert len(starts) == 1, records()
        status, attempts, claimed_until, claimed_by = _row(postgres_schema_url, event_id)
        assert (status, attempts, claimed_until, claimed_by) == ("delivered", 1, None, None)
        assert servers[0].proc is not None
        assert starts[0]["pid"] == servers[0].proc.pid
        lost = [
            r for s in servers for r in log_records(s) if r.get("event") == "dispatch_lease_lost"
        ]
        assert lost == []
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def private_database(postgres_url: str) -> Iterator[str]:
    """A database of the test's own (it is turned read-only), dropped afterwards."""
    name = f"cb_ro_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _read_only(admin_url: str, database: str, on: bool) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        value = "on" if on else "off"
        conn.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = {value}')
        if on:  # sessions keep the default they started with: end them, as a failover would
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )


def test_a_read_only_database_with_events_pending_neither_spins_nor_floods_and_recovers(
    tmp_path: Path, postgres_url: str, private_database: str
) -> None:
    database = conninfo_to_dict(private_database)["dbname"]
    assert isinstance(database, str)
    _upgrade(private_database)
    setup = Setup(
        tmp_path / "receiver",
        [ST],
        KEYS,
        store_url=private_database,
        dispatch={
            "backoff_max": 0.2,
            "max_attempts": 1000,
            "store_backoff_initial": 0.2,
            "store_backoff_max": 2,
        },
    ).write()
    use_handlers(setup, FAILING_UNTIL_FIXED)
    broken = tmp_path / "broken"
    broken.touch()
    server = ServerProcess(setup, env={"E2E_BROKEN_FILE": str(broken)}).start()
    try:
        ids = send_all(setup, KEYS["st"], ST, ({"taskId": n, "status": 2} for n in range(5)))
        assert wait_for(lambda: len(setup.delivered()) >= 15, timeout=20)  # being retried
        _read_only(postgres_url, database, on=True)
        assert wait_for(
            lambda: any(
                r.get("event") == "dispatch_store_unavailable" for r in log_records(server)
            ),
            timeout=10,
        ), server.output()[-3000:]
        assert_quiet_while_failing(server)
        unavailable = [
            r for r in log_records(server) if r.get("event") == "dispatch_store_unavailable"
        ]
        assert len(unavailable) == 1

        # Writable again (no restart, no failover): the receiver finds out by itself.
        _read_only(postgres_url, database, on=False)
        broken.unlink()

        def delivered() -> bool:
            with psycopg.connect(private_database) as conn:
                rows = conn.execute(
                    f"SELECT status FROM {EVENTS} WHERE id = ANY(%s)",  # noqa: S608
                    (ids,),
                ).fetchall()
            return {row[0] for row in rows} == {"delivered"}

        assert wait_for(delivered, timeout=60), server.output()[-3000:]
        recovered = [r for r in log_records(server) if r.get("event") == "dispatch_store_recovered"]
        assert recovered
        assert recovered[0]["failures"] >= 1
    finally:
        server.stop()
