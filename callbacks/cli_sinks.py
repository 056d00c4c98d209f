"""``callbacks keys sink ...``: the signing secrets of HTTP sinks, rotated without a gap.

Every secret a sink holds signs every message (one Standard Webhooks signature each), so:
``add`` a new secret (printed once: give it to the consumer), move the consumer to it, ``retire``
the old one. Secrets are kept in the key file's ``[sinks.NAME]`` table and shown only by id.
"""

from __future__ import annotations

import sys

import click

from callbacks.cli_keys import reload_hint, update_key_file
from callbacks.cli_support import (
    config_option,
    echo_json,
    fail,
    format_table,
    json_option,
    load_config_or_fail,
    read_keys_or_fail,
)
from callbacks.config import Config
from callbacks.errors import KeyFileError
from callbacks.keyfile import KeyFile
from callbacks.sinks.secrets import (
    generate_secret,
    secret_bytes,
    secret_id,
    sink_secrets,
    with_sink_secrets,
)
from callbacks.sinks.settings import SinkConfig


@click.group("sink")
def sink_group() -> None:
    """Rotate the whsec_ secrets HTTP sinks sign with (Standard Webhooks).

    \b
    Rotation, step by step:
      callbacks keys sink add hooks          # new secret, printed once; both sign from now on
      (give the consumer the new secret)
      callbacks keys sink retire hooks 3f9c2a  # the old one, once every consumer moved

    \b
    Example:
      callbacks keys sink list --config /etc/avatar-callbacks/callbacks.toml
    """


def _http_sink_or_fail(config: Config, name: str) -> SinkConfig:
    for sink in config.sinks:
        if sink.name == name:
            if sink.engine != "http":
                fail(f"sink {name!r} is a {sink.engine} sink: only HTTP sinks sign messages")
            return sink
    known = ", ".join(s.name for s in config.sinks if s.engine == "http") or "none"
    return fail(f"no HTTP sink named {name!r} in {config.source} (HTTP sinks: {known})")


def _secrets_or_fail(keyfile: KeyFile, name: str) -> tuple[str, ...]:
    try:
        return sink_secrets(keyfile, name)
    except KeyFileError as exc:
        fail(str(exc))


@sink_group.command("add", short_help="Add a signing secret to an HTTP sink (printed once).")
@config_option
@click.argument("name")
@click.option(
    "--secret",
    "secret_text",
    metavar="-",
    help="Read the whsec_ secret from stdin instead of generating one.",
)
@json_option
def add(config_path: str | None, name: str, secret_text: str | None, as_json: bool) -> None:
    """Add a signing secret to the HTTP sink NAME; it signs from the next message on.

    The sink's other secrets keep signing too, so consumers verify with either. A generated
    secret is printed once: store it where the consumer reads it.

    \b
    Example:
      callbacks keys sink add hooks
      printf '%s\\n' "$SECRET" | callbacks keys sink add hooks --secret -
    """
    config = load_config_or_fail(config_path)
    _http_sink_or_fail(config, name)
    if secret_text not in (None, "-"):
        raise click.UsageError("--secret takes `-` (read from stdin), never the secret itself")
    secret = generate_secret() if secret_text is None else sys.stdin.read().strip()
    try:
        secret_bytes(secret)
    except KeyFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--secret") from None

    def change(keys: KeyFile) -> KeyFile:
        current = sink_secrets(keys, name)
        if secret in current:
            raise KeyFileError(f"sink {name!r} already has secret {secret_id(secret)}")
        return with_sink_secrets(keys, name, (secret, *current))

    _, after = update_key_file(config, change, missing_ok=True)
    count = len(sink_secrets(after, name))
    shown = secret if secret_text is None else None
    if as_json:
        echo_json({"sink": name, "id": secret_id(secret), "secret": shown, "signing": count})
        return
    if shown is not None:
        click.echo(shown)
    click.echo(
        f"sink {name!r}: secret {secret_id(secret)} added; {count} secret(s) sign each message",
        err=True,
    )
    if count > 1:
        click.echo(
            f"once every consumer uses it: callbacks keys sink retire {name} OLD_ID", err=True
        )
    reload_hint(config)


@sink_group.command("retire")
@config_option
@click.argument("name")
@click.argument("id_prefix", metavar="ID")
def retire(config_path: str | None, name: str, id_prefix: str) -> None:
    """Stop signing NAME's messages with the secret whose id starts with ID.

    \b
    Example:
      callbacks keys sink retire hooks 8b1e07
    """
    config = load_config_or_fail(config_path)
    _http_sink_or_fail(config, name)

    def change(keys: KeyFile) -> KeyFile:
        current = sink_secrets(keys, name)
        matches = [s for s in current if secret_id(s).startswith(id_prefix)]
        if len(matches) != 1:
            what = "no secret" if not matches else "several secrets"
            raise KeyFileError(f"sink {name!r} has {what} with id {id_prefix!r}")
        if len(current) == 1:
            raise KeyFileError(
                f"{secret_id(matches[0])} is sink {name!r}'s only secret: add its successor first"
            )
        return with_sink_secrets(keys, name, [s for s in current if s != matches[0]])

    update_key_file(config, change)
    click.echo(f"sink {name!r}: secret retired", err=True)
    reload_hint(config)


@sink_group.command("list")
@config_option
@json_option
def list_secrets(config_path: str | None, as_json: bool) -> None:
    """Show each HTTP sink's signing secrets by id, newest first.

    \b
    Example:
      callbacks keys sink list
    """
    config = load_config_or_fail(config_path)
    keyfile = read_keys_or_fail(config, missing_ok=True)
    rows: list[dict[str, str]] = [
        {"sink": sink.name, "id": secret_id(secret), "order": "newest" if i == 0 else ""}
        for sink in config.sinks
        if sink.engine == "http"
        for i, secret in enumerate(_secrets_or_fail(keyfile, sink.name))
    ]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no HTTP sink has a signing secret", err=True)
        return
    table = [[r["sink"], r["id"], r["order"]] for r in rows]
    click.echo(format_table(["SINK", "ID", ""], table))


def register(main: click.Group) -> None:
    """Under ``callbacks keys`` where that group exists, else as ``callbacks sink``."""
    keys = main.commands.get("keys")
    (keys if isinstance(keys, click.Group) else main).add_command(sink_group)
