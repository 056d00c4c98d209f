"""SIGHUP to a several-worker ``callbacks serve`` (what the systemd unit's ExecReload sends to
the main process) reloads the key file in every worker, and restarts none of them."""

from __future__ import annotations

import asyncio
import signal
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import tomli_w

from callbacks.keyfile import KeyFile, write_key_file
from callbacks.store.postgres import PostgresStore
from tests.support import Route, ServerProcess, Setup, sample_body, signed_request, wait_for
from verify import key_id

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ST = Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime")
OLD_KEY = "OldReloadKey2025abcXY"
NEW_KEY = "NewReloadKey2026abcXY"
MAX_REQUESTS = 200  # new connections until both workers have answered one


def _upgrade(url: str) -> None:
    async def main() -> None:
        store = PostgresStore(url)
        await store.upgrade()
        await store.close()

    asyncio.run(main())


def worker_pids(master: int) -> set[int]:
    """The master's children that serve requests (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    pids = set()
    for pid in map(int, children):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.add(pid)
    return pids


def keys_loaded_lines(proc: ServerProcess, key: str) -> int:
    return sum(
        1 for line in proc.output().splitlines() if "keys_loaded" in line and key_id(key) in line
    )


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc for worker pids")
def test_sighup_reloads_keys_in_every_worker_without_restarting_them(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    _upgrade(postgres_schema_url)
    setup = Setup(tmp_path, [ST], {"st": OLD_KEY}, store_url=postgres_schema_url).write()
    # No polling within the test: only the signal can make the workers see the new key.
    config = tomllib.loads(setup.config_path.read_text())
    config["keys"]["reload_interval"] = 3600
    setup.config_path.write_text(tomli_w.dumps(config))
    server = ServerProcess(setup, env={"CALLBACKS_WORKERS": "2"}).start()
    assert server.proc is not None
    try:
        assert wait_for(lambda: len(worker_pids(server.proc.pid)) == 2)
        before = worker_pids(server.proc.pid)
        assert wait_for(lambda: keys_loaded_lines(server, OLD_KEY) == 2)

        now = datetime.now(UTC)
        write_key_file(setup.keys_path, KeyFile().add("st", NEW_KEY, state="primary", now=now))
        server.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda: keys_loaded_lines(server, NEW_KEY) == 2), server.output()[-3000:]

        answered = 0
        served_by: set[int] = set()
        while served_by != before and answered < MAX_REQUESTS:
            with httpx.Client(timeout=10) as client:  # a new connection each time
                req = signed_request(ST, NEW_KEY, sample_body(ST, answered))
                response = req.send(client, setup.base_url)
            assert response.status_code == 200, response.text
            answered += 1
            assert wait_for(lambda n=answered: len(setup.delivered()) >= 2 * n)
            served_by = {r["pid"] for r in setup.delivered() if r["phase"] == "end"}
        assert served_by == before, "both workers verify with the new key"
        assert worker_pids(server.proc.pid) == before, "no worker was restarted"
        with httpx.Client(timeout=10) as client:
            old = signed_request(ST, OLD_KEY, sample_body(ST, 10**6)).send(client, setup.base_url)
        assert old.status_code == 401
    finally:
        server.stop()
    assert "restarting processes" not in server.output()
