"""Test support: a real receiver process on loopback, and requests signed the platforms' way."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import tomli_w
from click.testing import CliRunner, Result

from callbacks import testing
from callbacks.cli import main
from callbacks.config import RouteConfig, parse_config
from callbacks.keyfile import KeyFile, write_key_file
from callbacks.testing import SignedCallback

REPO = Path(__file__).resolve().parent.parent

# Handlers module the server processes load: appends one JSON line per handler start and end,
# fsync'd, so a test can see exactly what was delivered even across a SIGKILL.
RECORDING_HANDLERS = """
import os, json, time
from callbacks import Handlers

handlers = Handlers()
_PATH = os.environ["E2E_EVENTS_FILE"]
_DELAY = float(os.environ.get("E2E_HANDLER_DELAY", "0"))
_FAIL = os.environ.get("E2E_FAIL_ROUTE")

def _write(record):
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(record) + "\\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)

@handlers.on_any
def record(event):
    _write({"phase": "start", "id": event.delivery_id, "type": event.event_type,
            "route": event.route, "key_id": event.key_id, "pid": os.getpid()})
    if _DELAY:
        time.sleep(_DELAY)
    if _FAIL and event.route == _FAIL:
        raise RuntimeError("handler configured to fail")
    _write({"phase": "end", "id": event.delivery_id, "pid": os.getpid()})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Route:
    name: str
    provider: str
    public_url: str
    kind: str | None = None
    auth: str | None = None
    allow_unsigned: bool = False

    @property
    def path(self) -> str:
        return f"/cb/{self.name}"

    @property
    def config(self) -> RouteConfig:
        """The route as ``load_config`` reads it from :meth:`as_toml`."""
        return parse_route(self.as_toml())

    def as_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "provider": self.provider,
            "public_url": self.public_url,
        }
        if self.kind:
            out["kind"] = self.kind
        if self.auth:
            out["auth"] = self.auth
        if self.allow_unsigned:
            out["allow_unsigned"] = True
        return out


def write_config(
    root: Path,
    routes: Sequence[Route],
    *,
    port: int | None = None,
    keys: Mapping[str, Any] | None = None,
    handlers: Sequence[str] = (),
    store_url: str = "sqlite:///callbacks.db",
) -> Path:
    """``root/callbacks.toml`` for ``routes``: a SQLite store and ``keys.toml`` beside it.

    ``keys`` adds ``[keys]`` settings; ``port`` sets ``[server] port``; ``handlers`` names the
    handler modules.
    """
    root.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "store": {"url": store_url},
        "keys": {"file": "keys.toml", **(keys or {})},
        "routes": [r.as_toml() for r in routes],
    }
    if port is not None:
        config["server"] = {"port": port}
    if handlers:
        config["handlers"] = {"modules": list(handlers)}
    path = root / "callbacks.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


@dataclass
class Cli:
    """The ``callbacks`` command, in this process, for one config file."""

    config: Path

    def run(self, *args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, [*args, "--config", str(self.config)], input=input)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self.run(*args, input=input)
        assert result.exit_code == 0, result.output
        return result

    def json(self, *args: str) -> Any:
        return orjson.loads(self.ok(*args, "--json").stdout)


@dataclass
class Setup:
    """A config folder: callbacks.toml, keys.toml, the handlers module and the events file."""

    root: Path
    routes: list[Route]
    keys: dict[str, str]
    port: int = field(default_factory=free_port)
    store_url: str | None = None
    dispatch: dict[str, Any] = field(default_factory=dict)
    extra_keys: KeyFile = field(default_factory=KeyFile)
    server: dict[str, Any] = field(default_factory=dict)  # more [server] settings

    @property
    def config_path(self) -> Path:
        return self.root / "callbacks.toml"

    @property
    def keys_path(self) -> Path:
        return self.root / "keys.toml"

    @property
    def events_path(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, name: str) -> Route:
        return next(r for r in self.routes if r.name == name)

    def write(self) -> Setup:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "e2e_handlers.py").write_text(RECORDING_HANDLERS)
        config = {
            "server": {
                "host": "127.0.0.1",
                "port": self.port,
                "log_format": "json",
                **self.server,
            },
            "store": {"url": self.store_url or "sqlite:///callbacks.db"},
            "keys": {"file": "keys.toml", "reload_interval": 0.2},
            "dispatch": {"poll_interval": 0.1, "backoff_initial": 0.05, **self.dispatch},
            "handlers": {"modules": ["e2e_handlers"]},
            "routes": [r.as_toml() for r in self.routes],
        }
        self.config_path.write_text(tomli_w.dumps(config))
        now = datetime.now(UTC) - timedelta(days=1)
        keyfile = KeyFile(self.extra_keys.entries)
        for route, secret in self.keys.items():
            keyfile = keyfile.add(route, secret, state="primary", now=now)
        write_key_file(self.keys_path, keyfile)
        return self

    def delivered(self) -> list[dict[str, Any]]:
        if not self.events_path.exists():
            return []
        return [orjson.loads(line) for line in self.events_path.read_bytes().splitlines() if line]


class ServerProcess:
    """``callbacks serve`` in a child process, its output captured to a file. It leads a process
    group of its own, so :meth:`kill` takes its uvicorn workers down with it."""

    command = "serve"

    def __init__(self, setup: Setup, env: Mapping[str, str] | None = None) -> None:
        self.setup = setup
        self.log_path = setup.root / f"{self.command}.log"
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0  # where this start's output begins in the log

    def start(self, timeout: float = 30.0, *args: str) -> ServerProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.setup.root), str(REPO)]),
            E2E_EVENTS_FILE=str(self.setup.events_path),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.env)
        command = [sys.executable, "-c", "from callbacks.cli import main; main()"]
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, self.command, "--config", str(self.setup.config_path), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.setup.root,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command} exited at start:\n{self.output()}")
            if self.ready():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.command} not ready after {timeout}s:\n{self.output()}")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.setup.base_url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group at once: the server and every worker."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class DispatcherProcess(ServerProcess):
    """``callbacks dispatch`` in a child process: ready once it says it has started."""

    command = "dispatch"

    def ready(self) -> bool:
        return '"dispatcher_started"' in self.output()[self.log_offset :]


@dataclass(frozen=True)
class SignedRequest:
    """A :class:`callbacks.testing.SignedCallback` for a route's path, ready to send."""

    path: str
    signed: SignedCallback

    @property
    def query(self) -> str:
        return self.signed.query

    @property
    def headers(self) -> dict[str, str]:
        return self.signed.headers

    @property
    def body(self) -> bytes:
        return self.signed.body

    def send(self, client: httpx.Client, base_url: str, method: str = "POST") -> httpx.Response:
        url = f"{base_url}{self.path}" + (f"?{self.query}" if self.query else "")
        return client.request(method, url, content=self.body, headers=self.headers)


def sample_body(route: Route, n: int = 0) -> dict[str, Any]:
    """A documented body for the route's provider and kind; ``n`` makes it a distinct event.

    Live routes get a stream-state change, the live event whose body carries a credential.
    """
    event = "RTMP_STREAM_STATE_CHANGE" if route.kind == "live" else None
    return testing.sample_body(route.config, event, seq=n)


def signed_request(
    route: Route,
    key: str,
    payload: Mapping[str, Any],
    *,
    timestamp: int | None = None,
    job: str | None = None,
) -> SignedRequest:
    """What the platform would send for ``payload`` on ``route``, signed with ``key``."""
    signed = testing.sign_callback(route.config, key, payload, timestamp=timestamp, job=job)
    return SignedRequest(route.path, signed)


def parse_route(table: Mapping[str, Any]) -> RouteConfig:
    (route,) = parse_config({"routes": [dict(table)]}, source="<test>", env={}).routes
    return route


def all_route_kinds() -> list[Route]:
    """One route for every provider, MetaStudio kind and carrier."""
    h = "https://hooks.example.com"
    return [
        Route("st", "sensetime", f"{h}/callbacks/sensetime?tenant=acme"),
        Route(
            "ms-video",
            "metastudio",
            f"{h}/callbacks/ms/video?tenant=acme&env=prod",
            "video",
            "MSS_A",
        ),
        Route("ms-photo", "metastudio", f"{h}/callbacks/ms/photo", "photo_video", "MSS_A"),
        Route("ms-card", "metastudio", f"{h}/callbacks/ms/card", "business_card", "MSS_A"),
        Route("ms-subtitle", "metastudio", f"{h}/callbacks/ms/subtitle", "subtitle", "MSS_A"),
        Route("ms-live", "metastudio", f"{h}:8443/callbacks/ms/live", "live", "MSS_A"),
        Route("ms-head", "metastudio", f"{h}/callbacks/ms/head", "video", "MSS_A_HEAD"),
        Route("ms-tts", "metastudio", f"{h}/callbacks/ms/tts", "tts", "NONE"),
    ]


def keys_for(routes: Sequence[Route]) -> dict[str, str]:
    """Distinct keys per route that satisfy both platforms' rules."""
    return {r.name: f"Key{i}x{r.name.replace('-', '')}9Z"[:32] for i, r in enumerate(routes)}


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def freeze_while_holding(
    pid: int, held_by: Callable[[int], set[str]], timeout: float = 30.0
) -> set[str]:
    """SIGSTOP ``pid`` at a moment it holds claims and return them, leaving it stopped.

    Each event is settled as soon as it is done, so the claims a process holds change all the
    time: freeze it, read them, and let it run on if it held none. The caller kills it frozen,
    so the claims read are exactly those it dies with (the only events that may run twice)."""
    held: set[str] = set()
    deadline = time.monotonic() + timeout
    while not held and time.monotonic() < deadline:
        os.kill(pid, signal.SIGSTOP)
        held = held_by(pid)
        if not held:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
    return held


def sqlite_claims_of(db: Path, pid: int) -> set[str]:
    """The pending events that process ``pid`` holds claimed in the SQLite file ``db``."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT id FROM events WHERE status = 'pending' AND claimed_by LIKE ?",
            (f"%:{pid}:%",),
        )
        return {row[0] for row in rows}
