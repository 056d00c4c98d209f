"""A receiver process configured with one sink, and the callbacks sent to it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import tomllib
from pathlib import Path
from typing import Any

import httpx
import orjson
import tomli_w
from jsonschema import Draft202012Validator

from callbacks.keyfile import read_key_file, write_key_file
from callbacks.sinks.envelope import EventEnvelope, json_schema
from callbacks.sinks.secrets import with_sink_secrets
from tests.sinks.engines import Engine, HttpEngine
from tests.support import Route, Setup, keys_for, sample_body, signed_request

ROUTES = [
    Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime"),
    Route("ms", "metastudio", "https://hooks.example.com/callbacks/ms", "video", "MSS_A"),
]
KEYS = keys_for(ROUTES)
# Retries come quickly and never run out during a test's outage.
DISPATCH = {"backoff_max": 0.3, "max_attempts": 1000, "concurrency": 16}
VALIDATOR = Draft202012Validator(json_schema(), format_checker=Draft202012Validator.FORMAT_CHECKER)


def sink_setup(root: Path, engine: Engine, *, port: int | None = None, **dispatch: Any) -> Setup:
    """A config folder whose receiver sends every event to ``engine`` (via ``port`` if given)."""
    setup = Setup(root, ROUTES, KEYS, dispatch={**DISPATCH, **dispatch}).write()
    config = tomllib.loads(setup.config_path.read_text())
    config["sinks"] = [engine.sink_table(port)]
    setup.config_path.write_text(tomli_w.dumps(config))
    if isinstance(engine, HttpEngine):
        keys = read_key_file(setup.keys_path)
        write_key_file(setup.keys_path, with_sink_secrets(keys, "bus", [engine.secret]))
    return setup


def send(setup: Setup, count: int, first: int = 0) -> list[str]:
    """``count`` distinct signed callbacks, alternating routes; their delivery ids."""
    ids = []
    with httpx.Client(timeout=10) as client:
        for n in range(first, first + count):
            route = ROUTES[n % 2]
            response = signed_request(route, KEYS[route.name], sample_body(route, n)).send(
                client, setup.base_url
            )
            assert response.status_code == 200, response.text
            ids.append(response.json()["delivery_id"])
    return ids


def stream(setup: Setup, acknowledged: list[str], stop: threading.Event) -> None:
    """Callbacks from 8 connections until the server dies or ``stop`` is set."""

    async def sender(worker: int) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            n = worker * 1_000_000
            while not stop.is_set():
                route = ROUTES[n % 2]
                req = signed_request(route, KEYS[route.name], sample_body(route, n))
                n += 1
                url = f"{setup.base_url}{req.path}" + (f"?{req.query}" if req.query else "")
                try:
                    response = await client.post(url, content=req.body, headers=req.headers)
                except httpx.TransportError:
                    return  # the server is gone: what got no 200 was not acknowledged
                if response.status_code == 200:
                    acknowledged.append(response.json()["delivery_id"])

    async def main() -> None:
        await asyncio.gather(*(sender(w) for w in range(8)))

    asyncio.run(main())


def delivery_ids(messages: list[bytes]) -> list[str]:
    """Each message checked against the shipped schema and read back; its delivery id."""
    ids = []
    for message in messages:
        VALIDATOR.validate(orjson.loads(message))
        ids.append(EventEnvelope.decode(message).delivery_id)
    return ids


def sink_states(setup: Setup) -> dict[str, dict[str, Any]]:
    """Each stored event's delivery state for the sink ``bus`` (empty until attempted)."""
    with sqlite3.connect(setup.root / "callbacks.db") as conn:
        rows = conn.execute("SELECT id, handler_state FROM events").fetchall()
    return {i: orjson.loads(state).get("sink:bus", {}) for i, state in rows}


def handled(setup: Setup) -> set[str]:
    """Events the recording handler finished."""
    return {r["id"] for r in setup.delivered() if r["phase"] == "end"}
