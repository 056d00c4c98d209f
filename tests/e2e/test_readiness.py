"""``/readyz`` of a real server tells the orchestrator when callbacks would fail, and why: a route
no key verifies for, a key file that failed to reload (also counted in a metric). Writes failing
are in test_write_timeout.py, where a lock is held."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from callbacks.keyfile import KeyFile, write_key_file
from tests.support import (
    Route,
    ServerProcess,
    Setup,
    keys_for,
    sample_body,
    signed_request,
    wait_for,
)

pytestmark = pytest.mark.slow

ROUTES = [
    Route("st", "sensetime", "https://hooks.example.com/cb/st"),
    Route("ms-video", "metastudio", "https://hooks.example.com/cb/video", "video", "MSS_A"),
    Route("st-open", "sensetime", "https://hooks.example.com/cb/open", allow_unsigned=True),
]
KEYS = keys_for(ROUTES[:2])  # st-open takes unsigned callbacks: it needs none to be ready
RELOAD_FAILURES = "avatar_callbacks_key_reload_failures_total"


@pytest.fixture
def server(tmp_path: Any) -> Iterator[Setup]:
    setup = Setup(tmp_path, ROUTES, KEYS).write()
    process = ServerProcess(setup).start()  # starts once /readyz answers 200
    try:
        yield setup
    finally:
        process.stop()


def readiness(setup: Setup) -> httpx.Response:
    return httpx.get(f"{setup.base_url}/readyz", timeout=5)


def write_keys(setup: Setup, keys: dict[str, str]) -> None:
    keyfile = KeyFile()
    for route, secret in keys.items():
        keyfile = keyfile.add(route, secret, state="primary", now=datetime.now(UTC) - timedelta(1))
    write_key_file(setup.keys_path, keyfile)


def reload_failures(setup: Setup) -> float:
    text = httpx.get(f"{setup.base_url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(RELOAD_FAILURES + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_route_without_a_verifying_key_is_not_ready(server: Setup) -> None:
    write_keys(server, {"st": KEYS["st"]})  # the MetaStudio route's key was removed
    assert wait_for(lambda: readiness(server).status_code == 503)
    answer = readiness(server).json()
    assert answer == {
        "status": "unavailable",
        "reason": "no_verifying_key",
        "reasons": ["no_verifying_key"],
        "routes_without_keys": ["ms-video"],
    }
    route = server.route("ms-video")
    with httpx.Client(timeout=5) as client:
        callback = signed_request(route, KEYS["ms-video"], sample_body(route)).send(
            client, server.base_url
        )
    assert (callback.status_code, callback.json()["reason"]) == (503, "no_verifying_key")

    write_keys(server, KEYS)
    assert wait_for(lambda: readiness(server).status_code == 200)


def test_a_failed_key_reload_is_not_ready_and_counted(server: Setup) -> None:
    before = reload_failures(server)
    # Replaced whole, as an editor saving atomically would: a reload never sees a half-written file.
    broken = server.keys_path.with_name("keys.broken")
    broken.write_text('[[keys]]\nroute = "st"\nsecret = \n')  # not valid TOML
    broken.chmod(0o600)
    broken.replace(server.keys_path)
    assert wait_for(lambda: readiness(server).json().get("reasons") == ["keys_reload_failed"])
    answer = readiness(server)
    assert answer.status_code == 503
    for secret in KEYS.values():
        assert secret not in answer.text
    assert reload_failures(server) == before + 1
    # The old keys still verify meanwhile.
    route = server.route("st")
    with httpx.Client(timeout=5) as client:
        callback = signed_request(route, KEYS["st"], sample_body(route)).send(
            client, server.base_url
        )
    assert callback.status_code == 200

    write_keys(server, KEYS)  # fixed: ready again
    assert wait_for(lambda: readiness(server).status_code == 200)
