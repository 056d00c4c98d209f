"""``callbacks serve`` refuses to start, with one line saying what to do, when a sink's client
library is not installed or an HTTP sink has no signing secret."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import tomli_w

from tests.sinks.harness import KEYS, ROUTES
from tests.support import REPO, Setup

# `import nats` then fails as it does where the extra is not installed.
WITHOUT_NATS = "import sys; sys.modules['nats'] = None; from callbacks.cli import main; main()"
WITH_ALL = "from callbacks.cli import main; main()"


def serve(setup: Setup, sink: dict[str, str], program: str) -> subprocess.CompletedProcess[str]:
    config = tomllib.loads(setup.config_path.read_text())
    config["sinks"] = [sink]
    setup.config_path.write_text(tomli_w.dumps(config))
    return subprocess.run(
        [sys.executable, "-c", program, "serve", "--config", str(setup.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=setup.root,
        env={
            "PYTHONPATH": f"{setup.root}:{REPO}",
            "PATH": "/usr/bin:/bin",
            "E2E_EVENTS_FILE": str(setup.events_path),
        },
        check=False,
    )


def test_a_missing_client_library_names_the_extra(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS).write()
    sink = {"name": "bus", "url": "nats://127.0.0.1:4222", "target": "avatar.callbacks"}
    result = serve(setup, sink, WITHOUT_NATS)
    assert result.returncode == 1
    assert "pip install 'avatar-callbacks[nats]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_http_sink_without_a_secret_says_how_to_add_one(tmp_path: Path) -> None:
    setup = Setup(tmp_path, ROUTES, KEYS).write()
    result = serve(setup, {"name": "hooks", "url": "http://127.0.0.1:9/in"}, WITH_ALL)
    assert result.returncode == 1
    assert "callbacks keys sink add hooks" in result.stderr
    assert "Traceback" not in result.stderr
