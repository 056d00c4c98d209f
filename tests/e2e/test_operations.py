"""Health, readiness and metrics: what operators and orchestrators look at."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from callbacks import Handlers, create_app, parse_config
from callbacks.errors import StoreUnavailable
from callbacks.handlers import handler_name
from callbacks.keyfile import KeyFile
from tests.support import Route, sample_body, signed_request, wait_for
from verify import key_id

ST = Route("ops-st", "sensetime", "https://hooks.example.com/ops/st")
MS = Route("ops-ms", "metastudio", "https://hooks.example.com/ops/ms", "video", "MSS_A")
KEYS = {"ops-st": "OpsKey2026abcXYZ", "ops-ms": "ops-metastudio-key"}


def fail_on_metastudio(event: object) -> None:
    if getattr(event, "route", None) == "ops-ms":
        raise RuntimeError("boom")


# The metrics registry is per process: other tests' handlers have samples too.
HANDLER = handler_name(fail_on_metastudio)


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = parse_config(
        {
            "store": {"url": "sqlite:///callbacks.db"},
            "dispatch": {"poll_interval": 0.05, "max_attempts": 1},
            "routes": [ST.as_toml(), MS.as_toml()],
        },
        base_dir=tmp_path,
        source=str(tmp_path / "callbacks.toml"),
    )
    keys = KeyFile()
    for name, secret in KEYS.items():
        keys = keys.add(name, secret, state="primary", now=datetime.now(UTC))
    handlers = Handlers()
    handlers.on_any(fail_on_metastudio)
    with TestClient(create_app(config, handlers=handlers, keys=keys)) as c:
        yield c


def test_healthz_and_readyz_need_no_auth_and_leak_nothing(client: TestClient) -> None:
    for path, body in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
        response = client.get(path)
        assert response.status_code == 200
        assert response.json() == body
        for secret in KEYS.values():
            assert secret not in response.text


def test_readyz_is_503_when_the_store_is_down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app.state.receiver.intake.store  # type: ignore[attr-defined]

    async def down() -> None:
        raise StoreUnavailable("disk gone")

    monkeypatch.setattr(store, "ping", down)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "reason": "store_unavailable",
        "reasons": ["store_unavailable"],
    }
    assert client.get("/healthz").status_code == 200


def test_store_down_answers_503_so_the_platform_retries(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = client.app.state.receiver.intake.store  # type: ignore[attr-defined]

    async def down(callback: object, lease: object = None) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(store, "accept", down)
    req = signed_request(ST, KEYS["ops-st"], sample_body(ST, 1))
    response = req.send(client, "")
    assert response.status_code == 503
    assert response.json() == {"ok": False, "reason": "store_unavailable"}


def test_metrics_cover_requests_keys_skew_latency_handlers(client: TestClient) -> None:
    before = client.get("/metrics").text
    ok = signed_request(ST, KEYS["ops-st"], sample_body(ST, 2), timestamp=int(time.time()) - 7)
    assert ok.send(client, "").status_code == 200
    bad = signed_request(ST, "WrongKey2026abcXYZ", sample_body(ST, 3))
    assert bad.send(client, "").status_code == 401
    failing = signed_request(MS, KEYS["ops-ms"], sample_body(MS, 4))
    assert failing.send(client, "").status_code == 200

    def handler_failed() -> bool:
        text = client.get("/metrics").text
        return _metric(
            text, "avatar_callbacks_handler_attempts_total", handler=HANDLER, outcome="dead"
        ) > _metric(
            before, "avatar_callbacks_handler_attempts_total", handler=HANDLER, outcome="dead"
        )

    assert wait_for(handler_failed, timeout=20)
    text = client.get("/metrics").text

    def grew(name: str, **labels: str) -> bool:
        return _metric(text, name, **labels) > _metric(before, name, **labels)

    assert grew("avatar_callbacks_requests_total", route="ops-st", outcome="accepted")
    assert grew(
        "avatar_callbacks_requests_total",
        route="ops-st",
        outcome="rejected",
        reason="signature_mismatch",
    )
    assert grew("avatar_callbacks_verified_total", route="ops-st", key_id=key_id(KEYS["ops-st"]))
    assert grew("avatar_callbacks_clock_skew_seconds_count", route="ops-st")
    assert grew("avatar_callbacks_clock_skew_seconds_bucket", route="ops-st", le="10.0")
    assert grew("avatar_callbacks_request_seconds_count", route="ops-st")
    assert grew("avatar_callbacks_store_write_seconds_count")
    assert grew("avatar_callbacks_handler_attempts_total", handler=HANDLER, outcome="ok")
    assert grew("avatar_callbacks_dispatch_lag_seconds_count")
    assert re.search(r"^avatar_callbacks_inbox_depth \d", text, re.MULTILINE)
    for secret in KEYS.values():
        assert secret not in text
