"""``callbacks dispatch``: receivers with ``[dispatch] enabled = false`` only verify and store, and
a process of its own delivers, on SQLite and on PostgreSQL. It stops on SIGTERM once a running
handler has finished, picks up what was stored while it was down, and two of them share the work:
a SIGKILLed one's events are delivered by the other once their leases lapse."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from callbacks.store.postgres import PostgresStore
from tests.support import (
    REPO,
    Cli,
    DispatcherProcess,
    Route,
    ServerProcess,
    Setup,
    free_port,
    freeze_while_holding,
    keys_for,
    sample_body,
    signed_request,
    sqlite_claims_of,
    wait_for,
)

pytestmark = pytest.mark.slow

ROUTES = [Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime")]
KEYS = keys_for(ROUTES)


def _send(setup: Setup, first: int, count: int) -> list[str]:
    ids = []
    with httpx.Client(timeout=10) as client:
        for n in range(first, first + count):
            req = signed_request(ROUTES[0], KEYS["st"], sample_body(ROUTES[0], n))
            answer = req.send(client, setup.base_url)
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["delivery_id"])
    return ids


def _ended(setup: Setup) -> Counter[str]:
    return Counter(r["id"] for r in setup.delivered() if r["phase"] == "end")


def _statuses(setup: Setup) -> Counter[str]:
    return Counter(e["status"] for e in Cli(setup.config_path).json("events", "list"))


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_schema_url")

    async def upgrade() -> None:
        store = PostgresStore(url)
        await store.upgrade()
        await store.close()

    asyncio.run(upgrade())
    return url


def test_receivers_store_and_the_dispatch_process_delivers(
    tmp_path: Path, store_url: str | None
) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS, store_url=store_url, dispatch={"enabled": False})
    setup.write()
    receiver = ServerProcess(setup).start()
    dispatcher = DispatcherProcess(setup)
    try:
        first = _send(setup, 0, 20)
        # Nothing delivers them in the receiver's process: they wait, stored, unclaimed.
        assert not wait_for(lambda: setup.delivered(), timeout=1.0)
        assert _statuses(setup) == Counter(pending=20)

        dispatcher.start()
        assert dispatcher.proc is not None
        assert wait_for(lambda: set(_ended(setup)) == set(first), timeout=30), _ended(setup)
        assert {r["pid"] for r in setup.delivered()} == {dispatcher.proc.pid}
        assert wait_for(lambda: _statuses(setup) == Counter(delivered=20), timeout=10)

        # Stopped, then started again: what arrived meanwhile waits for it, and is delivered.
        dispatcher.stop()
        assert dispatcher.proc.returncode == 0, dispatcher.output()
        later = _send(setup, 20, 5)
        assert not wait_for(lambda: set(later) & set(_ended(setup)), timeout=0.5)
        dispatcher.start()
        assert wait_for(lambda: set(_ended(setup)) == {*first, *later}, timeout=30)
        assert max(_ended(setup).values()) == 1  # each delivered once
        assert receiver.proc is not None
        assert receiver.proc.poll() is None
    finally:
        dispatcher.stop()
        receiver.stop()
    log = dispatcher.output()
    assert '"dispatcher_started"' in log
    assert '"dispatcher_stopping"' in log
    assert "Traceback" not in log


def test_sigterm_lets_the_running_handler_finish(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS, dispatch={"enabled": False}).write()
    receiver = ServerProcess(setup).start()
    dispatcher = DispatcherProcess(setup, env={"E2E_HANDLER_DELAY": "1.5"})
    try:
        [delivery_id] = _send(setup, 0, 1)
        dispatcher.start()
        assert wait_for(lambda: any(r["phase"] == "start" for r in setup.delivered()))
        assert dispatcher.proc is not None
        dispatcher.proc.send_signal(signal.SIGTERM)
        assert dispatcher.proc.wait(20) == 0
        # It finished the handler and wrote the outcome before it exited.
        assert _ended(setup) == Counter({delivery_id: 1})
        assert _statuses(setup) == Counter(delivered=1)
    finally:
        dispatcher.stop()
        receiver.stop()


def test_two_dispatchers_share_the_work_and_a_killed_ones_events_are_taken_over(
    tmp_path: Path,
) -> None:
    # A dispatcher holds up to 16 events per concurrent slot: with one slot each, both take part.
    setup = Setup(
        tmp_path, ROUTES, KEYS, dispatch={"enabled": False, "lease_seconds": 2, "concurrency": 1}
    ).write()
    receiver = ServerProcess(setup).start()
    env = {"E2E_HANDLER_DELAY": "0.2"}
    survivor, victim = DispatcherProcess(setup, env), DispatcherProcess(setup, env)
    sent = _send(setup, 0, 60)
    try:
        survivor.start()
        victim.start()
        assert victim.proc is not None
        assert survivor.proc is not None
        both = {victim.proc.pid, survivor.proc.pid}
        assert wait_for(lambda: {r["pid"] for r in setup.delivered()} == both, timeout=30)
        held = freeze_while_holding(
            victim.proc.pid, lambda pid: sqlite_claims_of(setup.root / "callbacks.db", pid)
        )
        victim.kill()
        assert held, "the killed dispatcher held no claims: the takeover was not exercised"

        assert wait_for(lambda: set(_ended(setup)) == set(sent), timeout=60), set(sent) - set(
            _ended(setup)
        )
        ended = _ended(setup)
        twice = {delivery_id for delivery_id, n in ended.items() if n > 1}
        assert twice <= held  # only an event whose handler the kill interrupted runs again
        taken_over = {r["id"] for r in setup.delivered() if r["pid"] == survivor.proc.pid} & held
        assert taken_over == held
        assert wait_for(lambda: _statuses(setup) == Counter(delivered=60), timeout=10)
    finally:
        victim.stop()
        survivor.stop()
        receiver.stop()


def test_dispatch_refuses_a_config_it_cannot_run_with_one_line(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS, dispatch={"enabled": False}).write()
    text = setup.config_path.read_text().replace('"e2e_handlers"', '"no_such_handlers_module"')
    setup.config_path.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "callbacks.cli", "dispatch", "--config", str(setup.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 1
    assert "no_such_handlers_module" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_listener_answers_probes_and_scrapes_and_says_when_the_store_fails(
    tmp_path: Path,
) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS, dispatch={"enabled": False}).write()
    receiver = ServerProcess(setup).start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    dispatcher = DispatcherProcess(setup).start(30.0, "--listen", f"127.0.0.1:{port}")
    db = setup.root / "callbacks.db"
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    try:
        assert httpx.get(f"{base}/healthz", timeout=10).json() == {"status": "ok"}
        assert httpx.get(f"{base}/readyz", timeout=10).json() == {"status": "ready"}
        sent = _send(setup, 0, 3)
        assert wait_for(lambda: set(_ended(setup)) == set(sent), timeout=30)
        scraped = httpx.get(f"{base}/metrics", timeout=10).text
        assert 'avatar_callbacks_handler_attempts_total{handler="e2e_handlers.record",' in scraped

        holder.execute("BEGIN IMMEDIATE")  # what a long CLI purge would hold: claims fail
        assert wait_for(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 503)
        answer = httpx.get(f"{base}/readyz", timeout=10).json()
        assert answer["reasons"] == ["store_unavailable"]
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200  # alive, waiting
        holder.execute("COMMIT")
        assert wait_for(lambda: httpx.get(f"{base}/readyz", timeout=10).status_code == 200)
        later = _send(setup, 3, 2)
        assert wait_for(lambda: set(later) <= set(_ended(setup)), timeout=30)
    finally:
        holder.close()
        dispatcher.stop()
        receiver.stop()
    assert dispatcher.proc is not None
    assert dispatcher.proc.returncode == 0
    with pytest.raises(httpx.TransportError):  # the listener went with the process
        httpx.get(f"{base}/healthz", timeout=2)


def test_a_taken_listen_port_stops_dispatch_with_one_line(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS, dispatch={"enabled": False}).write()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "callbacks.cli", "dispatch"),
                *("--config", str(setup.config_path), "--listen", f"127.0.0.1:{port}"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
                "E2E_EVENTS_FILE": str(setup.events_path),
            },
        )
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    bad = Cli(setup.config_path).run("dispatch", "--listen", "nowhere")
    assert bad.exit_code == 2
    assert 'must be "HOST:PORT"' in bad.output


def test_the_listeners_metrics_carry_the_stores_gauges(tmp_path: Path) -> None:
    """Sampled from the store every few seconds: a dead event shows in the dead-events gauge."""
    setup = Setup(tmp_path, ROUTES, KEYS, dispatch={"enabled": False, "max_attempts": 2}).write()
    receiver = ServerProcess(setup).start()
    port = free_port()
    dispatcher = DispatcherProcess(setup, env={"E2E_FAIL_ROUTE": "st"})
    dispatcher.start(30.0, "--listen", f"127.0.0.1:{port}")
    dead_gauge = 'avatar_callbacks_dead_events{route="st"} 1.0'
    try:
        _send(setup, 0, 1)
        assert wait_for(lambda: _statuses(setup) == Counter(dead=1), timeout=30)

        def scraped() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text

        assert wait_for(lambda: dead_gauge in scraped(), timeout=20), scraped()
        assert "avatar_callbacks_inbox_depth 0.0" in scraped()
    finally:
        dispatcher.stop()
        receiver.stop()
