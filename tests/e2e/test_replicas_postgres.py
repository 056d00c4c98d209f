"""Two receiver processes on one PostgreSQL database, behind an imaginary load balancer.

The same callbacks (and platform retries of them) go to both; one replica is SIGKILLed in the
middle of the stream. Every acknowledged callback must reach a handler, exactly once unless the
kill interrupted it, and never twice because two replicas received it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from callbacks.store.postgres import PostgresStore
from tests.support import (
    Route,
    ServerProcess,
    Setup,
    freeze_while_holding,
    keys_for,
    sample_body,
    signed_request,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROUTES = [
    Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime"),
    Route("ms", "metastudio", "https://hooks.example.com/callbacks/ms", "video", "MSS_A"),
]
KEYS = keys_for(ROUTES)
LEASE_SECONDS = 2


def _stream(replicas: list[Setup], acknowledged: list[str], stop: threading.Event) -> None:
    """Each notification goes to one replica and its retry to the other, from 8 connections."""

    async def send(client: httpx.AsyncClient, setup: Setup, n: int, retry: bool) -> str | None:
        route = ROUTES[n % 2]
        # A retry carries a new timestamp and signature over the same content.
        timestamp = int(time.time()) - (3 if retry else 0)
        req = signed_request(route, KEYS[route.name], sample_body(route, n), timestamp=timestamp)
        url = f"{setup.base_url}{req.path}" + (f"?{req.query}" if req.query else "")
        try:
            response = await client.post(url, content=req.body, headers=req.headers)
        except httpx.TransportError:
            return None
        return response.json()["delivery_id"] if response.status_code == 200 else None

    async def worker(w: int) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            n = w * 1_000_000
            while not stop.is_set():
                first, second = replicas[n % 2], replicas[(n + 1) % 2]
                got = await asyncio.gather(
                    send(client, first, n, False), send(client, second, n, True)
                )
                acknowledged.extend(g for g in got if g)
                n += 1

    async def main() -> None:
        await asyncio.gather(*(worker(w) for w in range(8)))

    asyncio.run(main())


def test_two_replicas_one_killed_every_acknowledged_callback_handled_once(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    async def upgrade() -> None:
        store = PostgresStore(postgres_schema_url)
        await store.upgrade()
        await store.close()

    asyncio.run(upgrade())
    events_file = tmp_path / "events.jsonl"
    setups = [
        Setup(
            tmp_path / f"replica{i}",
            ROUTES,
            KEYS,
            store_url=postgres_schema_url,
            dispatch={"lease_seconds": LEASE_SECONDS},
        ).write()
        for i in (1, 2)
    ]
    # Handlers slower than intake: a backlog forms, so the kill lands while claims are held.
    env = {"E2E_EVENTS_FILE": str(events_file), "E2E_HANDLER_DELAY": "0.05"}
    servers = [ServerProcess(s, env=env).start() for s in setups]
    victim, survivor = servers
    acknowledged: list[str] = []
    stop = threading.Event()
    sender = threading.Thread(target=_stream, args=(setups, acknowledged, stop))
    sender.start()
    try:
        assert wait_for(lambda: len(acknowledged) >= 200, timeout=60), "stream did not start"
        assert victim.proc is not None
        victim_pid = victim.proc.pid
        # Kill it while it holds claims, so the takeover of a dead replica's claims is what the
        # rest of the test exercises.
        held = freeze_while_holding(victim_pid, lambda pid: _claimed_by(postgres_schema_url, pid))
        victim.kill()
        # Claims the victim held at its death: the only events that may run twice.
        assert held, "the killed replica held no claims: the takeover was not exercised"
        wait_for(lambda: len(acknowledged) >= 400, timeout=30)  # the survivor keeps receiving
    except BaseException:
        survivor.stop()  # the test ends here: leave no server behind
        raise
    finally:
        stop.set()
        sender.join(30)
        victim.kill()

    try:
        # A retry acknowledged as a duplicate is handled through the original it points at.
        acked = _originals(postgres_schema_url, set(acknowledged))

        def all_handled() -> bool:
            ended = {r["id"] for r in _read(events_file) if r["phase"] == "end"}
            return acked <= ended

        assert wait_for(all_handled, timeout=60), "acknowledged callbacks were not handled"
        # Events the victim handled but died before settling are the survivor's once their
        # (renewed) leases lapse.
        assert wait_for(lambda: _pending(postgres_schema_url) == 0, timeout=30)
    finally:
        survivor.stop()

    with psycopg.connect(postgres_schema_url) as conn:
        statuses = Counter(
            row[0] for row in conn.execute("SELECT status FROM avatar_callbacks_events")
        )
        stored = {row[0] for row in conn.execute("SELECT id FROM avatar_callbacks_events")}
    assert set(acknowledged) <= stored, "an acknowledged callback is not in the database"
    assert statuses["duplicate"] > 0, "retries to the other replica were not deduplicated"
    assert statuses["pending"] == 0

    recs = _read(events_file)
    assert survivor.proc is not None
    assert {r["pid"] for r in recs} == {victim_pid, survivor.proc.pid}, "one replica did no work"
    ends = Counter(r["id"] for r in recs if r["phase"] == "end")
    starts = Counter(r["id"] for r in recs if r["phase"] == "start")
    duplicates_handled = set(ends) & _duplicate_ids(postgres_schema_url)
    assert not duplicates_handled, "a retry reached a handler"
    twice = {i for i, c in ends.items() if c > 1} | {i for i, c in starts.items() if c > 1}
    print(f"held at kill={len(held)} ran twice={len(twice)} acknowledged={len(acked)}")
    assert twice <= held, f"{len(twice - held)} events ran twice without the kill explaining it"


def _read(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def _duplicate_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id FROM avatar_callbacks_events WHERE status = 'duplicate'")
        return {row[0] for row in rows}


def _originals(url: str, ids: set[str]) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id, duplicate_of FROM avatar_callbacks_events WHERE id = ANY(%s)", (list(ids),)
        )
        return {duplicate_of or event_id for event_id, duplicate_of in rows}


def _pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM avatar_callbacks_events WHERE status = 'pending'"
        ).fetchone()
        return int(row[0]) if row else 0


def _claimed_by(url: str, pid: int) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT id FROM avatar_callbacks_events WHERE claimed_by LIKE %s", (f"%:{pid}:%",)
        )
        return {row[0] for row in rows}
