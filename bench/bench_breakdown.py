"""Where an accepted callback's CPU goes: the receiver's layers, peeled off one at a time.

Run as ``python bench/bench_breakdown.py [--requests 4000] [--rounds 5]`` from the repository
root. No HTTP server and no load generator: each variant drives its ASGI app directly, with 64
concurrent requests in one event loop (uvloop), so what is measured is the app's own work, without
uvicorn's parsing and the socket calls that every variant would pay alike. Each variant runs in a
fresh process of its own and reports the best of ``--rounds`` rounds (the minimum is the figure
least disturbed by other load on the machine):

- ``bare``: bench/bare_app.py, the baseline (a) of bench_receiver.py;
- ``forged``: the receiver rejecting forged SenseTime callbacks (401), as (c);
- ``accepted, store stubbed``: signed callbacks verified and answered 200 by a store that keeps
  nothing, dispatch off: everything but the durable write;
- ``accepted, SQLite, dispatch off``: stored durably (WAL, synchronous=FULL, group commit);
- ``accepted, SQLite, dispatch on``: as in production and in (b): the in-process dispatcher
  delivers each event (no handlers) and writes its outcome.

The event-loop thread's CPU is the figure that bounds throughput under load (one thread runs every
request); the process figure adds the commit thread, which fsyncs in parallel. The receiver logs
one JSON line per accepted callback to a file, as in production. Compare the variants of one run
with each other, never with another run's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR))

from bench_receiver import (  # noqa: E402
    CALLBACK_PATH,
    CONFIG_TEMPLATE,
    HOST,
    PUBLIC_URL,
    ROUTE,
    body_template,
)

from callbacks.keyfile import KeyFile, write_key_file  # noqa: E402
from callbacks.store import Accepted, InboundCallback, Lease  # noqa: E402
from callbacks.store.sqlite import SQLiteStore  # noqa: E402
from verify.sensetime import generate_auth_key, sign  # noqa: E402

CONCURRENCY = 64
VARIANTS = {
    "bare": "bare Starlette: read body + json.loads, 200",
    "forged": "receiver: forged, rejected 401",
    "stubbed": "receiver: accepted, store stubbed, dispatch off",
    "sqlite": "receiver: accepted, SQLite, dispatch off",
    "dispatch": "receiver: accepted, SQLite, dispatch on (production)",
}


ASGIApp = Callable[..., Awaitable[None]]


class StubbedStore(SQLiteStore):
    """A SQLite store whose ``accept`` keeps nothing: the receiver's cost without the write."""

    async def accept(self, callback: InboundCallback, lease: Lease | None = None) -> Accepted:
        return Accepted(callback.delivery_id)


def build_app(variant: str, folder: Path) -> tuple[ASGIApp, Any]:
    """The app and the lifespan context to run it in."""
    if variant == "bare":
        import bare_app

        return bare_app.app, bare_app.app.router.lifespan_context(bare_app.app)
    from callbacks.app import create_app
    from callbacks.config import load_config
    from callbacks.logs import configure_logging

    config_path = folder / "callbacks.toml"
    # bench_receiver's config (the port is never opened here), with dispatch as the variant says.
    text = CONFIG_TEMPLATE.format(
        host=HOST,
        port=8000,
        route=ROUTE,
        path=CALLBACK_PATH,
        public_url=PUBLIC_URL,
        dispatch="true" if variant == "dispatch" else "false",
    )
    config_path.write_text(text, encoding="utf-8")
    config = load_config(str(config_path))
    configure_logging(config.server.log_format)
    store = StubbedStore(folder / "callbacks.db") if variant == "stubbed" else None
    app = create_app(config, store=store)
    return app, app.router.lifespan_context(app)


def request_scope(length: int) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": CALLBACK_PATH,
        "raw_path": CALLBACK_PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(length).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def drive(
    app: ASGIApp, template: str, tag: str, count: int, statuses: dict[int, int]
) -> None:
    """``count`` requests in ``CONCURRENCY`` concurrent sequences, each a new event."""

    async def one(n: int) -> None:
        body = template.replace("{{N}}", f"{tag}-{n:010d}").encode()
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(request_scope(len(body)), receive, send)

    async def sequence(first: int, n: int) -> None:
        for i in range(first, first + n):
            await one(i)

    per = count // CONCURRENCY
    await asyncio.gather(*(sequence(s * per, per) for s in range(CONCURRENCY)))


async def measure_variant(variant: str, requests: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as tmp:
        folder = Path(tmp)
        secret = generate_auth_key()
        write_key_file(
            folder / "keys.toml",
            KeyFile().add(ROUTE, secret, state="primary", now=datetime.now(UTC)),
        )
        timestamp = int(time.time())
        key = "Forged0Key" + secret[:8] if variant == "forged" else secret
        template = body_template(timestamp, sign(PUBLIC_URL, timestamp, key))
        app, lifespan = build_app(variant, folder)
        statuses: dict[int, int] = {}
        loop_us: list[float] = []
        process_us: list[float] = []
        async with lifespan:
            await drive(app, template, "warm", CONCURRENCY * 20, statuses)
            for r in range(rounds):
                await asyncio.sleep(0.2)  # let the dispatcher catch up between rounds
                thread0, process0 = time.thread_time(), time.process_time()
                await drive(app, template, f"r{r}", requests, statuses)
                loop_us.append((time.thread_time() - thread0) / requests * 1e6)
                process_us.append((time.process_time() - process0) / requests * 1e6)
    return {
        "variant": variant,
        "loop_us": min(loop_us),
        "process_us": min(process_us),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def run_child(variant: str, requests: int, rounds: int, log: Path) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--child", variant]
    argv += ["--requests", str(requests), "--rounds", str(rounds)]
    with log.open("wb") as out:  # the receiver's log lines, as a service would write them
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"variant {variant} failed ({proc.returncode}):\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stderr.strip().splitlines()[-1])
    return result


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    by = {r["variant"]: r for r in results}
    print(
        f"\n{args.requests} requests x {args.rounds} rounds per variant, {CONCURRENCY} concurrent, "
        "straight into the ASGI app (no sockets); best round; CPU microseconds per request\n"
    )
    print("| variant | loop thread µs/req | process µs/req | answers |")
    print("|---|--:|--:|---|")
    for name, text in VARIANTS.items():
        r = by[name]
        answers = ", ".join(f"{n} x {s}" for s, n in r["statuses"].items())
        print(f"| {text} | {r['loop_us']:.1f} | {r['process_us']:.1f} | {answers} |")
    steps = [
        ("verify + answer (forged - bare)", "forged", "bare"),
        ("accept path without the write (stubbed - forged)", "stubbed", "forged"),
        ("durable write (sqlite - stubbed)", "sqlite", "stubbed"),
        ("in-process dispatch (dispatch on - off)", "dispatch", "sqlite"),
    ]
    print("\nLoop-thread cost of each layer:")
    for text, high, low in steps:
        print(f"- {text}: {by[high]['loop_us'] - by[low]['loop_us']:+.1f} µs")
    print(f"\n- command: `python bench/bench_breakdown.py {' '.join(sys.argv[1:])}`".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant (best counts)")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        result = uvloop.run(measure_variant(args.child, args.requests, args.rounds))
        print(json.dumps(result), file=sys.stderr)
        return
    if args.requests < CONCURRENCY:
        parser.error(f"--requests must be at least {CONCURRENCY}")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-breakdown-logs-") as logs:
        for variant in VARIANTS:
            result = run_child(variant, args.requests, args.rounds, Path(logs) / f"{variant}.log")
            print(
                f"  {variant}: loop {result['loop_us']:.1f} µs/req, "
                f"process {result['process_us']:.1f} µs/req",
                flush=True,
            )
            results.append(result)
    report(results, args)


if __name__ == "__main__":
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    main()
