"""All log output of a run full of signed, forged and malformed requests holds no key, no
signature, no token and no callback body, and still says what happened to every request."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import (
    ServerProcess,
    Setup,
    all_route_kinds,
    keys_for,
    sample_body,
    signed_request,
    wait_for,
)
from verify import key_id

pytestmark = pytest.mark.slow

ROUTES = all_route_kinds()
KEYS = keys_for(ROUTES)


def test_logs_never_contain_secrets_or_bodies(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS, dispatch={"max_attempts": 2}).write()
    # One route's handler fails, so handler failure lines are in the log too.
    server = ServerProcess(setup, env={"E2E_FAIL_ROUTE": "ms-card"}).start()
    secrets_seen: set[str] = set(KEYS.values())
    bodies: list[bytes] = []
    requests_sent = 0
    try:
        with httpx.Client(timeout=10) as client:
            for n, route in enumerate(ROUTES * 3):
                payload = {**sample_body(route, n), "note": f"private-content-{n}-zz"}
                req = signed_request(route, KEYS[route.name], payload)
                secrets_seen.update(_auth_values(req.query, req.headers, req.body))
                bodies.append(req.body)
                variants = [
                    (req.query, req.headers, req.body),  # good
                    (req.query.replace("a", "b"), req.headers, req.body),  # forged query
                    (req.query, req.headers, b'{"broken": '),  # malformed body
                    (req.query, req.headers, req.body[:-1] + b', "x": 1}'),  # altered body
                ]
                stale = signed_request(
                    route, KEYS[route.name], payload, timestamp=int(time.time()) - 900
                )
                variants.append((stale.query, stale.headers, stale.body))
                secrets_seen.update(_auth_values(stale.query, stale.headers, stale.body))
                for query, headers, body in variants:
                    url = f"{setup.base_url}{route.path}" + (f"?{query}" if query else "")
                    client.post(url, content=body, headers=headers)
                    requests_sent += 1
        assert wait_for(lambda: "event_dead" in server.output(), timeout=20)
    finally:
        server.stop()

    output = server.output()
    lines = [orjson.loads(line) for line in output.splitlines() if line.startswith("{")]
    request_lines = [line for line in lines if line.get("event") == "callback"]
    assert len(request_lines) == requests_sent
    for line in request_lines:
        assert {"route", "provider", "outcome", "reason", "status", "latency_ms"} <= set(line)
    assert any(line.get("event") == "handler_attempt" for line in lines)
    assert any(line.get("key_id") == key_id(KEYS["st"]) for line in request_lines)

    secrets_seen.discard("")
    for secret in secrets_seen:
        assert secret not in output, "a key, signature or token appears in the log"
    for n in range(len(ROUTES) * 3):
        assert f"private-content-{n}-zz" not in output, "callback body content appears in the log"
    for body in bodies:
        assert body.decode() not in output


def _auth_values(query: str, headers: dict[str, str], body: bytes) -> set[str]:
    values = set(headers.values())
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        if name in ("secret", "hwSecret", "token", "time_stamp", "hwTime"):
            if name in ("time_stamp", "hwTime"):
                continue  # a timestamp is not a secret
            values.add(value)
    if body.startswith(b"{"):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return values
        if isinstance(data, dict) and isinstance(data.get("signature"), str):
            values.add(data["signature"])
    return {v for v in values if len(v) >= 16}
