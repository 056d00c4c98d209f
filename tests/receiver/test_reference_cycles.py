"""No answer leaves a reference cycle behind: a flood of any kind is freed as it goes.

An exception kept past its ``except`` block (in a local, say) holds its traceback, which holds
the frame that keeps it: a cycle that only the garbage collector frees, with the request, its
body and every frame in between. One per rejected request made a forged flood run the collector
every ~40 requests (5-7 µs a request). Here every answer is counted, with the collector off, as
the objects a collection would find afterwards: none.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from callbacks import Handlers, create_app, parse_config
from callbacks.config import DEFAULT_BODY_LIMIT
from callbacks.keyfile import KeyFile
from tests.support import Route, all_route_kinds, keys_for, sample_body, signed_request

ROUTES = all_route_kinds()
KEYS = keys_for(ROUTES)
REQUESTS = 60


def _scope(method: str, path: str, query: str, headers: dict[str, str], length: int) -> Any:
    raw_headers = [(b"host", b"hooks.example.com"), (b"content-length", str(length).encode())]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def _request(app: Starlette, scope: Any, body: bytes) -> int:
    statuses: list[int] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


def _requests(route: Route, kind: str, n: int) -> tuple[Any, bytes]:
    """The ``n``-th request of ``kind`` for ``route``: a distinct event each time."""
    key = KEYS[route.name] if kind != "forged" else "Forged7" + KEYS[route.name][7:]
    signed = signed_request(route, key, sample_body(route, n), timestamp=int(time.time()))
    body = signed.body
    method, path = "POST", route.path
    if kind == "malformed":
        body = b'{"truncated": '
    elif kind == "too_large":
        body = b" " * (DEFAULT_BODY_LIMIT + 1)
    elif kind == "unknown_path":
        path = route.path + "/other"
    elif kind == "wrong_method":
        method = "PUT"
    return _scope(method, path, signed.query, signed.headers, len(body)), body


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    config = parse_config(
        {"store": {"url": "sqlite:///callbacks.db"}, "routes": [r.as_toml() for r in ROUTES]},
        base_dir=tmp_path,
        source=str(tmp_path / "callbacks.toml"),
    )
    keys = KeyFile()
    for route in ROUTES:
        keys = keys.add(route.name, KEYS[route.name], state="primary", now=datetime.now(UTC))
    return create_app(config, handlers=Handlers(), keys=keys)


def _garbage_after(app: Starlette, route: Route, kind: str) -> tuple[int, set[int]]:
    """Objects a collection finds after ``REQUESTS`` answers, and the statuses they got."""

    async def run() -> tuple[int, set[int]]:
        statuses: set[int] = set()
        async with app.router.lifespan_context(app):
            for n in range(5):  # caches, lazily built objects, the sampler's first state
                await _request(app, *_requests(route, kind, n))
            await asyncio.sleep(0.2)  # the dispatcher settles the warm-up's events
            gc.collect()
            gc.disable()
            try:
                for n in range(5, 5 + REQUESTS):
                    statuses.add(await _request(app, *_requests(route, kind, n)))
                found = gc.collect()
            finally:
                gc.enable()
        return found, statuses

    return asyncio.run(run())


EXPECTED = {
    "accepted": 200,
    "forged": 401,
    "malformed": 400,
    "too_large": 413,
    "unknown_path": 404,
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_an_answer_leaves_nothing_for_the_collector(
    app: Starlette, route: Route, kind: str
) -> None:
    found, statuses = _garbage_after(app, route, kind)
    assert statuses == {EXPECTED[kind]}
    assert found == 0, f"{found} objects in reference cycles after {REQUESTS} {kind} requests"


def test_a_wrong_method_leaves_nothing_for_the_collector(app: Starlette) -> None:
    found, statuses = _garbage_after(app, ROUTES[0], "wrong_method")
    assert statuses == {405}
    assert found == 0, f"{found} objects in reference cycles after {REQUESTS} answers"
