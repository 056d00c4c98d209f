"""The README's first command: ``callbacks serve`` with no config at all starts a working
development setup, and the command it prints sends a callback that is accepted."""

from __future__ import annotations

import os
import re
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from callbacks.config import load_config
from callbacks.keyfile import read_key_file
from tests.support import REPO, free_port, wait_for

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from callbacks.cli import main; main()"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_serve_without_config_starts_a_dev_setup_that_accepts_simulated_callbacks(
    tmp_path: Path,
) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [*CLI, "serve", "--port", str(port)],
            cwd=tmp_path,
            env=_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(ready, timeout=30), log_path.read_text()
        banner = log_path.read_text()
        # The banner lists both routes and a ready-to-paste command.
        assert "/callbacks/sensetime" in banner
        assert "/callbacks/metastudio/video" in banner
        command = re.search(r"^\s+(\S*callbacks simulate \S+.*)$", banner, re.MULTILINE)
        assert command is not None, banner
        simulate_args = shlex.split(command.group(1))[1:]

        dev = tmp_path / ".avatar-callbacks"
        config = load_config(dev / "callbacks.toml")
        assert config.store.url.startswith("sqlite://")
        assert stat.S_IMODE((dev / "keys.toml").stat().st_mode) == 0o600
        keys = read_key_file(dev / "keys.toml")
        assert keys.for_route("sensetime")
        assert keys.for_route("metastudio-video")

        for route in ("sensetime", "metastudio-video"):
            args = [*simulate_args[:1], route, *simulate_args[2:]]
            sent = subprocess.run(
                [*CLI, *args], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60
            )
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert sent.stdout.startswith("200"), sent.stdout
        # Keys never reach the log.
        for entry in keys.entries:
            assert entry.secret not in log_path.read_text()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)

    # A second start reuses the same setup and keys.
    before = (tmp_path / ".avatar-callbacks" / "keys.toml").read_bytes()
    second = subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(ready, timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    assert (tmp_path / ".avatar-callbacks" / "keys.toml").read_bytes() == before
