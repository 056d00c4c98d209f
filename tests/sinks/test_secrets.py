"""Sink secrets in the key file: ``callbacks keys sink add/list/retire``, and that editing a
route's keys keeps them (the key file is rewritten whole)."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from standardwebhooks import Webhook

from callbacks.cli import main
from callbacks.errors import KeyFileError
from callbacks.keyfile import read_key_file
from callbacks.sinks.http import signature_header
from callbacks.sinks.secrets import SecretSource, secret_id, sink_secrets

CONFIG = """\
[keys]
file = "keys.toml"

[[routes]]
name = "st"
path = "/cb/st"
provider = "sensetime"
public_url = "https://hooks.example.com/cb/st"

[[sinks]]
name = "hooks"
url = "https://consumer.example.com/in"

[[sinks]]
name = "bus"
url = "nats://127.0.0.1:4222"
target = "avatar.callbacks"
"""


def run(root: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, [*args, "--config", str(root / "callbacks.toml")], input=input)


def setup(root: Path) -> Path:
    (root / "callbacks.toml").write_text(CONFIG)
    return root / "keys.toml"


def test_rotate_a_sink_secret_without_a_gap(tmp_path: Path) -> None:
    keys = setup(tmp_path)
    first = run(tmp_path, "keys", "sink", "add", "hooks", "--json")
    assert first.exit_code == 0, first.output
    old = json.loads(first.output)["secret"]
    second = json.loads(run(tmp_path, "keys", "sink", "add", "hooks", "--json").output)
    new = second["secret"]
    assert second["signing"] == 2
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert sink_secrets(read_key_file(keys), "hooks") == (new, old)

    # Both sign: a consumer on either verifies.
    source = SecretSource(keys, "hooks")
    source.load()
    ts = str(int(time.time()))
    signed = {"webhook-id": "m1", "webhook-timestamp": ts}
    signed["webhook-signature"] = signature_header(source.keys(), "m1", ts, b"{}")
    Webhook(old).verify(b"{}", signed)
    Webhook(new).verify(b"{}", signed)

    listed = run(tmp_path, "keys", "sink", "list")
    for secret in (old, new):
        assert secret_id(secret) in listed.output
        assert secret not in listed.output

    retired = run(tmp_path, "keys", "sink", "retire", "hooks", secret_id(old))
    assert retired.exit_code == 0, retired.output
    assert sink_secrets(read_key_file(keys), "hooks") == (new,)
    assert source.keys() != ()  # re-read on change
    last = run(tmp_path, "keys", "sink", "retire", "hooks", secret_id(new))
    assert last.exit_code == 1
    assert "only secret" in last.output


def test_a_secret_from_stdin_is_checked_and_not_echoed(tmp_path: Path) -> None:
    setup(tmp_path)
    bad = run(tmp_path, "keys", "sink", "add", "hooks", "--secret", "-", input="whsec_nope\n")
    assert bad.exit_code == 2
    assert "whsec_nope" not in bad.output
    secret = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="
    good = run(tmp_path, "keys", "sink", "add", "hooks", "--secret", "-", input=secret + "\n")
    assert good.exit_code == 0, good.output
    assert secret not in good.output


def test_only_http_sinks_have_secrets(tmp_path: Path) -> None:
    setup(tmp_path)
    assert "only HTTP sinks" in run(tmp_path, "keys", "sink", "add", "bus").output
    assert "no HTTP sink named" in run(tmp_path, "keys", "sink", "add", "nope").output


def test_route_key_commands_keep_the_sink_secrets(tmp_path: Path) -> None:
    keys = setup(tmp_path)
    run(tmp_path, "keys", "sink", "add", "hooks")
    before = sink_secrets(read_key_file(keys), "hooks")
    added = run(tmp_path, "keys", "add", "st", "--generate")
    assert added.exit_code == 0, added.output
    after = read_key_file(keys)
    assert sink_secrets(after, "hooks") == before
    assert len(after.for_route("st")) == 1


def test_an_http_sink_without_a_secret_does_not_start(tmp_path: Path) -> None:
    keys = setup(tmp_path)
    run(tmp_path, "keys", "add", "st", "--generate")
    with pytest.raises(KeyFileError, match="callbacks keys sink add hooks"):
        SecretSource(keys, "hooks").load()
