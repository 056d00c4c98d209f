"""The receiver mounted inside another Starlette application, as the README shows."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from callbacks import Handlers, SenseTimeCallback, create_app, parse_config
from callbacks.keyfile import KeyFile, write_key_file
from tests.support import Route, signed_request, wait_for

ROUTE = Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime")
KEY = "EmbedKey2026abcXYZ"


def test_mounted_receiver_runs_its_lifespan_and_delivers(tmp_path: Path) -> None:
    write_key_file(
        tmp_path / "keys.toml",
        KeyFile().add("st", KEY, state="primary", now=datetime.now(UTC)),
    )
    config = parse_config(
        {
            "store": {"url": "sqlite:///callbacks.db"},
            "dispatch": {"poll_interval": 0.05},
            "routes": [{**ROUTE.as_toml(), "path": "/callbacks/sensetime"}],
        },
        base_dir=tmp_path,
        source=str(tmp_path / "callbacks.toml"),
    )
    received: list[SenseTimeCallback] = []
    handlers = Handlers()
    handlers.on(SenseTimeCallback, received.append)
    receiver = create_app(config, handlers=handlers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with receiver.router.lifespan_context(receiver):
            yield

    app = Starlette(routes=[Mount("/hooks", app=receiver)], lifespan=lifespan)
    req = signed_request(ROUTE, KEY, {"taskId": 5, "status": "done"}, timestamp=int(time.time()))
    with TestClient(app) as client:
        response = client.post("/hooks/callbacks/sensetime", content=req.body)
        assert response.status_code == 200, response.text
        assert wait_for(lambda: len(received) == 1, timeout=5)
    assert received[0].task_id == "5"
    assert received[0].delivery_id == response.json()["delivery_id"]
    assert (tmp_path / "callbacks.db").exists()
