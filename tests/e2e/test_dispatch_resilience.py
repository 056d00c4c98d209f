"""The dispatcher of a real server process (SQLite): hung handlers do not hold back other
events, events without a handler wait as ``unhandled`` and are replayed into handlers added
later, ``PermanentError`` ends a delivery at once, and a full disk neither spins nor floods."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.disk import fill, small_filesystem
from tests.e2e.dispatch_support import (
    cpu_seconds,
    log_line_count,
    log_records,
    metric,
    run_cli,
    send_all,
    sqlite_rows,
    use_handlers,
)
from tests.support import Route, ServerProcess, Setup, keys_for, wait_for

pytestmark = pytest.mark.slow

ST = Route("st", "sensetime", "https://hooks.example.com/callbacks/st")
MS = Route("ms", "metastudio", "https://hooks.example.com/callbacks/ms", "video", "MSS_A")
KEYS = keys_for([ST, MS])

HANGING_HANDLERS = """
import asyncio, os, time
from callbacks import Handlers, MetaStudioJobResult, SenseTimeCallback
from e2e_record import write

handlers = Handlers()
_RELEASE = os.environ["E2E_RELEASE_FILE"]

@handlers.on(MetaStudioJobResult)
async def job_async(event):
    write({"phase": "start", "id": event.delivery_id, "job": event.job_id})
    if event.job_id == "hang":
        while not os.path.exists(_RELEASE):
            await asyncio.sleep(0.05)
    write({"phase": "end", "id": event.delivery_id})

@handlers.on(SenseTimeCallback)
def task_sync(event):
    write({"phase": "start", "id": event.delivery_id, "task": event.task_id})
    if event.task_id == "hang":
        while not os.path.exists(_RELEASE):
            time.sleep(0.05)
    write({"phase": "end", "id": event.delivery_id})
"""


def _setup(tmp_path: Path, **dispatch: object) -> Setup:
    return Setup(tmp_path / "receiver", [ST, MS], KEYS, dispatch=dict(dispatch)).write()


def _ended(setup: Setup) -> set[str]:
    return {r["id"] for r in setup.delivered() if r["phase"] == "end"}


def _started(setup: Setup) -> list[str]:
    return [r["id"] for r in setup.delivered() if r["phase"] == "start"]


def test_hung_async_and_sync_handlers_time_out_while_other_events_flow(tmp_path: Path) -> None:
    setup = _setup(tmp_path, handler_timeout=2, concurrency=4, handler_threads=8)
    use_handlers(setup, HANGING_HANDLERS)
    release = tmp_path / "release"
    server = ServerProcess(setup, env={"E2E_RELEASE_FILE": str(release)}).start()
    try:
        hung = send_all(setup, KEYS["ms"], MS, [{"job_id": "hang", "result": "SUCCEED"}])
        hung += send_all(setup, KEYS["st"], ST, [{"taskId": "hang", "status": 2}])
        assert wait_for(lambda: set(hung) <= set(_started(setup)), timeout=20)
        others = send_all(setup, KEYS["st"], ST, ({"taskId": n, "status": 2} for n in range(5)))
        others += send_all(
            setup, KEYS["ms"], MS, ({"job_id": f"j{n}", "result": "SUCCEED"} for n in range(5))
        )
        assert wait_for(lambda: set(others) <= _ended(setup), timeout=20), server.output()
        assert not set(hung) & _ended(setup)

        # Both hung handlers time out, are retried, and meanwhile every other event was
        # delivered: in the log, each of the others' attempts precedes the first timeout.
        def timeouts() -> list[int]:
            return [
                i
                for i, r in enumerate(log_records(server))
                if r.get("event") == "handler_attempt" and r.get("reason") == "timeout"
            ]

        assert wait_for(lambda: len(timeouts()) >= 2, timeout=20)
        records = log_records(server)
        ok_at = {
            r["delivery_id"]: i
            for i, r in enumerate(records)
            if r.get("event") == "handler_attempt" and r.get("outcome") == "ok"
        }
        assert set(others) <= set(ok_at)
        assert max(ok_at[i] for i in others) < min(timeouts())
        timed_out = {records[i]["delivery_id"] for i in timeouts()}
        assert timed_out == set(hung)

        # The outcome row is written after the log line (it rides the next commit): wait for it.
        def hung_rows_recorded() -> bool:
            rows = sqlite_rows(setup.root / "callbacks.db", hung).values()
            return all(
                row[0] == "pending" and "timeout: no result after 2 s" in (row[2] or "")
                for row in rows
            )

        assert wait_for(hung_rows_recorded, timeout=10)
        assert {row[0] for row in sqlite_rows(setup.root / "callbacks.db", others).values()} == {
            "delivered"
        }
        text = httpx.get(f"{setup.base_url}/metrics").text
        assert (
            metric(
                text, "avatar_callbacks_handler_timeouts_total", handler="e2e_handlers.task_sync"
            )
            >= 1
        )
        assert (
            metric(
                text, "avatar_callbacks_handler_timeouts_total", handler="e2e_handlers.job_async"
            )
            >= 1
        )
        assert not any(r.get("event") == "handler_returned_after_timeout" for r in records)

        # Released: the abandoned sync threads return (and say so), the events get delivered.
        release.touch()
        assert wait_for(lambda: set(hung) <= _ended(setup), timeout=30)
        assert wait_for(
            lambda: (
                {r[0] for r in sqlite_rows(setup.root / "callbacks.db", hung).values()}
                == {"delivered"}
            ),
            timeout=30,
        )
        assert wait_for(
            lambda: any(
                r.get("event") == "handler_returned_after_timeout"
                and r.get("handler") == "e2e_handlers.task_sync"
                for r in log_records(server)
            ),
            timeout=10,
        )
    finally:
        release.touch()
        server.stop()


PERMANENT_HANDLERS = """
from callbacks import Handlers, MetaStudioJobResult, PermanentError, SenseTimeCallback
from e2e_record import write

handlers = Handlers()

@handlers.on(MetaStudioJobResult)
async def publish(event):
    write({"phase": "end", "id": event.delivery_id, "handler": "publish"})

@handlers.on(SenseTimeCallback)
def refuse(event):
    write({"phase": "start", "id": event.delivery_id, "handler": "refuse"})
    raise PermanentError(f"task {event.task_id} belongs to a deleted tenant")

@handlers.on_dead
def park(dead):
    write({"phase": "dead", "id": dead.event.delivery_id, "errors": dict(dead.errors)})
"""


def test_unhandled_events_wait_then_replay_into_new_handlers_and_permanent_errors_die(
    tmp_path: Path,
) -> None:
    setup = _setup(tmp_path, max_attempts=5)
    db = setup.root / "callbacks.db"
    use_handlers(setup, None)  # deployed before its handler module was configured
    server = ServerProcess(setup).start()
    try:
        st_ids = send_all(setup, KEYS["st"], ST, [{"taskId": 1, "status": 2}])
        ms_ids = send_all(
            setup, KEYS["ms"], MS, ({"job_id": f"j{n}", "result": "SUCCEED"} for n in range(2))
        )
        ids = st_ids + ms_ids
        assert wait_for(
            lambda: {r[0] for r in sqlite_rows(db, ids).values()} == {"unhandled"}, timeout=20
        )
        assert all(attempts == 0 for _, attempts, _ in sqlite_rows(db, ids).values())
        records = log_records(server)
        assert [r["event"] for r in records].count("no_handlers_configured") == 1
        warned = [r["event_type"] for r in records if r["event"] == "no_handler_for_event_type"]
        assert sorted(warned) == ["MetaStudioJobResult", "SenseTimeCallback"]  # once per type
        text = httpx.get(f"{setup.base_url}/metrics").text
        assert metric(text, "avatar_callbacks_unhandled_events", route="ms") == 2
        assert metric(text, "avatar_callbacks_unhandled_events", route="st") == 1
    finally:
        server.stop()

    use_handlers(setup, PERMANENT_HANDLERS)  # the handlers ship: restart, then replay
    server = ServerProcess(setup).start()
    try:
        listed = run_cli(setup, "events", "list", "--status", "unhandled", "--json")
        assert listed.returncode == 0, listed.stderr
        assert sorted(e["id"] for e in json.loads(listed.stdout)) == sorted(ids)
        replayed = run_cli(setup, "events", "replay", "--unhandled")
        assert replayed.returncode == 0, replayed.stderr
        assert "re-queued 3 event(s)" in replayed.stdout

        def settled() -> bool:
            return {r[0] for r in sqlite_rows(db, ids).values()} <= {"delivered", "dead"}

        assert wait_for(settled, timeout=20), server.output()
        rows = sqlite_rows(db, ids)
        assert {i: rows[i][:2] for i in ms_ids} == dict.fromkeys(ms_ids, ("delivered", 1))
        status, attempts, error = rows[st_ids[0]]
        assert (status, attempts) == ("dead", 1)  # max_attempts is 5: not waited for
        assert error is not None
        assert error.endswith("PermanentError: task 1 belongs to a deleted tenant")
        assert wait_for(lambda: any(r["phase"] == "dead" for r in setup.delivered()), timeout=10)
        # A few more polls: neither the dead event nor its hook runs again.
        time.sleep(0.5)
        records = setup.delivered()
        assert [r["id"] for r in records if r["phase"] == "dead"] == st_ids
        assert [r["id"] for r in records if r.get("handler") == "refuse"] == st_ids
        (dead,) = [r for r in records if r["phase"] == "dead"]
        assert list(dead["errors"].values()) == [error.split(": ", 1)[1]]
        text = httpx.get(f"{setup.base_url}/metrics").text
        assert metric(text, "avatar_callbacks_dead_events", route="st") == 1
        assert metric(text, "avatar_callbacks_unhandled_events", route="ms") == 0
    finally:
        server.stop()


# -- a full disk -------------------------------------------------------------------------------

FAILING_UNTIL_FIXED = """
import os
from callbacks import Handlers
from e2e_record import write

handlers = Handlers()
_BROKEN = os.environ["E2E_BROKEN_FILE"]

@handlers.on_any
def flaky(event):
    write({"phase": "start", "id": event.delivery_id})
    if os.path.exists(_BROKEN):
        raise RuntimeError("downstream is down")
    write({"phase": "end", "id": event.delivery_id})
"""


def assert_quiet_while_failing(server: ServerProcess, seconds: float = 5.0) -> tuple[int, float]:
    """Over ``seconds`` of an outage: how many log lines and how much CPU the server used."""
    assert server.proc is not None
    lines, cpu = log_line_count(server), cpu_seconds(server.proc.pid)
    time.sleep(seconds)
    new_lines = log_line_count(server) - lines
    used = cpu_seconds(server.proc.pid) - cpu
    print(f"over {seconds} s of outage: {new_lines} log lines, {used:.2f} s CPU")
    assert new_lines < 20, server.output()[-3000:]
    assert used < 1.0
    return new_lines, used


def test_a_full_disk_with_events_pending_neither_spins_nor_floods_and_recovers(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "data", "4m") as data:
        setup = Setup(
            tmp_path / "receiver",
            [ST, MS],
            KEYS,
            store_url=f"sqlite:///{data}/callbacks.db",
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
        filler = None
        try:
            ids = send_all(setup, KEYS["st"], ST, ({"taskId": n, "status": 2} for n in range(5)))
            # Retried every 0.2 s at most: the dispatcher keeps claiming them.
            assert wait_for(lambda: len(_started(setup)) >= 15, timeout=20)
            filler = fill(data)
            assert wait_for(
                lambda: any(
                    r.get("event") == "dispatch_store_unavailable" for r in log_records(server)
                ),
                timeout=10,
            ), server.output()[-3000:]
            assert_quiet_while_failing(server)
            # One line per change of state. A write can still succeed now and then on the full
            # disk (SQLite reuses the WAL's space once it is checkpointed), and that is a change
            # too: the lines alternate, starting with the outage, never two outages in a row.
            changes = [
                r
                for r in log_records(server)
                if r.get("event") in ("dispatch_store_unavailable", "dispatch_store_recovered")
            ]
            assert changes[0]["event"] == "dispatch_store_unavailable"
            assert all(a["event"] != b["event"] for a, b in itertools.pairwise(changes))
            unavailable = [r for r in changes if r["event"] == "dispatch_store_unavailable"]
            assert all("full" in r["error"] for r in unavailable)

            filler.unlink()
            broken.unlink()
            assert wait_for(lambda: set(ids) <= _ended(setup), timeout=60), server.output()[-3000:]
            recovered = [
                r for r in log_records(server) if r.get("event") == "dispatch_store_recovered"
            ]
            assert recovered
            assert recovered[0]["failures"] >= 1
            assert wait_for(
                lambda: (
                    {r[0] for r in sqlite_rows(data / "callbacks.db", ids).values()}
                    == {"delivered"}
                ),
                timeout=30,
            )
        finally:
            if filler is not None:
                filler.unlink(missing_ok=True)
            server.stop()
