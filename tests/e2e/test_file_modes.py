"""The SQLite inbox holds every payload and the raw signatures: only its owner may read it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

from tests.support import Route, ServerProcess, Setup, keys_for, sample_body, signed_request

pytestmark = pytest.mark.slow

ROUTES = [Route("st", "sensetime", "https://hooks.example.com/cb/st")]
KEYS = keys_for(ROUTES)
INBOX_FILES = (
    "callbacks.db",
    "callbacks.db-wal",
    "callbacks.db-shm",
    "callbacks.db.server-lock",
    "callbacks.db.write-lock",
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_inbox_files_are_created_owner_only(tmp_path: Path) -> None:
    setup = Setup(tmp_path / "data", ROUTES, KEYS).write()
    previous = os.umask(0o022)  # the common default, which would leave them world-readable
    try:
        process = ServerProcess(setup).start()
    finally:
        os.umask(previous)
    try:
        route = setup.route("st")
        with httpx.Client(timeout=10) as client:
            answer = signed_request(route, KEYS["st"], sample_body(route)).send(
                client, setup.base_url
            )
        assert answer.status_code == 200, answer.text
        modes = {name: mode(setup.root / name) for name in INBOX_FILES}
    finally:
        process.stop()
    assert modes == dict.fromkeys(INBOX_FILES, 0o600)
