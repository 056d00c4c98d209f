"""With ``--json``, every failure is one JSON object on stdout (and a non-zero exit): the
command's own failures (exit 1) and click's usage errors (exit 2) alike."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from callbacks.cli import main
from tests.support import Cli, Route, write_config

ROUTES = [Route("st", "sensetime", "https://hooks.example.com/cb/st")]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(write_config(tmp_path, ROUTES))


def _error(stdout: str) -> dict[str, str]:
    answer = json.loads(stdout)
    assert answer["ok"] is False
    error: dict[str, str] = answer["error"]
    assert set(error) == {"code", "message"}
    return error


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("events", "show", "ffffffffff"), "failed", "callbacks db upgrade"),
        (("simulate", "nosuch"), "failed", "no route named 'nosuch'"),
        (("keys", "promote", "st", "ffff"), "failed", "key file not found"),
        (("events", "list", "--since", "yesterday-ish"), "usage", "neither a date"),
        (("simulate", "st", "--count", "0"), "usage", "--count"),
        (("events", "list", "--no-such-option"), "usage", "No such option"),
    ],
)
def test_errors_are_json_on_stdout(cli: Cli, args: tuple[str, ...], code: str, says: str) -> None:
    result = CliRunner().invoke(main, [*args, "--json", "--config", str(cli.config)])
    assert result.exit_code == (2 if code == "usage" else 1), result.output
    error = _error(result.stdout)
    assert error["code"] == code
    assert says in error["message"]


def test_without_json_errors_stay_one_line_on_stderr(cli: Cli) -> None:
    result = CliRunner().invoke(main, ["simulate", "nosuch", "--config", str(cli.config)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: no route named 'nosuch'")


def test_a_missing_config_under_json_in_a_real_process(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "callbacks.cli",
            "events",
            "list",
            "--json",
            "--config",
            str(missing),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert str(missing) in _error(done.stdout)["message"]
    assert done.stderr == ""
