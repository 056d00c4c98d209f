"""The console with several workers on PostgreSQL: one listener (in the supervisor), whose
numbers are every worker's, and whose replays any worker delivers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from callbacks.store.postgres import PostgresStore
from tests.admin.console_support import start_console
from tests.support import sample_body, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _upgrade(url: str) -> None:
    async def main() -> None:
        store = PostgresStore(url)
        await store.upgrade()
        await store.close()

    asyncio.run(main())


def test_one_console_for_two_workers(tmp_path: Path, postgres_schema_url: str) -> None:
    _upgrade(postgres_schema_url)
    console = start_console(tmp_path, store_url=postgres_schema_url, env={"CALLBACKS_WORKERS": "2"})
    try:
        route = console.setup.route("ms-video")
        sent = [console.send("ms-video", sample_body(route, n)) for n in range(40)]
        with console.api() as client:

            def counted() -> bool:
                numbers = client.get("/api/metrics").json()
                return bool(numbers["callbacks"].get("ms-video", {}).get("accepted") == 40)

            assert wait_for(counted, timeout=15)
            page = client.get("/api/events", params={"route": "ms-video", "limit": "500"})
            assert {e["id"] for e in page.json()["events"]} == set(sent)
            console.fail_flag.write_text("fail")
            dead = console.send("st", {"taskId": 31, "status": 2, "userData": "fail"})
            assert console.wait_status(dead, "dead")
            console.fail_flag.unlink()
            assert client.post(f"/api/events/{dead}/replay").json()["requeued"] == 1
        assert console.wait_status(dead, "delivered")
        # The workers serve the callbacks; the console is not among their routes.
        assert httpx.get(f"{console.setup.base_url}/api/health").status_code == 404
    finally:
        console.stop()
