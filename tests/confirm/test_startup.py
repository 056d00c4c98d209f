"""What ``callbacks serve`` says at start about confirmation."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from tests.support import REPO, Route, ServerProcess, Setup, keys_for

pytestmark = pytest.mark.slow

ROUTES = [
    Route("ms-a", "metastudio", "https://hooks.example.com/a", "video", "MSS_A"),
    Route("ms-b", "metastudio", "https://hooks.example.com/b", "photo_video", "MSS_A"),
    Route("st", "sensetime", "https://hooks.example.com/st"),
]


def test_routes_that_do_not_confirm_are_named_once_each(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, keys_for(ROUTES)).write()
    server = ServerProcess(setup).start()
    server.stop()
    lines = [
        line for line in server.output().splitlines() if "route_bodies_unauthenticated" in line
    ]
    assert sorted(next(r for r in ("ms-a", "ms-b") if f'"{r}"' in line) for line in lines) == [
        "ms-a",
        "ms-b",
    ]


def test_missing_credentials_stop_the_server_at_start_with_what_to_do(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, keys_for(ROUTES)).write()
    config = tomllib.loads(setup.config_path.read_text())
    config["metastudio_api"] = {"endpoint": "http://127.0.0.1:9", "project_id": "p"}
    setup.config_path.write_text(tomli_w.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(setup.root), str(REPO)])
    env["E2E_EVENTS_FILE"] = str(setup.events_path)
    out = subprocess.run(
        [sys.executable, "-c", "from callbacks.cli import main; main()", "serve",
         "--config", str(setup.config_path)],
        capture_output=True, text=True, env=env, cwd=setup.root, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "CALLBACKS_METASTUDIO_AK" in out.stderr
    assert "Traceback" not in out.stderr
