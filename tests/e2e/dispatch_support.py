"""Helpers for the dispatcher's end-to-end tests: handler modules of their own, the server's
log lines and CPU time, callbacks sent in bulk."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import tomli_w

from tests.support import REPO, Route, ServerProcess, Setup, signed_request

# Shared by the handler modules below: one fsync'd JSON line per handler start and end.
RECORD = """
import os, json

_PATH = os.environ["E2E_EVENTS_FILE"]

def write(record):
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(record) + "\\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
"""


def use_handlers(setup: Setup, source: str | None) -> None:
    """Make the server load ``source`` as its handler module (None: no handler module at all)."""
    (setup.root / "e2e_record.py").write_text(RECORD)
    if source is not None:
        (setup.root / "e2e_handlers.py").write_text(source)
    config = tomllib.loads(setup.config_path.read_text())
    config["handlers"] = {"modules": [] if source is None else ["e2e_handlers"]}
    setup.config_path.write_text(tomli_w.dumps(config))


def send_all(setup: Setup, key: str, route: Route, bodies: Iterable[dict[str, Any]]) -> list[str]:
    """Send each body as a signed callback; the delivery ids of those answered 200."""
    ids: list[str] = []
    with httpx.Client(timeout=10) as client:
        for body in bodies:
            response = signed_request(route, key, body).send(client, setup.base_url)
            assert response.status_code == 200, response.text
            ids.append(response.json()["delivery_id"])
    return ids


def log_records(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's JSON log lines, in the order written (other lines skipped)."""
    records = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            try:
                records.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return records


def log_line_count(server: ServerProcess) -> int:
    return len(server.output().splitlines())


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def handler_records(setup: Setup) -> list[dict[str, Any]]:
    return setup.delivered()


def sqlite_rows(path: Path, ids: Sequence[str]) -> dict[str, tuple[str, int, str | None]]:
    """(status, attempts, last_error) by id, read beside the running server."""
    marks = ",".join("?" * len(ids))
    with sqlite3.connect(path, timeout=5) as conn:
        rows = conn.execute(
            f"SELECT id, status, attempts, last_error FROM events WHERE id IN ({marks})",  # noqa: S608
            list(ids),
        ).fetchall()
    return {row[0]: (row[1], row[2], row[3]) for row in rows}


def run_cli(
    setup: Setup, *args: str, input: str | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The ``callbacks`` command, as an operator would run it beside the server (``input`` on
    its stdin, ``env`` added to an environment without this one's ``CALLBACKS_*``)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    environment["PYTHONPATH"] = os.pathsep.join([str(setup.root), str(REPO)])
    environment.update(env or {})
    command = [sys.executable, "-c", "from callbacks.cli import main; main()"]
    return subprocess.run(
        [*command, *args, "--config", str(setup.config_path)],
        capture_output=True,
        text=True,
        input=input,
        env=environment,
        timeout=60,
        check=False,
    )


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
