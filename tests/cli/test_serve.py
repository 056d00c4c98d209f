"""`callbacks serve` as an operator meets it: the command it prints, start-up failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from callbacks.devsetup import ensure_dev_setup
from tests.support import Cli, Route, free_port, wait_for, write_config

pytestmark = pytest.mark.slow

SCRIPT = Path(sys.executable).parent / "callbacks"
ST = Route("st", "sensetime", "http://127.0.0.1/cb/st")


def _env(**extra: str) -> dict[str, str]:
    """A shell without the virtual environment: the venv's bin is not on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBACKS_", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


def _serve_command() -> list[str]:
    if not SCRIPT.is_file():
        pytest.skip(f"the console script is not installed beside {sys.executable}")
    return [str(SCRIPT), "serve"]


@contextmanager
def serving(
    args: list[str], cwd: Path, port: int, env: Mapping[str, str] | None = None
) -> Iterator[Path]:
    """``callbacks serve ARGS`` until ready; yields the path of its captured output."""
    log = cwd / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*_serve_command(), *args],
            cwd=cwd,
            env=dict(env or _env()),
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        except httpx.TransportError:
            return server.poll() is not None

    try:
        assert wait_for(ready, timeout=30), log.read_text()
        assert server.poll() is None, log.read_text()
        yield log
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _banner_command(log: Path) -> str:
    lines = log.read_text().splitlines()
    at = lines.index("Send a correctly signed test callback from another terminal:")
    return lines[at + 1].strip()


def _paste(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as a user pasting it into a new terminal would: through a shell."""
    return subprocess.run(
        ["/bin/sh", "-c", command], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60
    )


def test_the_banner_command_works_verbatim_on_the_port_serve_was_given(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    ensure_dev_setup(home / ".avatar-callbacks", port=free_port())  # a setup from another day
    port = free_port()
    with serving(["--port", str(port)], home, port) as log:
        command = _banner_command(log)
        sent = _paste(command, elsewhere)
    assert sent.returncode == 0, f"{command}\n{sent.stdout}{sent.stderr}"
    assert sent.stdout.startswith("200 stored"), sent.stdout
    assert f":{port}/" in sent.stderr


def test_the_banner_command_follows_callbacks_port(tmp_path: Path) -> None:
    config = write_config(tmp_path, [ST], port=free_port())
    port = free_port()
    keys = tmp_path / "keys.toml"
    subprocess.run(
        [str(SCRIPT), "keys", "add", "st", "--generate", "--config", str(config)],
        env=_env(),
        check=True,
        capture_output=True,
    )
    assert keys.exists()
    with serving(
        ["--config", str(config)], tmp_path, port, env=_env(CALLBACKS_PORT=str(port))
    ) as log:
        command = _banner_command(log)
        sent = _paste(command, tmp_path)
    assert sent.returncode == 0, f"{command}\n{sent.stdout}{sent.stderr}"
    assert sent.stdout.startswith("200 stored"), sent.stdout


HANDLER_PACKAGE = """
import os
from callbacks import Handlers

handlers = Handlers()

@handlers.on_any
def record(event):
    with open(os.path.join(os.path.dirname(__file__), "..", "handled.txt"), "a") as f:
        f.write(event.delivery_id + "\\n")
"""


def test_a_handler_package_next_to_the_config_is_found(tmp_path: Path) -> None:
    folder, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    (folder / "myhandlers").mkdir(parents=True)
    (folder / "myhandlers" / "__init__.py").write_text(HANDLER_PACKAGE)
    elsewhere.mkdir()
    port = free_port()
    config = write_config(folder, [ST], port=port, handlers=["myhandlers"])
    subprocess.run(
        [str(SCRIPT), "keys", "add", "st", "--generate", "--config", str(config)],
        env=_env(),
        check=True,
        capture_output=True,
    )
    with serving(["--config", str(config)], elsewhere, port) as log:
        sent = _paste(_banner_command(log), elsewhere)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        delivery = sent.stdout.split("delivery_id=")[1].strip()
        handled = folder / "handled.txt"
        assert wait_for(lambda: handled.exists() and delivery in handled.read_text()), (
            log.read_text()
        )


def test_a_missing_handler_module_says_where_it_was_looked_for(tmp_path: Path) -> None:
    config = write_config(tmp_path, [ST], handlers=["nowhere_to_be_found"])
    (tmp_path / "keys.toml").write_text("")
    os.chmod(tmp_path / "keys.toml", 0o600)
    result = Cli(config).run("serve")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "handler module 'nowhere_to_be_found' cannot be imported" in line
    assert f"the config folder ({tmp_path})" in line


def test_a_second_receiver_on_the_same_sqlite_file_serves_beside_the_first(
    tmp_path: Path,
) -> None:
    first, second = free_port(), free_port()
    config = write_config(tmp_path, [ST], port=first)
    Cli(config).ok("keys", "add", "st", "--generate")
    elsewhere = tmp_path / "second"
    elsewhere.mkdir()
    with (
        serving(["--config", str(config)], tmp_path, first),
        serving(["--config", str(config), "--port", str(second)], elsewhere, second) as log,
    ):
        assert httpx.get(f"http://127.0.0.1:{second}/readyz").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{first}/readyz").status_code == 200
    assert "Traceback" not in log.read_text()
