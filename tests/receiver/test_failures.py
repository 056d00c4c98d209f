"""A bug of ours (an exception nothing expected) is a short JSON 500 and a sampled log line.

The fault is injected: a store whose write raises, and a metrics endpoint that raises, so the
test does not depend on finding an input that still reaches the 500 path (none should).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from callbacks import Handlers, create_app, parse_config
from callbacks.keyfile import KeyFile
from callbacks.store import open_store
from tests.support import Route, signed_request

ROUTE = Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime")
KEY = "FailKey2026abcXYZ"
INTERNALS = "RuntimeError at /srv/app/secret-internals.py"
REQUESTS = 60
BURST = 20  # the receiver's rejection sampler burst


class Boom(RuntimeError):
    pass


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    config = parse_config(
        {"store": {"url": "sqlite:///callbacks.db"}, "routes": [ROUTE.as_toml()]},
        base_dir=tmp_path,
        source=str(tmp_path / "callbacks.toml"),
    )
    store = open_store(config.store.url, base_dir=tmp_path)

    async def failing_accept(*args: Any, **kwargs: Any) -> Any:
        raise Boom(INTERNALS)

    monkeypatch.setattr(store, "accept", failing_accept)
    keys = KeyFile().add("st", KEY, state="primary", now=datetime.now(UTC))
    app = create_app(config, handlers=Handlers(), store=store, keys=keys, dispatch=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _post(client: TestClient, n: int) -> Any:
    req = signed_request(ROUTE, KEY, {"taskId": n, "status": 2}, timestamp=int(time.time()))
    return client.post(ROUTE.path, content=req.body)


def _failure_lines(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e.get("log_level") == "error" and "exc_info" in e]


def test_an_unexpected_exception_is_a_short_json_500(client: TestClient) -> None:
    response = _post(client, 1)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"ok": False, "reason": "internal_error"}


def test_failures_are_logged_sampled_not_once_per_request(client: TestClient) -> None:
    with capture_logs() as logs:
        for n in range(REQUESTS):
            assert _post(client, n).status_code == 500
    failures = _failure_lines(logs)
    assert 1 <= len(failures) <= 2 * BURST  # at most two seconds' bursts
    assert len(failures) < REQUESTS
    assert all(f["event"] == "callback_failed" and f["route"] == "st" for f in failures)
    assert all(isinstance(f["exc_info"], Boom) for f in failures)


def test_a_bug_outside_the_callback_routes_is_a_short_json_500(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_render() -> Any:
        raise Boom(INTERNALS)

    monkeypatch.setattr("callbacks.metrics.render", broken_render)
    with capture_logs() as logs:
        answers = [client.get("/metrics") for _ in range(REQUESTS)]
    for response in answers:
        assert response.status_code == 500
        assert response.json() == {"ok": False, "reason": "internal_error"}
        assert INTERNALS not in response.text
    failures = _failure_lines(logs)
    assert 1 <= len(failures) <= 2 * BURST
    assert all(f["event"] == "request_failed" and f["path"] == "/metrics" for f in failures)
