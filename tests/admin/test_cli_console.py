"""``callbacks events tail`` against a running receiver, and ``callbacks config check``."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from callbacks.cli import main
from callbacks.keyfile import KeyFile, write_key_file
from tests.admin.console_support import ADMIN_TOKEN, Console, start_console, write_console_setup
from tests.support import REPO, sample_body


class Lines:
    """A child process's stdout, line by line, with a deadline on each."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: queue.Queue[str] = queue.Queue()
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._wait_ready, daemon=True).start()

    def _wait_ready(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.startswith("following new events"):
                self.ready.set()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)

    def next(self, timeout: float = 15.0) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s") from None

    def empty_for(self, seconds: float) -> bool:
        try:
            self._lines.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    running = start_console(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def _tail(console: Console, *args: str) -> Iterator[Lines]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from callbacks.cli import main; main()",
            "events",
            "tail",
            "--config",
            str(console.setup.config_path),
            "--interval",
            "0.1",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "PYTHONPATH": str(REPO)},
    )
    lines = Lines(proc)
    try:
        assert lines.ready.wait(30), "the tail never said it was following"
        yield lines
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.slow
def test_tail_prints_each_new_event_once_oldest_first(console: Console) -> None:
    route = console.setup.route("ms-video")
    before = console.send("ms-video", sample_body(route, 1))  # stored before the tail starts
    for lines in _tail(console, "--json"):
        assert lines.empty_for(1.0)  # the past is not replayed
        sent = [console.send("ms-video", sample_body(route, n)) for n in (2, 3)]
        sent.append(console.send("st", sample_body(console.setup.route("st"), 4)))
        shown = [orjson.loads(lines.next()) for _ in sent]
        assert [s["id"] for s in shown] == sent
        assert before not in {s["id"] for s in shown}
        assert shown[0]["job_ids"] == ["job-2"]
        assert "body" not in shown[0]
        assert lines.empty_for(0.5)


@pytest.mark.slow
def test_tail_by_route_and_status_shows_an_event_when_it_dies(console: Console) -> None:
    for lines in _tail(console, "--route", "st", "--status", "dead"):
        lines.empty_for(0.5)
        console.send("ms-video", sample_body(console.setup.route("ms-video"), 9))
        console.send("st", sample_body(console.setup.route("st"), 9))  # delivered
        console.fail_flag.write_text("fail")
        dead = console.send("st", {"taskId": 77, "status": 2, "userData": "fail"})
        line = lines.next(20)
        assert line.split()[1] == "dead"
        assert dead in line
        assert "\x1b[" not in line  # not a terminal: no colour codes
        assert "told to fail" in line
        assert lines.empty_for(1.0)


def _check(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["config", "check", *args])
    return result.exit_code, result.stdout, result.stderr


def test_config_check_accepts_a_startable_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup, port = write_console_setup(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CONSOLE_FAIL_FLAG", str(tmp_path / "flag"))
    monkeypatch.setenv("CALLBACKS_ADMIN_TOKEN", ADMIN_TOKEN)
    code, out, _ = _check("--config", str(setup.config_path), "--json")
    assert code == 0, out
    report = orjson.loads(out)
    assert report["ok"] is True
    assert report["routes"] == ["st", "ms-video", "ms-live"]
    assert report["console"] == f"127.0.0.1:{port}"


def test_config_check_names_the_first_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup, _ = write_console_setup(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CONSOLE_FAIL_FLAG", str(tmp_path / "flag"))
    code, _, err = _check("--config", str(setup.config_path))
    assert code == 1
    assert err.startswith("error: the console ([admin] listen) needs a token")

    monkeypatch.setenv("CALLBACKS_ADMIN_TOKEN", ADMIN_TOKEN)
    write_key_file(setup.keys_path, KeyFile())
    code, out, _ = _check("--config", str(setup.config_path), "--json")
    assert code == 1
    problem = orjson.loads(out)
    assert problem["ok"] is False
    assert problem["error"]["code"] == "config_invalid"
    assert "no verifying key for route(s) st, ms-video, ms-live" in problem["error"]["message"]

    setup.config_path.write_text("[server\n")
    code, _, err = _check("--config", str(setup.config_path))
    assert code == 1
    assert "not valid TOML" in err
    assert len(err.strip().splitlines()) == 1


def test_config_check_refuses_a_world_readable_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup, _ = write_console_setup(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CONSOLE_FAIL_FLAG", str(tmp_path / "flag"))
    setup.keys_path.chmod(0o644)
    code, _, err = _check("--config", str(setup.config_path))
    assert code == 1
    assert str(setup.keys_path) in err or "keys.toml" in err
