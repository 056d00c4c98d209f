"""Load test of the callback receiver on loopback, side by side with the apps it must beat (wrk).

Run as ``python bench/bench_receiver.py [--duration 10] [--connections 64] [--repeats 3]
[--workers 1,2] [--only a1,b1] [--flood 60] [--postgres URL] [--json OUT]`` from the repository
root, with the project installed (the receiver is started with the ``callbacks serve`` command
line). Needs ``wrk`` (``apt-get install wrk``).

Each scenario is a fresh server process on 127.0.0.1 (uvloop, httptools, no access log), measured
by ``wrk -t1 -cN --latency`` with bench/wrk_sensetime.lua, with 1 and with 2 uvicorn workers
(the digit in a scenario's name):

- (a) bench/bare_app.py: read the body, ``json.loads`` it, answer 200. The floor.
- (b) the receiver accepting correctly signed SenseTime callbacks: verify, store durably in
  SQLite (WAL, synchronous=FULL, group commit) and answer 200. Dispatch is on with no handlers,
  so the dispatcher settles each event (as ``unhandled``) in the background, as in production.
  Every request has a new taskId, so every one is a new event, not a duplicate. With 2 workers
  both processes share the one SQLite file, each group-committing on its own and taking turns at
  the write lock.
- (c) bench/naive_app.py, what a user would write instead: verify with ``verify``, then one
  INSERT + COMMIT per request into SQLite (WAL, synchronous=FULL), answer 200.
- (d) the receiver rejecting a forged flood (a well-formed signature made with a wrong key): 401
  after reading, parsing and checking the body.
- (s) the receiver with ``[dispatch] enabled = false`` beside a ``callbacks dispatch`` process on
  the same SQLite file: the accept loop only verifies and stores; the dispatcher process claims
  the events (its CPU is counted in the server's). The report gives s/a and s/b.
- (a1/1c), (b1/1c), (c1/1c): (a1), (b1), (c1) with one connection: the latency of a lone callback.

With a PostgreSQL server (``--postgres URL`` or CALLBACKS_BENCH_POSTGRES_URL), (p1) and (p2): the
receiver on PostgreSQL with 1 and 2 workers. Each such run gets a fresh schema ``bench_<random>``
(``callbacks db upgrade`` creates the tables), dropped afterwards.

All get byte-identical requests apart from the signature. The receiver logs one JSON line per
request, as in production, to a file. Scenarios are interleaved (a1, b1, c1, d1, a2, ...) so
machine noise hits them alike; the report gives each scenario's median over the repeats and the
ratios of the medians (b/a, b/c, c/a, d/a for each worker count). Each run also samples every
server process's RSS once a second; ``--flood S`` adds one forged flood of S seconds at the end
to show whether memory stays flat. Only ratios from one run mean anything: these machines swing
near 2x between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from callbacks.keyfile import KeyFile, write_key_file
from verify.sensetime import generate_auth_key, sign

BENCH_DIR = Path(__file__).resolve().parent
LUA_SCRIPT = BENCH_DIR / "wrk_sensetime.lua"
CALLBACK_PATH = "/callbacks/sensetime"
PUBLIC_URL = "https://bench.example.com/callbacks/sensetime"
ROUTE = "sensetime"
HOST = "127.0.0.1"
WARMUP_SECONDS = 2
SIGNATURE_MAX_AGE = 300  # the route's default max_age: a signed timestamp is good this long
TARGETS = {
    "b/a": 0.6,  # with equal worker counts
    "b/c": 2.0,
    "p99 b/c": 0.2,  # at most a fifth of the naive endpoint's p99
    "d/a": 0.9,
    "p99_b_ms": 30.0,
    "p50_b_1c_ms": 1.0,
    "rss_mb": 80.0,
}

POSTGRES_ENV = "CALLBACKS_BENCH_POSTGRES_URL"


@dataclass(frozen=True)
class Scenario:
    kind: str  # bare, receiver, naive, forged, postgres, split
    workers: int
    one_connection: bool = False
    # --variant NAME:KEY=VALUE: the receiver again with this environment, for A/B runs
    variant: str = ""
    env: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        what = {
            "bare": "bare Starlette: read body + json.loads, 200",
            "receiver": "receiver: signed callbacks, SQLite, stored durably, 200",
            "naive": "user-written: verify, INSERT + COMMIT per request (WAL, FULL), 200",
            "forged": "receiver: forged flood, rejected 401",
            "postgres": "receiver: signed callbacks, PostgreSQL, 200",
            "split": "receiver, dispatch off, + a `callbacks dispatch` process, SQLite, 200",
        }[self.kind]
        workers = f"{self.workers} worker{'s' if self.workers > 1 else ''}"
        conns = ", 1 connection" if self.one_connection else ""
        variant = f", variant {self.variant}: {' '.join(f'{k}={v}' for k, v in self.env)}"
        return f"{what} ({workers}{conns}{variant if self.variant else ''})"

    @property
    def stores(self) -> bool:
        return self.kind in ("receiver", "naive", "postgres", "split")

    @property
    def receives(self) -> bool:
        """The receiver serves this scenario (not a bench/ app)."""
        return self.kind in ("receiver", "forged", "postgres", "split")


LETTER = {"bare": "a", "receiver": "b", "naive": "c", "forged": "d", "postgres": "p", "split": "s"}


def scenario_table(
    workers: list[int], postgres: bool, variants: list[tuple[str, dict[str, str]]] | None = None
) -> dict[str, Scenario]:
    table: dict[str, Scenario] = {}
    for n in workers:
        for kind in ("bare", "receiver", "naive", "forged", "split"):
            table[f"{LETTER[kind]}{n}"] = Scenario(kind, n)
        if postgres:
            table[f"p{n}"] = Scenario("postgres", n)
    for kind in ("bare", "receiver", "naive"):
        table[f"{LETTER[kind]}1/1c"] = Scenario(kind, 1, one_connection=True)
    for name, env in variants or []:
        for key, spec in list(table.items()):
            if spec.receives and not spec.variant:
                pairs = tuple(sorted(env.items()))
                table[f"{key}@{name}"] = replace(spec, variant=name, env=pairs)
    return table


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, assignments = text.partition(":")
    env = dict(a.split("=", 1) for a in assignments.split(",") if "=" in a)
    if not name or not env:
        raise argparse.ArgumentTypeError("expected NAME:KEY=VALUE[,KEY=VALUE...]")
    return name, env


CONFIG_TEMPLATE = """\
# Written by bench/bench_receiver.py for one run.
[server]
host = "{host}"
port = {port}
workers = 1
log_format = "json"

[store]
url = "sqlite:///callbacks.db"

[keys]
file = "keys.toml"

[dispatch]
enabled = {dispatch}

[[routes]]
name = "{route}"
path = "{path}"
provider = "sensetime"
public_url = "{public_url}"
"""


@dataclass
class RunResult:
    scenario: str
    repeat: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    server_cpu_us_per_request: float
    machine_cpu_busy_pct: float
    loadavg_1m: float
    stored: dict[str, int] = field(default_factory=dict)
    log_lines: int | None = None
    workers: int = 1
    # CPU seconds of each server process during the measurement: the server first, then its
    # worker processes (several workers only).
    process_cpu_s: list[float] = field(default_factory=list)
    # The largest worker process's RSS (MB): its first sample of the measurement, its peak, its
    # last sample.
    rss_first_mb: float = 0.0
    rss_peak_mb: float = 0.0
    rss_last_mb: float = 0.0


# -- helpers ---------------------------------------------------------------------------------------


def die(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def uptime_line() -> str:
    try:
        proc = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
        return proc.stdout.strip()
    except OSError:
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (uvicorn's worker processes), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def server_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of the server process and of each of its children, by pid."""
    cpu = {pid: process_cpu_seconds(pid)}
    for child in child_pids(pid):
        with contextlib.suppress(OSError):  # gone meanwhile
            cpu[child] = process_cpu_seconds(child)
    return cpu


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user..steal; guest time is already counted in user
    return total - idle, total


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def body_template(timestamp: int, signature: str) -> str:
    """A ~500-byte SenseTime job-result callback; {{N}} in the taskId is filled in per request."""
    body = {
        "taskId": "bench-{{N}}",
        "status": 2,
        "type": "video",
        "progress": 100,
        "videoUrl": "https://softsugar-output.example.com/video/2025/11/23/"
        "5b7f0c2e9d4a4e41b1f7c3a2d8e6f901.mp4?Expires=1764000000&Signature=k3J9xQ2",
        "coverUrl": "https://softsugar-output.example.com/cover/2025/11/23/"
        "5b7f0c2e9d4a4e41b1f7c3a2d8e6f901.jpg",
        "duration": 15360,
        "errorCode": 0,
        "errorMsg": "",
        "userData": '{"order":"ORD-2025-118842","tenant":"acme","channel":"web","lang":"zh-CN"}',
        "timestamp": timestamp,
        "signature": signature,
    }
    return json.dumps(body, separators=(",", ":"))


# -- servers ---------------------------------------------------------------------------------------


class Server:
    """One server process for one measured run; stopped with SIGTERM (graceful), then SIGKILL."""

    def __init__(self, argv: list[str], log_path: Path, port: int, env: dict[str, str]) -> None:
        self.argv = argv
        self.log_path = log_path
        self.port = port
        self.log = log_path.open("wb")
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_healthy(self, timeout: float = 30.0, *, fatal: bool = True) -> bool:
        """Wait for ``/healthz``; if the server exits or never answers, stop with its output
        (or, with ``fatal=False``, return False: a scenario this build does not support)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if 200 <= http_request(self.port, "GET", "/healthz")[0] < 300:
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        tail = self.log_path.read_text(errors="replace")[-2000:]
        if not fatal:
            return False
        die(f"server did not become healthy: {shlex.join(self.argv)}\n--- its output ---\n{tail}")
        raise AssertionError  # unreachable

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def receiver_command() -> list[str]:
    script = Path(sys.executable).with_name("callbacks")
    if script.exists():
        return [str(script)]
    found = shutil.which("callbacks")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from callbacks.cli import main; sys.exit(main())"]


def start_uvicorn(
    run_dir: Path, module: str, workers: int, env: dict[str, str] | None = None
) -> Server:
    """``module``:app from bench/ under uvicorn (uvloop, httptools, no access log)."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        str(BENCH_DIR),
        f"{module}:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-server-header",
        "--log-level",
        "warning",
    ]
    return Server(argv, run_dir / "server.log", port, env if env is not None else dict(os.environ))


def start_bare(run_dir: Path, workers: int) -> Server:
    return start_uvicorn(run_dir, "bare_app", workers)


def start_naive(run_dir: Path, secret: str, workers: int) -> Server:
    """bench/naive_app.py with its own SQLite file and a 0600 key file in ``run_dir``."""
    key_file = run_dir / "naive.key"
    fd = os.open(key_file, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret)
    env = dict(os.environ)
    env |= {
        "BENCH_NAIVE_DB": str(run_dir / "naive.db"),
        "BENCH_NAIVE_KEY_FILE": str(key_file),
        "BENCH_NAIVE_URL": PUBLIC_URL,
    }
    return start_uvicorn(run_dir, "naive_app", workers, env)


def start_receiver(
    run_dir: Path,
    secret: str,
    workers: int = 1,
    store_url: str | None = None,
    extra_env: tuple[tuple[str, str], ...] = (),
    *,
    dispatch: bool = True,
) -> Server:
    """The receiver with a SQLite store in ``run_dir``, or the PostgreSQL store at ``store_url``
    (through CALLBACKS_STORE_URL, migrated first with ``callbacks db upgrade``)."""
    port = free_port()
    config = run_dir / "callbacks.toml"
    config.write_text(
        CONFIG_TEMPLATE.format(
            host=HOST,
            port=port,
            route=ROUTE,
            path=CALLBACK_PATH,
            public_url=PUBLIC_URL,
            dispatch="true" if dispatch else "false",
        ),
        encoding="utf-8",
    )
    keys = KeyFile().add(ROUTE, secret, state="primary", now=datetime.now(UTC))
    write_key_file(run_dir / "keys.toml", keys)
    # The server makes its own metrics folder for several workers: nothing inherited.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CALLBACKS_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(extra_env)
    if store_url is not None:
        env["CALLBACKS_STORE_URL"] = store_url
        upgrade = [*receiver_command(), "db", "upgrade", "--config", str(config)]
        proc = subprocess.run(upgrade, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            die(f"`{shlex.join(upgrade)}` failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    argv = [*receiver_command(), "serve", "--config", str(config), "--port", str(port)]
    argv += ["--workers", str(workers)]
    # stdout carries the receiver's per-request JSON log lines: to a file, as a service would.
    return Server(argv, run_dir / "receiver.log", port, env)


def start_dispatcher(run_dir: Path, timeout: float = 30.0) -> Server:
    """``callbacks dispatch`` on the config ``start_receiver`` wrote in ``run_dir`` (no port)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    argv = [*receiver_command(), "dispatch", "--config", str(run_dir / "callbacks.toml")]
    server = Server(argv, run_dir / "dispatcher.log", 0, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.proc.poll() is None:
        if b'"dispatcher_started"' in server.log_path.read_bytes():
            return server
        time.sleep(0.1)
    server.stop()
    tail = server.log_path.read_text(errors="replace")[-2000:]
    die(f"dispatcher did not start: {shlex.join(argv)}\n--- its output ---\n{tail}")
    raise AssertionError  # unreachable


# -- PostgreSQL ------------------------------------------------------------------------------------


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<the PostgreSQL URL>"


def check_postgres(url: str) -> str:
    """Fail now, with a clear message, unless the server answers and lets us create a schema.
    Returns a one-line description of the server for the report."""
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            commit = conn.execute("SHOW synchronous_commit").fetchone()
            info = conn.info
            where = f"{info.host}:{info.port}, database {info.dbname}"
        probe_schema = create_schema(url)
        drop_schema(url, probe_schema)
    except psycopg.Error as exc:
        die(
            f"PostgreSQL at {redact(url)} is not usable for the benchmark: "
            f"{type(exc).__name__}: {str(exc).strip()}\n"
            f"Give a reachable server with --postgres URL or {POSTGRES_ENV} (the user must be "
            "allowed to create schemas), or leave both unset to skip the PostgreSQL scenarios."
        )
    assert version is not None
    assert commit is not None
    return f"PostgreSQL {version[0]} at {where}, synchronous_commit={commit[0]}"


def create_schema(url: str) -> str:
    import psycopg
    from psycopg import sql

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return schema


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def schema_url(url: str, schema: str) -> str:
    """``url`` with its connections' search_path set to ``schema`` (as tests/conftest.py does)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def stored_events_postgres(url: str, schema: str, tag: str) -> dict[str, int]:
    """Events of the measured run (taskId carries its tag) in the schema, by status."""
    import psycopg
    from psycopg import sql

    query = sql.SQL(
        "SELECT status, COUNT(*) FROM {}.avatar_callbacks_events "
        "WHERE convert_from(body, 'UTF8') LIKE %s GROUP BY status"
    ).format(sql.Identifier(schema))
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(query, (f'%"taskId":"bench-{tag}-%',)).fetchall()
    return {str(status): int(n) for status, n in rows}


# -- load ------------------------------------------------------------------------------------------


def wrk_command(url: str, template: Path, tag: str, connections: int, duration: int) -> list[str]:
    return [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(template),
        tag,
    ]


def run_wrk(argv: list[str]) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        die(f"wrk failed ({proc.returncode}): {shlex.join(argv)}\n{proc.stdout}{proc.stderr}")
    for line in proc.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line.removeprefix("WRK_JSON ")), proc.stdout
    die(f"no WRK_JSON line in wrk's output:\n{proc.stdout}{proc.stderr}")
    raise AssertionError  # unreachable


def http_request(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def probe(port: int, template: str, expect: int) -> None:
    """One request before the load, so a misconfigured scenario fails loudly, not as a number."""
    body = template.replace("{{N}}", f"probe-{time.time_ns()}").encode()
    status, answer = http_request(port, "POST", CALLBACK_PATH, body)
    if status != expect:
        die(f"probe of {CALLBACK_PATH} answered {status} (expected {expect}): {answer[:200]!r}")


def stored_events(db: Path, tag: str, *, naive: bool = False) -> dict[str, int]:
    """Events of the measured run (taskId carries its tag) in the store, by status (the naive
    app's table has no status: its rows count as "stored")."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    like = f'%"taskId":"bench-{tag}-%'
    try:
        if naive:
            rows = conn.execute(
                "SELECT 'stored', COUNT(*) FROM callbacks WHERE task_id LIKE ?",
                (f"bench-{tag}-%",),
            ).fetchall()
        else:
            rows = conn.execute(
                "SELECT status, COUNT(*) FROM events WHERE CAST(body AS TEXT) LIKE ? "
                "GROUP BY status",
                (like,),
            ).fetchall()
    finally:
        conn.close()
    return dict(rows)


def rss_mb(pid: int) -> float:
    """Resident set size of one process from /proc, in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Samples the largest RSS among a server's processes once a second, in a thread."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        return max(rss_mb(p) for p in [self.pid, *child_pids(self.pid)])

    def _run(self) -> None:
        while True:
            self.samples.append(self.sample())
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.sample())


def run_once(
    key: str, spec: Scenario, repeat: int, args: argparse.Namespace, workdir: Path, secret: str
) -> RunResult | None:
    if spec.kind != "postgres":
        return measure(key, spec, repeat, args, workdir, secret, None)
    # A fresh schema per PostgreSQL run, dropped whatever happens (also on errors and Ctrl-C).
    schema = create_schema(args.postgres)
    try:
        return measure(key, spec, repeat, args, workdir, secret, schema)
    finally:
        drop_schema(args.postgres, schema)


def measure(
    key: str,
    spec: Scenario,
    repeat: int,
    args: argparse.Namespace,
    workdir: Path,
    secret: str,
    schema: str | None,
    duration: int | None = None,
) -> RunResult | None:
    """One measured run; None if the server refuses the scenario (e.g. a store that takes one
    worker process only)."""
    run_dir = workdir / f"r{repeat}-{key.replace('/', '-').replace('@', '-')}"
    run_dir.mkdir(parents=True)
    duration = duration or args.duration
    connections = 1 if spec.one_connection else args.connections
    # Signed now, per run: the timestamp must stay within the route's max_age for the whole run.
    timestamp = int(time.time())
    good = sign(PUBLIC_URL, timestamp, secret)
    forged = sign(PUBLIC_URL, timestamp, "Forged0Key" + secret[:8])
    template = body_template(timestamp, forged if spec.kind == "forged" else good)
    template_path = run_dir / "body.json"
    template_path.write_text(template, encoding="utf-8")

    if spec.kind == "bare":
        server = start_bare(run_dir, spec.workers)
    elif spec.kind == "naive":
        server = start_naive(run_dir, secret, spec.workers)
    else:
        store_url = None if schema is None else schema_url(args.postgres, schema)
        server = start_receiver(
            run_dir, secret, spec.workers, store_url, spec.env, dispatch=spec.kind != "split"
        )
    dispatcher: Server | None = None
    tag = f"m{repeat}{key.replace('/', '').replace('@', '')}"
    try:
        # a receiver that refuses a scenario (a release before several workers on one SQLite
        # file, run with --variant) is a skipped scenario, not an error
        if not server.wait_healthy(fatal=spec.kind in ("bare", "naive") or spec.workers == 1):
            return None
        if spec.kind == "split":
            dispatcher = start_dispatcher(run_dir)
        url = server.base_url + CALLBACK_PATH
        probe(server.port, template, 401 if spec.kind == "forged" else 200)
        warm = f"w{tag}"
        run_wrk(wrk_command(url, template_path, warm, connections, WARMUP_SECONDS))
        argv = wrk_command(url, template_path, tag, connections, duration)
        cpu_before = server_cpu_seconds(server.proc.pid)
        dispatcher_before = process_cpu_seconds(dispatcher.proc.pid) if dispatcher else 0.0
        busy_before, total_before = machine_cpu_ticks()
        with RssSampler(server.proc.pid) as rss:
            stats, text = run_wrk(argv)
        busy_after, total_after = machine_cpu_ticks()
        cpu_after = server_cpu_seconds(server.proc.pid)
        dispatcher_after = process_cpu_seconds(dispatcher.proc.pid) if dispatcher else 0.0
        loadavg = os.getloadavg()[0]
        (run_dir / "wrk.txt").write_text(shlex.join(argv) + "\n" + text, encoding="utf-8")
    finally:
        server.stop()
        if dispatcher is not None:
            dispatcher.stop()
    if time.time() - timestamp > SIGNATURE_MAX_AGE:
        print(f"WARNING: run {tag} outlived its signed timestamp: 401s expected", file=sys.stderr)

    # Processes seen at both ends (uvicorn's workers live for the whole run), server first. With
    # several workers the children also include multiprocessing helpers that use no CPU.
    process_cpu = [cpu_after[pid] - cpu_before[pid] for pid in cpu_after if pid in cpu_before]
    if spec.workers > 1:
        children = process_cpu[1:]
        busy = [c for c in children if c >= 0.1 * max(children, default=0.0) > 0]
        if len(busy) < spec.workers:
            print(
                f"WARNING: run {tag}: only {len(busy)} of {spec.workers} worker processes did "
                f"(a tenth of the busiest one's) work: {children}",
                file=sys.stderr,
            )
    if dispatcher is not None:  # counted with the server's: the work it took off the receiver
        process_cpu.append(dispatcher_after - dispatcher_before)
    requests = int(stats["requests"])
    elapsed = stats["duration_us"] / 1e6
    socket_errors = sum(
        int(stats[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    result = RunResult(
        scenario=key,
        repeat=repeat,
        requests=requests,
        duration_s=round(elapsed, 3),
        rps=requests / elapsed,
        p50_ms=stats["p50_us"] / 1000,
        p75_ms=stats["p75_us"] / 1000,
        p90_ms=stats["p90_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        max_ms=stats["max_us"] / 1000,
        non_2xx=int(stats["status_errors"]),
        socket_errors=socket_errors,
        server_cpu_us_per_request=sum(process_cpu) / max(requests, 1) * 1e6,
        machine_cpu_busy_pct=100 * (busy_after - busy_before) / max(total_after - total_before, 1),
        loadavg_1m=loadavg,
        workers=spec.workers,
        process_cpu_s=[round(c, 3) for c in process_cpu],
        rss_first_mb=round(rss.samples[0], 1),
        rss_peak_mb=round(max(rss.samples), 1),
        rss_last_mb=round(rss.samples[-1], 1),
    )
    if spec.receives:
        result.log_lines = count_lines(run_dir / "receiver.log")
    if spec.kind in ("receiver", "split"):
        result.stored = stored_events(run_dir / "callbacks.db", tag)
    elif spec.kind == "naive":
        result.stored = stored_events(run_dir / "naive.db", tag, naive=True)
    elif schema is not None:
        result.stored = stored_events_postgres(args.postgres, schema, tag)
    check(result, spec)
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def check(r: RunResult, spec: Scenario) -> None:
    """Warn when a run did not do what its scenario claims."""
    name = f"run {r.repeat + 1} ({r.scenario})"
    if r.socket_errors:
        print(f"WARNING: {name}: {r.socket_errors} socket errors/timeouts", file=sys.stderr)
    if spec.kind != "forged" and r.non_2xx:
        print(f"WARNING: {name}: {r.non_2xx} non-2xx answers (expected 0)", file=sys.stderr)
    if spec.kind == "forged" and r.non_2xx != r.requests:
        print(
            f"WARNING: {name}: only {r.non_2xx} of {r.requests} answers were non-2xx "
            "(expected all: forged requests must be rejected)",
            file=sys.stderr,
        )
    if spec.stores:
        ok = r.requests - r.non_2xx
        held = sum(r.stored.values())
        if held < ok:
            print(
                f"WARNING: {name}: the store holds {held} events of the run but wrk counted "
                f"{ok} 2xx answers: accepted callbacks are missing",
                file=sys.stderr,
            )
        if r.stored.get("duplicate"):
            print(f"WARNING: {name}: {r.stored['duplicate']} duplicates stored", file=sys.stderr)


# -- report ----------------------------------------------------------------------------------------


def fmt_int(n: float) -> str:
    return f"{n:,.0f}"


def summarize(results: list[RunResult], table: dict[str, Scenario]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for s in table:
        runs = [r for r in results if r.scenario == s]
        if not runs:
            continue
        summary[s] = {
            "rps": statistics.median(r.rps for r in runs),
            "p50_ms": statistics.median(r.p50_ms for r in runs),
            "p99_ms": statistics.median(r.p99_ms for r in runs),
            "cpu_us": statistics.median(r.server_cpu_us_per_request for r in runs),
            "rss_mb": max(r.rss_peak_mb for r in runs),
            "requests": sum(r.requests for r in runs),
            "non_2xx": sum(r.non_2xx for r in runs),
        }
    return summary


def durability_line(results: list[RunResult], scenario: str) -> str:
    runs = [r for r in results if r.scenario == scenario]
    held = sum(sum(r.stored.values()) for r in runs)
    # No handlers are configured: the dispatcher settles each event as unhandled.
    settled = sum(r.stored.get("delivered", 0) + r.stored.get("unhandled", 0) for r in runs)
    answered = sum(r.requests - r.non_2xx for r in runs)
    ok = "ok" if held >= answered else "**MISSING**"
    line = (
        f"- durability check ({scenario}): the stores held {fmt_int(held)} events of the measured "
        f"runs for {fmt_int(answered)} 2xx answers ({ok})"
    )
    if not scenario.startswith("c"):
        line += f"; {fmt_int(settled)} of them already settled by the dispatcher at shutdown"
    return line


def ratio_lines(
    summary: dict[str, dict[str, float]], workers: list[int], connections: int
) -> tuple[list[str], dict[str, float], dict[str, bool]]:
    lines: list[str] = []
    ratios: dict[str, float] = {}
    verdicts: dict[str, bool] = {}

    def verdict(key: str, value: float, met: bool, target: str) -> None:
        ratios[key] = value
        verdicts[key] = met
        lines.append(f"- {key} = {value:.2f} (target {target}): {'met' if met else '**MISSED**'}")

    for n in workers:
        a, b, c, d = (summary.get(f"{x}{n}") for x in "abcd")
        if a is None:
            continue
        if b is not None:
            verdict(f"b{n}/a{n}", b["rps"] / a["rps"], b["rps"] / a["rps"] >= 0.6, "≥ 0.6")
        else:
            lines.append(f"- b{n}/a{n}: (b{n}) not run (the receiver refused {n} workers)")
        if c is not None:
            ratios[f"c{n}/a{n}"] = c["rps"] / a["rps"]
            lines.append(f"- c{n}/a{n} = {c['rps'] / a['rps']:.2f} (no target)")
        if b is not None and c is not None:
            bc = b["rps"] / c["rps"]
            verdict(f"b{n}/c{n}", bc, bc >= TARGETS["b/c"], f"≥ {TARGETS['b/c']:.0f}")
            p99 = b["p99_ms"] / c["p99_ms"]
            verdict(f"p99 b{n}/c{n}", p99, p99 <= TARGETS["p99 b/c"], "≤ 0.2")
        split = summary.get(f"s{n}")
        if split is not None:
            ratios[f"s{n}/a{n}"] = split["rps"] / a["rps"]
            lines.append(
                f"- s{n}/a{n} = {split['rps'] / a['rps']:.2f} (dispatcher in its own process; "
                "no target of its own, b/a's is 0.6)"
            )
            if b is not None:
                ratios[f"s{n}/b{n}"] = split["rps"] / b["rps"]
                lines.append(
                    f"- s{n}/b{n} = {split['rps'] / b['rps']:.2f}, p99 {split['p99_ms']:.1f} "
                    f"vs {b['p99_ms']:.1f} ms, CPU {split['cpu_us']:.0f} vs {b['cpu_us']:.0f} "
                    "µs/req (the dispatcher process counted)"
                )
        if d is not None:
            da = d["rps"] / a["rps"]
            verdict(f"d{n}/a{n}", da, da >= TARGETS["d/a"], f"≥ {TARGETS['d/a']}")
        if b is not None:
            verdict(
                f"p99(b{n}) ms at {connections} connections",
                b["p99_ms"],
                b["p99_ms"] <= TARGETS["p99_b_ms"],
                f"≤ {TARGETS['p99_b_ms']:.0f}",
            )
            verdict(
                f"RSS per worker (b{n}) MB, peak",
                b["rss_mb"],
                b["rss_mb"] <= TARGETS["rss_mb"],
                f"≤ {TARGETS['rss_mb']:.0f}",
            )
    for key, m in summary.items():
        base = summary.get(key.partition("@")[0])
        if "@" in key and base is not None:
            ratios[f"{key} / base"] = m["rps"] / base["rps"]
            lines.append(
                f"- ({key}) against ({key.partition('@')[0]}): req/s ratio "
                f"{m['rps'] / base['rps']:.2f}, "
                f"p50 {m['p50_ms']:.2f} vs {base['p50_ms']:.2f} ms, "
                f"p99 {m['p99_ms']:.2f} vs {base['p99_ms']:.2f} ms, "
                f"CPU {m['cpu_us']:.0f} vs {base['cpu_us']:.0f} µs/req"
            )
    one = summary.get("b1/1c")
    if one is not None:
        verdict(
            "p50(b1/1c) ms, one connection",
            one["p50_ms"],
            one["p50_ms"] <= TARGETS["p50_b_1c_ms"],
            f"≤ {TARGETS['p50_b_1c_ms']:.0f}",
        )
    return lines, ratios, verdicts


def report(
    results: list[RunResult],
    flood: RunResult | None,
    table: dict[str, Scenario],
    args: argparse.Namespace,
    command: str,
    load: tuple[str, str],
    postgres: str | None,
    skipped: list[str],
) -> dict[str, Any]:
    summary = summarize(results, table)
    n = args.repeats
    head = (
        f"wrk {WRK_VERSION}, `-t1 -c{args.connections} -d{args.duration}s` (`-c1` for /1c), "
        f"{n} repeat(s) interleaved {','.join(summary)}; medians over the repeats. uvicorn with "
        "uvloop, httptools, no access log; the digit is the worker count (server CPU sums the "
        "parent and its workers). The receiver logs one JSON line per request to a file, as in "
        "production."
    )
    if postgres is not None:
        head += f" (p1), (p2): {postgres}, a fresh schema per run; its CPU is not counted."
    lines = [
        head,
        "",
        "| scenario | req/s | p50 ms | p99 ms | non-2xx / requests | server CPU µs/req "
        "| RSS MB (peak, largest process) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for s, m in summary.items():
        lines.append(
            f"| ({s}) {table[s].label} | {fmt_int(m['rps'])} | {m['p50_ms']:.2f} "
            f"| {m['p99_ms']:.2f} | {fmt_int(m['non_2xx'])} / {fmt_int(m['requests'])} "
            f"| {m['cpu_us']:.0f} | {m['rss_mb']:.0f} |"
        )
    lines.append("")
    for s in summary:
        if table[s].stores:
            lines.append(durability_line(results, s))
    ratio_text, ratios, verdicts = ratio_lines(summary, args.workers, args.connections)
    lines += ratio_text
    lines += [f"- ({s}) skipped: the server refused it" for s in skipped]
    if flood is not None:
        growth = flood.rss_last_mb - flood.rss_first_mb
        lines.append(
            f"- forged flood for {flood.duration_s:.0f} s (d1, {fmt_int(flood.rps)} req/s): RSS "
            f"{flood.rss_first_mb:.1f} MB at the start, {flood.rss_last_mb:.1f} MB at the end, "
            f"peak {flood.rss_peak_mb:.1f} MB (growth {growth:+.1f} MB)"
        )
        ratios["flood_rss_growth_mb"] = growth
    lines += [
        f"- load before: `{load[0]}`",
        f"- load after: `{load[1]}`",
        f"- command: `{command}`",
    ]
    result = "\n".join(lines)

    runs = [
        "| run | scenario | req/s | p50 ms | p99 ms | max ms | non-2xx | sock err | "
        "server CPU µs/req | machine CPU busy | load 1m | RSS MB first/peak/last | stored |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in [*results, *([flood] if flood else [])]:
        stored = ", ".join(f"{k} {v}" for k, v in sorted(r.stored.items())) or "-"
        runs.append(
            f"| {r.repeat + 1} | {r.scenario} | {fmt_int(r.rps)} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.max_ms:.1f} | {r.non_2xx} | {r.socket_errors} | "
            f"{r.server_cpu_us_per_request:.0f} | {r.machine_cpu_busy_pct:.0f}% | "
            f"{r.loadavg_1m:.2f} | {r.rss_first_mb:.0f}/{r.rss_peak_mb:.0f}/{r.rss_last_mb:.0f} "
            f"| {stored} |"
        )
    print("\n## Every run\n")
    print("\n".join(runs))
    print("\n## Result (paste into bench/README.md)\n")
    print(result)
    return {
        "command": command,
        "wrk": WRK_VERSION,
        "postgres": postgres,
        "connections": args.connections,
        "duration_s": args.duration,
        "repeats": args.repeats,
        "load_before": load[0],
        "load_after": load[1],
        "medians": summary,
        "ratios": ratios,
        "targets": TARGETS,
        "targets_met": verdicts,
        "runs": [asdict(r) for r in results],
        "flood": asdict(flood) if flood else None,
    }


# -- main ------------------------------------------------------------------------------------------

WRK_VERSION = "?"


def redact_arg(arg: str) -> str:
    """A command-line argument with any URL password hidden (also in ``--postgres=URL``)."""
    if arg.startswith("--") and "=" in arg:
        name, _, value = arg.partition("=")
        return f"{name}={redact(value)}"
    return redact(arg)


def main() -> int:
    global WRK_VERSION
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (-c)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario, interleaved")
    parser.add_argument(
        "--workers",
        type=lambda s: [int(n) for n in s.split(",")],
        default=[1, 2],
        help="worker counts to compare, comma-separated (default 1,2)",
    )
    parser.add_argument(
        "--only", type=lambda s: s.split(","), default=None, help="run only these scenarios"
    )
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE",
        help="also run each receiver scenario with this environment, as KEY@NAME (A/B runs; "
        "e.g. PYTHONPATH=<another checkout> runs that checkout's receiver side by side)",
    )
    parser.add_argument(
        "--flood", type=int, default=0, metavar="S", help="add one forged flood of S seconds"
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get(POSTGRES_ENV) or None,
        help=f"PostgreSQL server for scenarios (p1), (p2) (default: ${POSTGRES_ENV}); each "
        "run uses a fresh schema, dropped afterwards. Without one they are skipped.",
    )
    parser.add_argument("--json", metavar="OUT", help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the servers' logs and stores")
    args = parser.parse_args()
    if max(args.duration, args.flood) + WARMUP_SECONDS + 30 > SIGNATURE_MAX_AGE:
        parser.error(f"--duration must leave the run inside the {SIGNATURE_MAX_AGE} s window")

    if shutil.which("wrk") is None:
        die(
            "wrk is not installed. Install it with `apt-get install wrk` (Debian/Ubuntu) or "
            "`brew install wrk` (macOS), then run this again."
        )
    version = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    WRK_VERSION = (version.stdout + version.stderr).split()[1]
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        die("uvloop and httptools are needed (pip install 'uvicorn[standard]')")
    postgres = None
    if args.postgres:
        try:
            import psycopg  # noqa: F401
        except ImportError:
            die("--postgres needs psycopg (pip install -e '.[postgres]')")
        postgres = check_postgres(args.postgres)

    table = scenario_table(args.workers, postgres is not None, args.variant)
    if args.only:
        unknown = set(args.only) - {k.partition("@")[0] for k in table}
        if unknown:
            parser.error(f"unknown scenarios {sorted(unknown)}; known: {', '.join(table)}")
        # a variant runs with its base scenario
        table = {k: v for k, v in table.items() if k.partition("@")[0] in args.only}

    command = shlex.join([sys.executable, *(redact_arg(a) for a in sys.argv)])
    load_before = uptime_line()
    print(f"# bench_receiver: {os.cpu_count()} CPUs; {load_before}")
    print(f"# {shlex.join(['cd', os.getcwd()])} && {command}")
    if postgres is None:
        print(f"# note: no --postgres URL and {POSTGRES_ENV} unset: skipping (p1), (p2)")
    body = body_template(int(time.time()), "0" * 32).replace("{{N}}", "m0b-0-0000000001")
    print(f"# request body: {len(body)} bytes; wrk load generator, Lua script {LUA_SCRIPT.name}")

    secret = generate_auth_key()
    workdir = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    results: list[RunResult] = []
    skipped: list[str] = []
    flood = None
    try:
        for repeat in range(args.repeats):
            for key, spec in table.items():
                if key in skipped:
                    continue
                r = run_once(key, spec, repeat, args, workdir, secret)
                if r is None:
                    skipped.append(key)
                    print(f"  ({key}) skipped: the server refused it", flush=True)
                    continue
                results.append(r)
                print(
                    f"  run {repeat + 1}/{args.repeats} ({key}): {fmt_int(r.rps)} req/s, "
                    f"p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms, non-2xx {r.non_2xx}, "
                    f"RSS peak {r.rss_peak_mb:.0f} MB, load {r.loadavg_1m:.2f}",
                    flush=True,
                )
        if args.flood:
            flood = measure(
                "d1", Scenario("forged", 1), 0, args, workdir / "flood", secret, None, args.flood
            )
    finally:
        if args.keep:
            print(f"# kept the runs' logs, stores and wrk output in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    data = report(
        results, flood, table, args, command, (load_before, uptime_line()), postgres, skipped
    )
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
