"""Platform retries of a large callback, end to end: a real server stores each as a duplicate
that costs metadata, not another copy of the body, and ``events show`` explains it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import REPO, Route, ServerProcess, Setup, keys_for, signed_request, wait_for

pytestmark = pytest.mark.slow

ROUTES = [Route("ms-video", "metastudio", "https://hooks.example.com/cb/video", "video", "MSS_A")]
KEYS = keys_for(ROUTES)
RETRIES = 19


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Setup]:
    setup = Setup(tmp_path, ROUTES, KEYS).write()
    process = ServerProcess(setup).start()
    try:
        yield setup
    finally:
        process.stop()


def inbox_bytes(root: Path) -> int:
    """The database's size as SQLite sees it (committed pages, in the file or still in the WAL);
    the WAL file itself only grows to its high-water mark and is reused after checkpoints."""
    with sqlite3.connect(root / "callbacks.db") as conn:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        used = pages - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int(used * page_size)


def cli(setup: Setup, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(setup.root), str(REPO)])
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from callbacks.cli import main; main()",
            *args,
            "--config",
            str(setup.config_path),
        ],
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_retries_of_a_large_callback_add_metadata_not_bodies(server: Setup) -> None:
    route = server.route("ms-video")
    # Random text barely compresses: what a big, genuine result would weigh.
    blob = base64.b64encode(os.urandom(700 * 1024)).decode()
    payload = {"job_id": "j-big", "result": "SUCCEED", "asset_id": "a1", "detail": blob}
    body = orjson.dumps(payload)
    assert len(body) > 900 * 1024
    with httpx.Client(timeout=10) as client:
        first = signed_request(route, KEYS[route.name], payload).send(client, server.base_url)
        assert first.status_code == 200, first.text
        original = first.json()["delivery_id"]
        # Delivered first, so the original's own status updates are not counted below.
        assert wait_for(lambda: any(e["phase"] == "end" for e in server.delivered()))
        after_first = inbox_bytes(server.root)
        answers = [
            signed_request(route, KEYS[route.name], payload, timestamp=None).send(
                client, server.base_url
            )
            for _ in range(RETRIES)
        ]
    assert [a.status_code for a in answers] == [200] * RETRIES
    assert all(a.json()["duplicate"] for a in answers)
    growth = inbox_bytes(server.root) - after_first
    # 19 copies would be ~19 MiB; metadata and digests are a few hundred bytes each.
    assert growth < 256 * 1024, f"{RETRIES} duplicates grew the inbox by {growth} bytes"

    shown = json.loads(cli(server, "events", "show", answers[-1].json()["delivery_id"], "--json"))
    assert shown["status"] == "duplicate"
    assert shown["duplicate_of"] == original
    assert shown["body_of"] == original
    assert shown["body"] == payload  # the original's body, which is this one's content
    assert shown["body_sha256"] == hashlib.sha256(body).hexdigest()

    text = cli(server, "events", "show", answers[0].json()["delivery_id"])
    assert f"duplicate of delivery {original}" in text
    assert '"asset_id": "a1"' in text
