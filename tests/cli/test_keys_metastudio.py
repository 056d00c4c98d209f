"""`callbacks keys metastudio ...`: the MetaStudio API credentials in the key file, never shown.

Through real processes where the secret's path matters (stdin, the environment, the exit code
and both output streams); the rest through the in-process runner.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import tomli_w

from callbacks.keyfile import read_key_file
from tests.e2e.dispatch_support import run_cli
from tests.support import Cli, Route, Setup, keys_for
from verify import key_id

AK = "HPUAKEYFORTESTS0001"
SK = "sk-do-not-print-7be1c0d2a9f34e85"
TOKEN = "MIIToken-do-not-print-" + "x" * 80
ROUTES = [Route("ms", "metastudio", "https://hooks.example.com/cb/ms", kind="video")]


def make(tmp_path: Path, *, api: bool = True) -> Setup:
    setup = Setup(tmp_path, ROUTES, keys_for(ROUTES)).write()
    if api:
        config = tomllib.loads(setup.config_path.read_text())
        config["metastudio_api"] = {"endpoint": "http://127.0.0.1:9", "project_id": "p0d69"}
        setup.config_path.write_text(tomli_w.dumps(config))
    return setup


def test_set_reads_the_sk_from_stdin_and_prints_neither_half(tmp_path: Path) -> None:
    setup = make(tmp_path)
    out = run_cli(setup, "keys", "metastudio", "set", "--ak", AK, input=SK + "\n")
    assert out.returncode == 0, out.stderr
    assert SK not in out.stdout + out.stderr
    assert AK not in out.stdout + out.stderr
    assert key_id(SK) in out.stdout
    table = read_key_file(setup.keys_path).sections["metastudio_api"]
    assert table == {"ak": AK, "sk": SK}
    assert stat.S_IMODE(setup.keys_path.stat().st_mode) == 0o600


def test_the_secret_is_never_taken_from_the_command_line(tmp_path: Path) -> None:
    setup = make(tmp_path)
    out = run_cli(setup, "keys", "metastudio", "set", "--ak", AK, "--sk", SK)
    assert out.returncode == 2
    assert SK not in out.stdout + out.stderr
    assert "metastudio_api" not in read_key_file(setup.keys_path).sections


def test_show_masks_everything_and_names_the_source_in_use(tmp_path: Path) -> None:
    setup = make(tmp_path)
    cli = Cli(setup.config_path)
    cli.ok("keys", "metastudio", "set", "--ak", AK, input=SK + "\n")
    out = run_cli(setup, "keys", "metastudio", "show")
    assert out.returncode == 0, out.stderr
    assert SK not in out.stdout + out.stderr
    assert AK not in out.stdout + out.stderr
    assert "HPUA***01" in out.stdout
    [in_use] = [line for line in out.stdout.splitlines() if line.rstrip().endswith("in use")]
    assert "key_file" in in_use
    report = cli.json("keys", "metastudio", "show")
    assert report["in_use"] == "key_file"
    [from_file] = [s for s in report["sources"] if s["source"] == "key_file"]
    assert (from_file["kind"], from_file["secret_id"]) == ("ak_sk", key_id(SK))


def test_the_environment_wins_over_the_key_file_and_set_says_so(tmp_path: Path) -> None:
    setup = make(tmp_path)
    env = {"CALLBACKS_METASTUDIO_TOKEN": TOKEN}
    out = run_cli(setup, "keys", "metastudio", "set", "--ak", AK, input=SK + "\n", env=env)
    assert out.returncode == 0, out.stderr
    assert "CALLBACKS_METASTUDIO_TOKEN set in this environment win" in out.stderr
    shown = run_cli(setup, "keys", "metastudio", "show", "--json", env=env)
    assert TOKEN not in shown.stdout + shown.stderr
    assert SK not in shown.stdout + shown.stderr
    assert '"in_use": "environment"' in shown.stdout


def test_the_legacy_credentials_file_comes_last(tmp_path: Path) -> None:
    setup = make(tmp_path)
    legacy = tmp_path / "ms-credentials.toml"
    legacy.write_text(f'token = "{TOKEN}"\n')
    os.chmod(legacy, 0o600)
    config = tomllib.loads(setup.config_path.read_text())
    config["metastudio_api"]["credentials_file"] = legacy.name
    setup.config_path.write_text(tomli_w.dumps(config))
    cli = Cli(setup.config_path)
    assert cli.json("keys", "metastudio", "show")["in_use"] == "credentials_file"
    cli.ok("keys", "metastudio", "set", "--ak", AK, input=SK + "\n")
    assert cli.json("keys", "metastudio", "show")["in_use"] == "key_file"
    cli.ok("keys", "metastudio", "remove")
    report = cli.json("keys", "metastudio", "show")
    assert report["in_use"] == "credentials_file"
    assert TOKEN not in str(report)


def test_a_token_replaces_a_key_pair_and_remove_drops_the_table(tmp_path: Path) -> None:
    setup = make(tmp_path)
    cli = Cli(setup.config_path)
    cli.ok("keys", "metastudio", "set", "--ak", AK, input=SK + "\n")
    out = run_cli(setup, "keys", "metastudio", "set", "--token", input=TOKEN + "\n")
    assert out.returncode == 0, out.stderr
    assert TOKEN not in out.stdout + out.stderr
    assert read_key_file(setup.keys_path).sections["metastudio_api"] == {"token": TOKEN}
    cli.ok("keys", "metastudio", "remove")
    assert "metastudio_api" not in read_key_file(setup.keys_path).sections
    assert "holds no MetaStudio API credentials" in cli.ok("keys", "metastudio", "remove").stderr
    shown = run_cli(setup, "keys", "metastudio", "show")
    assert shown.returncode == 1
    assert "keys metastudio set" in shown.stderr


def test_other_key_commands_keep_the_table(tmp_path: Path) -> None:
    setup = make(tmp_path)
    cli = Cli(setup.config_path)
    cli.ok("keys", "metastudio", "set", "--ak", AK, input=SK + "\n")
    cli.ok("keys", "add", "ms", "--generate")
    new = next(e for e in read_key_file(setup.keys_path).for_route("ms") if e.state == "next")
    cli.ok("keys", "promote", "ms", new.id)
    assert read_key_file(setup.keys_path).sections["metastudio_api"] == {"ak": AK, "sk": SK}


def test_bad_input_is_one_line_that_repeats_nothing(tmp_path: Path) -> None:
    setup = make(tmp_path)
    for args, stdin in [
        (("--ak", AK), "\n"),  # no SK
        (("--ak", AK), f"{SK} {SK}\n"),  # a paste with a space in it
        (("--ak", f"{AK}\t"), SK + "\n"),
        (("--token",), "\x07" + TOKEN + "\n"),
        (("--ak", AK, "--token"), SK + "\n"),
        ((), SK + "\n"),
    ]:
        out = run_cli(setup, "keys", "metastudio", "set", *args, input=stdin)
        assert out.returncode in (1, 2), (args, out.stderr)
        assert "Traceback" not in out.stderr
        assert SK not in out.stdout + out.stderr
        assert TOKEN not in out.stdout + out.stderr
    assert "metastudio_api" not in read_key_file(setup.keys_path).sections


def test_config_check_validates_the_table_without_repeating_it(tmp_path: Path) -> None:
    setup = make(tmp_path)
    cli = Cli(setup.config_path)
    env = {"E2E_EVENTS_FILE": str(setup.events_path)}  # the recording handlers need it
    no_credentials = run_cli(setup, "config", "check", env=env)
    assert no_credentials.returncode == 1
    assert "keys metastudio set" in no_credentials.stderr
    cli.ok("keys", "metastudio", "set", "--ak", AK, input=SK + "\n")
    assert run_cli(setup, "config", "check", env=env).returncode == 0
    text = setup.keys_path.read_text().replace(f'sk = "{SK}"', f'secret = "{SK}"')
    setup.keys_path.write_text(text)
    broken = run_cli(setup, "config", "check", env=env)
    assert broken.returncode == 1
    assert "[metastudio_api]" in broken.stderr
    assert "'secret'" in broken.stderr
    assert SK not in broken.stdout + broken.stderr


def test_set_works_before_the_config_names_the_api_and_says_so(tmp_path: Path) -> None:
    setup = make(tmp_path, api=False)
    cli = Cli(setup.config_path)
    cli.ok("keys", "metastudio", "set", "--ak", AK, input=SK + "\n")
    shown = cli.ok("keys", "metastudio", "show")
    assert "no [metastudio_api] table" in shown.stderr


def test_a_broken_environment_is_what_show_reports_not_the_key_file(tmp_path: Path) -> None:
    setup = make(tmp_path)
    Cli(setup.config_path).ok("keys", "metastudio", "set", "--ak", AK, input=SK + "\n")
    env = {"CALLBACKS_METASTUDIO_SK": SK}  # half a pair: the receiver would not start
    out = run_cli(setup, "keys", "metastudio", "show", "--json", env=env)
    assert out.returncode == 1
    assert '"in_use": null' in out.stdout
    assert "credentials_incomplete" in out.stderr
    assert SK not in out.stdout + out.stderr
