"""The HTTP protocol implementations side by side: memory under partial headers, an oversized
header, and requests per second (why callbacks/http_guard.py bounds httptools rather than
switching to h11).

For each of uvicorn's httptools protocol, its h11 protocol with ``h11_max_incomplete_event_size``
at the receiver's header limit, and the receiver's GuardedHttpToolsProtocol, one uvicorn process
serves the receiver (SQLite, one route) on loopback and this script measures:

- RSS growth of the server while 20 connections each send a 4 MiB partial header (/proc);
- the answer to one request with an 8 MiB header;
- ``wrk -t1 -c64`` requests per second on ``GET /healthz`` (the protocol's own cost dominates),
  interleaved over the repeats, as a ratio to stock httptools.

Needs wrk (``apt-get install wrk``). Run: ``python bench/bench_edges.py [--duration 5 --repeats 2]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from callbacks.config import ServerConfig  # noqa: E402
from tests.support import Route, Setup, free_port  # noqa: E402

HEADER_LIMIT = ServerConfig().max_header_bytes
PROTOCOLS = {
    "httptools": ["--http", "httptools"],
    "h11 (max incomplete event = header limit)": [
        "--http",
        "h11",
        "--h11-max-incomplete-event-size",
        str(HEADER_LIMIT),
    ],
    "guarded httptools": ["--http", "callbacks.http_guard:GuardedHttpToolsProtocol"],
}
PARTIAL_CONNECTIONS = 20
PARTIAL_SIZE = 4 << 20


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match
    return int(match.group(1))


def start(setup: Setup, args: list[str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, CALLBACKS_CONFIG=str(setup.config_path), PYTHONPATH=str(setup.root))
    env["E2E_EVENTS_FILE"] = str(setup.events_path)
    factory = "callbacks.server:app_from_environment"
    command = [sys.executable, "-m", "uvicorn", "--factory", factory]
    proc = subprocess.Popen(
        [*command, "--port", str(setup.port), "--no-access-log", "--log-level", "warning", *args],
        env=env,
        cwd=setup.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{setup.base_url}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def partial_headers_growth(setup: Setup, pid: int) -> float:
    before = rss_kib(pid)
    sockets = []
    chunk = b"a" * (256 << 10)
    for _ in range(PARTIAL_CONNECTIONS):
        s = socket.create_connection(("127.0.0.1", setup.port))
        s.settimeout(5)
        sockets.append(s)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: ")
            for _ in range(PARTIAL_SIZE // len(chunk)):
                s.sendall(chunk)
        except OSError:
            pass  # refused part-way: what a bounded server does
    time.sleep(1.0)
    after = rss_kib(pid)
    for s in sockets:
        s.close()
    return (after - before) / 1024


def huge_header_answer(setup: Setup) -> str:
    with socket.create_connection(("127.0.0.1", setup.port)) as s:
        s.settimeout(10)
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * (8 << 20) + b"\r\n\r\n"
        with contextlib.suppress(OSError):
            s.sendall(head)
        try:
            answer = s.recv(200)
        except OSError as exc:
            return f"connection error ({type(exc).__name__})"
    return answer.split(b"\r\n", 1)[0].decode() or "closed, no answer"


def wrk_rps(setup: Setup, duration: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c64", f"-d{duration}s", f"{setup.base_url}/healthz"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        route = Route("st", "sensetime", "https://hooks.example.com/st")
        setup = Setup(Path(folder), [route], {"st": "BenchKey2026abcXYZ"}).write()
        memory: dict[str, float] = {}
        huge: dict[str, str] = {}
        rps: dict[str, list[float]] = {name: [] for name in PROTOCOLS}
        for repeat in range(args.repeats):
            for name, extra in PROTOCOLS.items():
                setup.port = free_port()
                setup.write()
                proc = start(setup, extra)
                try:
                    if repeat == 0:
                        memory[name] = partial_headers_growth(setup, proc.pid)
                        huge[name] = huge_header_answer(setup)
                    rps[name].append(wrk_rps(setup, args.duration))
                finally:
                    proc.terminate()
                    proc.wait(30)
    base = statistics.median(rps["httptools"])
    print(f"# header limit {HEADER_LIMIT} bytes; wrk -t1 -c64 -d{args.duration}s x{args.repeats}")
    print("| protocol | RSS growth, 20 x 4 MiB partial headers | 8 MiB header | req/s | ratio |")
    print("|---|--:|---|--:|--:|")
    for name in PROTOCOLS:
        median = statistics.median(rps[name])
        ratio = median / base
        print(f"| {name} | {memory[name]:.1f} MB | {huge[name]} | {median:,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
