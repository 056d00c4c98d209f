"""Scenario (c) of ``bench/bench_receiver.py``: what a user would write instead of the receiver.

A Starlette endpoint that reads the body, verifies the SenseTime signature with ``verify`` and
commits each callback to SQLite itself: one ``INSERT`` and one ``COMMIT`` per request, WAL,
``synchronous=FULL`` (the same durability as the receiver: the 200 goes out after the fsync).
The SQLite calls run on the event loop, as in the straightforward ``async def`` endpoint; with
several workers each process has its own connection and they share the file's write lock
(``busy_timeout`` makes a writer wait for it instead of failing).

Configured by the environment (the benchmark sets it for each run):
``BENCH_NAIVE_DB`` (the database file), ``BENCH_NAIVE_KEY_FILE`` (a file holding the auth key),
``BENCH_NAIVE_URL`` (the callback URL the signature covers).

Run by the benchmark as ``uvicorn --app-dir bench naive_app:app``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from verify import VerificationError, verify_sensetime_callback

CALLBACK_PATH = "/callbacks/sensetime"
_OK = b'{"ok":true}'

SCHEMA = """
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    received_at REAL NOT NULL
)
"""


class Settings:
    def __init__(self) -> None:
        self.url = os.environ["BENCH_NAIVE_URL"]
        self.key = Path(os.environ["BENCH_NAIVE_KEY_FILE"]).read_text(encoding="utf-8").strip()
        self.conn = sqlite3.connect(os.environ["BENCH_NAIVE_DB"], isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("PRAGMA busy_timeout = 5000")
        self.conn.execute(SCHEMA)


SETTINGS: Settings | None = None


async def callback(request: Request) -> Response:
    assert SETTINGS is not None
    body = await request.body()
    try:
        payload = orjson.loads(body)
        verify_sensetime_callback(SETTINGS.url, payload, SETTINGS.key)
    except (orjson.JSONDecodeError, VerificationError):
        return Response(b'{"ok":false}', status_code=401, media_type="application/json")
    conn = SETTINGS.conn
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT OR IGNORE INTO callbacks (task_id, body, received_at) VALUES (?, ?, ?)",
        (str(payload.get("taskId")), body, time.time()),
    )
    conn.execute("COMMIT")
    return Response(_OK, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global SETTINGS
    SETTINGS = Settings()
    try:
        yield
    finally:
        SETTINGS.conn.close()


app = Starlette(
    routes=[
        Route(CALLBACK_PATH, callback, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ],
    lifespan=lifespan,
)
