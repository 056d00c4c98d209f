"""Two replicas on one PostgreSQL database: each expected job polled by one, delivered once."""

from __future__ import annotations

import asyncio
import json
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import tomli_w

from callbacks.confirm.testing import FakeMetaStudio
from callbacks.store.postgres import PostgresStore
from tests.confirm.test_e2e_confirm import HANDLERS
from tests.support import Route, ServerProcess, Setup, keys_for, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

AK, SK = "REPLICA-AK", "REPLICA-SK-1234"
ROUTES = [Route("ms", "metastudio", "https://hooks.example.com/cb/ms", "video", "MSS_A")]
KEYS = keys_for(ROUTES)
JOBS = [f"job-{i}" for i in range(10)]


def test_two_replicas_poll_each_expected_job_once_and_deliver_it_once(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    async def upgrade() -> None:
        store = PostgresStore(postgres_schema_url)
        await store.upgrade()
        await store.close()

    asyncio.run(upgrade())
    events_file = tmp_path / "events.jsonl"
    with FakeMetaStudio(ak=AK, sk=SK) as api:
        for job in JOBS:
            api.set_job("video", job, state="PROCESSING")
        setups = []
        for i in (1, 2):
            setup = Setup(tmp_path / f"r{i}", ROUTES, KEYS, store_url=postgres_schema_url).write()
            (setup.root / "confirm_handlers.py").write_text(HANDLERS)
            config = tomllib.loads(setup.config_path.read_text())
            config["handlers"]["modules"] = ["confirm_handlers"]
            config["metastudio_api"] = {"endpoint": api.endpoint, "project_id": api.project_id}
            config["routes"][0]["reconcile_after"] = 0.2
            setup.config_path.write_text(tomli_w.dumps(config))
            setups.append(setup)
        env = {
            "E2E_EVENTS_FILE": str(events_file),
            "CALLBACKS_METASTUDIO_AK": AK,
            "CALLBACKS_METASTUDIO_SK": SK,
        }
        servers = [ServerProcess(s, env=env).start() for s in setups]
        try:
            from tests.confirm.test_e2e_confirm import cli

            for n, job in enumerate(JOBS):
                cli(setups[n % 2], "jobs", "expect", "ms", job, "--within", "1h")
            # Each replica polls: the jobs are still processing.
            assert wait_for(lambda: len(api.requests) >= 2 * len(JOBS), timeout=30)
            for job in JOBS:
                api.set_job("video", job, state="SUCCEED", asset_id=f"asset-{job}")

            def lines() -> list[dict[str, object]]:
                if not events_file.exists():
                    return []
                return [json.loads(x) for x in events_file.read_text().splitlines() if x]

            assert wait_for(lambda: len({d["job_id"] for d in lines()}) == len(JOBS), timeout=60)
            # A little longer: a second delivery would show up now.
            wait_for(lambda: False, timeout=1.0)
        finally:
            for server in servers:
                server.stop()
        per_job = Counter(str(d["job_id"]) for d in lines())
        assert per_job == Counter(dict.fromkeys(JOBS, 1))
        assert all(d["asset_id"] == f"asset-{d['job_id']}" for d in lines())
