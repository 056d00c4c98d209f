"""Scenario (a) of ``bench/bench_receiver.py``: the floor our receiver is compared against.

A bare Starlette app that does what any JSON webhook endpoint must: read the body, parse it with
the standard library's ``json`` (the baseline in shared/spec/performance.md; ``orjson.loads`` is
about 3x faster on a 500-byte body, and the receiver itself uses orjson) and answer 200. No
authentication, no storage, no logging. It listens on the receiver's callback path so both get
byte-identical requests.

Run by the benchmark as ``uvicorn --app-dir bench bare_app:app``.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CALLBACK_PATH = "/callbacks/sensetime"
_OK = b'{"ok":true}'


async def callback(request: Request) -> Response:
    body = await request.body()
    json.loads(body)
    return Response(_OK, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route(CALLBACK_PATH, callback, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
)
