"""Several uvicorn workers on PostgreSQL: metrics add up across the processes, and a database
without the schema stops ``callbacks serve`` with one clear line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from callbacks.store.postgres import PostgresStore
from tests.support import (
    REPO,
    Route,
    ServerProcess,
    Setup,
    keys_for,
    sample_body,
    signed_request,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROUTES = [Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime")]
KEYS = keys_for(ROUTES)


def _upgrade(url: str) -> None:
    async def main() -> None:
        store = PostgresStore(url)
        await store.upgrade()
        await store.close()

    asyncio.run(main())


def test_metrics_aggregate_across_worker_processes(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    _upgrade(postgres_schema_url)
    setup = Setup(tmp_path, ROUTES, KEYS, store_url=postgres_schema_url).write()
    server = ServerProcess(setup, env={"CALLBACKS_WORKERS": "2"}).start()
    sent = 60
    try:
        # New connections each time, so the kernel spreads them over both workers.
        for n in range(sent):
            with httpx.Client(timeout=10) as client:
                req = signed_request(ROUTES[0], KEYS["st"], sample_body(ROUTES[0], n))
                assert req.send(client, setup.base_url).status_code == 200
        for _ in range(20):
            text = httpx.get(f"{setup.base_url}/metrics", timeout=10).text
            accepted = [
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("avatar_callbacks_requests_total{")
                and 'outcome="accepted"' in line
            ]
            assert sum(accepted) == sent
    finally:
        server.stop()
    worker_lines = [
        line for line in server.output().splitlines() if "Started server process" in line
    ]
    assert len(worker_lines) == 2, "uvicorn did not start two workers"


def test_serve_refuses_a_database_without_the_schema(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS, store_url=postgres_schema_url).write()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    env["E2E_EVENTS_FILE"] = str(setup.events_path)
    cli = [sys.executable, "-c", "from callbacks.cli import main; main()"]
    result = subprocess.run(
        [*cli, "serve", "--config", str(setup.config_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "callbacks db upgrade" in result.stderr
    assert "Traceback" not in result.stderr
