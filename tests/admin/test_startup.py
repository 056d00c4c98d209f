"""``callbacks serve`` with ``[admin] listen``: refuses to start without a token, says why in one
line; takes the token from the key file too; stops with the receiver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from callbacks.keyfile import read_key_file, write_key_file
from tests.admin.console_support import ADMIN_TOKEN, write_console_setup
from tests.support import REPO, ServerProcess

pytestmark = pytest.mark.slow


def _serve(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from callbacks.cli import main; main()",
            "serve",
            "--config",
            str(config),
        ],
        env={**clean, "PYTHONPATH": f"{config.parent}{os.pathsep}{REPO}", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_no_token_refuses_to_start_and_says_why(tmp_path: Path) -> None:
    setup, _ = write_console_setup(tmp_path)
    result = _serve(setup.config_path, {"CONSOLE_FAIL_FLAG": str(tmp_path / "flag")})
    assert result.returncode == 1
    assert _error_lines(result) == [
        "error: the console ([admin] listen) needs a token: set CALLBACKS_ADMIN_TOKEN or "
        "token = in the key file's [admin] table; not starting"
    ]
    assert "Traceback" not in result.stderr


def test_a_taken_console_port_refuses_to_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        setup, _ = write_console_setup(tmp_path, admin_port=taken.getsockname()[1])
        env = {"CALLBACKS_ADMIN_TOKEN": ADMIN_TOKEN, "CONSOLE_FAIL_FLAG": str(tmp_path / "f")}
        result = _serve(setup.config_path, env)
    assert result.returncode == 1
    [line] = _error_lines(result)
    assert line.startswith("error: the console cannot listen on 127.0.0.1:")
    assert ADMIN_TOKEN not in result.stderr + result.stdout


def test_a_key_file_token_and_the_console_stops_with_the_receiver(tmp_path: Path) -> None:
    setup, port = write_console_setup(tmp_path)
    keyfile = read_key_file(setup.keys_path)
    sections = {**keyfile.sections, "admin": {"token": ADMIN_TOKEN}}
    write_key_file(setup.keys_path, type(keyfile)(keyfile.entries, sections))
    server = ServerProcess(setup, env={"CONSOLE_FAIL_FLAG": str(tmp_path / "flag")}).start()
    try:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        answer = httpx.get(f"http://127.0.0.1:{port}/api/health", headers=headers)
        assert answer.status_code == 200, answer.text
        assert ADMIN_TOKEN not in server.output()
    finally:
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught to end the process.
        assert server.proc.wait(20) in (0, -signal.SIGTERM)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
