"""``callbacks keys metastudio ...``: the MetaStudio API credentials, kept in the key file.

Confirmation asks the MetaStudio API about each job, signed with an AK/SK pair (or an IAM
token). They are looked for in this order: the environment (``CALLBACKS_METASTUDIO_AK`` and
``_SK``, or ``_TOKEN``), the key file's ``[metastudio_api]`` table (what these commands manage),
then the legacy ``credentials_file`` of ``[metastudio_api]`` in the config. The secret half is
read from a hidden prompt or stdin, never from the command line, and never printed: ``show``
gives the AK masked and the SK or token as a fingerprint only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from callbacks.cli._support import (
    config_option,
    echo_json,
    fail,
    fail_after_report,
    format_table,
    json_option,
    load_config_or_fail,
    update_keys_or_fail,
)
from callbacks.config import Config
from callbacks.confirm.credentials import (
    KEY_FILE_TABLE,
    AkSk,
    Credentials,
    IamToken,
    check_credential,
    masked_ak,
    with_key_file_credentials,
)
from callbacks.confirm.errors import ApiConfigurationError
from callbacks.confirm.settings import (
    FoundCredentials,
    credentials_file_found,
    environment_credentials,
    key_file_found,
)
from callbacks.keyfile import KeyFile
from verify import key_id


@click.group("metastudio", short_help="Store, show and remove the MetaStudio API credentials.")
def metastudio_group() -> None:
    """The MetaStudio API credentials confirmation signs its job queries with.

    \b
    They are looked for in this order; the first source that has any is used:
      1. the environment: CALLBACKS_METASTUDIO_AK + CALLBACKS_METASTUDIO_SK, or
         CALLBACKS_METASTUDIO_TOKEN
      2. the key file's [metastudio_api] table (these commands)
      3. [metastudio_api] credentials_file in the config (legacy)

    \b
    Example:
      callbacks keys metastudio set --ak "$AK"        # the SK from a hidden prompt
      printf '%s\\n' "$SK" | callbacks keys metastudio set --ak "$AK"
      callbacks keys metastudio show
    """


def _read_secret(name: str) -> str:
    """The secret from a hidden prompt (a terminal) or the first line of stdin (a pipe)."""
    if sys.stdin.isatty():
        value: str = click.prompt(name, hide_input=True, err=True)
        return value
    return sys.stdin.readline().rstrip("\r\n")


def _checked(name: str, value: str, where: str) -> str:
    try:
        return check_credential(name, value, where)
    except ApiConfigurationError as exc:
        fail(exc.detail)


@metastudio_group.command("set", short_help="Store the API's AK/SK (or IAM token) in the key file.")
@config_option
@click.option("--ak", metavar="AK", help="The access key id (AK); the SK is then read privately.")
@click.option(
    "--token", "use_token", is_flag=True, help="Store an IAM token instead (read privately)."
)
def set_credentials(config_path: str | None, ak: str | None, use_token: bool) -> None:
    """Store the MetaStudio API credentials in the key file's [metastudio_api] table.

    The SK (or, with --token, the token) is read from a hidden prompt, or from the first line
    of stdin when it is not a terminal: never from the command line, where shell history and
    `ps` would keep it. It replaces whatever credentials the key file held.

    \b
    Example:
      callbacks keys metastudio set --ak "$AK"
      printf '%s\\n' "$SK" | callbacks keys metastudio set --ak "$AK"
      printf '%s\\n' "$TOKEN" | callbacks keys metastudio set --token
    """
    if (ak is None) == (not use_token):
        raise click.UsageError("pass exactly one of --ak AK or --token")
    config = load_config_or_fail(config_path)
    credentials: Credentials
    if ak is not None:
        ak = _checked("ak", ak, "--ak")
        credentials = AkSk(ak, _checked("sk", _read_secret("SK"), "the SK read"))
    else:
        credentials = IamToken(_checked("token", _read_secret("Token"), "the token read"))

    def change(keys: KeyFile) -> KeyFile:
        return with_key_file_credentials(keys, credentials)

    update_keys_or_fail(config, change, missing_ok=True)
    click.echo(f"stored {_describe(credentials)} in {config.keys.file} [{KEY_FILE_TABLE}]")
    if config.confirmation.api is None:
        click.echo(f"note: {config.source} has no [{KEY_FILE_TABLE}] table yet", err=True)
    _warn_if_overridden(config)
    _reload_hint()


@metastudio_group.command("remove", short_help="Remove the API credentials from the key file.")
@config_option
def remove_credentials(config_path: str | None) -> None:
    """Remove the key file's [metastudio_api] table.

    A running receiver keeps signing with the credentials it has until a source gives it new
    ones (the environment, or a legacy credentials_file) or it restarts.

    \b
    Example:
      callbacks keys metastudio remove
    """
    config = load_config_or_fail(config_path)
    before, _ = update_keys_or_fail(
        config, lambda keys: with_key_file_credentials(keys, None), missing_ok=True
    )
    if KEY_FILE_TABLE not in before.sections:
        click.echo(f"{config.keys.file} holds no MetaStudio API credentials", err=True)
        return
    click.echo(f"removed the MetaStudio API credentials from {config.keys.file}")
    _warn_if_overridden(config)


@metastudio_group.command("show", short_help="Where the API credentials come from, masked.")
@config_option
@json_option
def show_credentials(config_path: str | None, as_json: bool) -> None:
    """Show each place credentials are looked for, in order, and which one is used.

    The AK is shown masked and the SK or token only as a fingerprint (a short hash that tells
    two apart and gives nothing away). Exits 1 when no source gives usable credentials.

    \b
    Example:
      callbacks keys metastudio show
      callbacks keys metastudio show --json
    """
    config = load_config_or_fail(config_path)
    rows = _sources(config)
    # The receiver takes the first source that has anything: a broken one stops it there.
    first = next((r for r in rows if r["kind"] is not None or r["error"]), None)
    in_use = first["source"] if first is not None and not first["error"] else None
    for row in rows:
        row["in_use"] = row["source"] == in_use
    problem = None
    if first is not None and first["error"]:
        problem = f"the receiver would refuse its credentials ({first['source']}): {first['error']}"
    elif in_use is None:
        problem = (
            "no usable MetaStudio API credentials: run `callbacks keys metastudio set --ak AK`"
        )
    if as_json:
        echo_json({"in_use": in_use, "api_configured": config.confirmation.api is not None,
                   "sources": rows, "error": problem})  # fmt: skip
    else:
        _print_sources(rows)
    if config.confirmation.api is None:
        click.echo(
            f"note: {config.source} has no [metastudio_api] table: nothing confirms with these",
            err=True,
        )
    if problem is not None:
        fail_after_report(problem)


def _sources(config: Config) -> list[dict[str, Any]]:
    api = config.confirmation.api
    lookups: list[tuple[str, str, Callable[[], FoundCredentials | None]]] = [
        ("environment", "CALLBACKS_METASTUDIO_*", lambda: environment_credentials(os.environ)),
        ("key_file", str(config.keys.file), lambda: key_file_found(config.keys.file)),
    ]
    if api is not None and api.credentials_file is not None:
        lookups.append(
            ("credentials_file", str(api.credentials_file), lambda: credentials_file_found(api))
        )
    return [_source_row(source, where, lookup) for source, where, lookup in lookups]


def _source_row(
    source: str, where: str, lookup: Callable[[], FoundCredentials | None]
) -> dict[str, Any]:
    row: dict[str, Any] = {"source": source, "where": where, "kind": None, "ak": None,
                           "secret_id": None, "error": None}  # fmt: skip
    try:
        found = lookup()
    except ApiConfigurationError as exc:  # its text names fields and paths, never values
        row["error"] = str(exc)
        return row
    if found is None:
        return row
    row["where"] = found.where
    credentials = found.credentials
    if isinstance(credentials, AkSk):
        row.update(kind="ak_sk", ak=masked_ak(credentials.ak), secret_id=key_id(credentials.sk))
    else:
        row.update(kind="token", secret_id=key_id(credentials.token))
    return row


def _print_sources(rows: list[dict[str, Any]]) -> None:
    table = []
    for order, row in enumerate(rows, 1):
        if row["error"]:
            what = f"error: {row['error']}"
        elif row["kind"] == "ak_sk":
            what = f"AK {row['ak']}, SK *** (id {row['secret_id']})"
        elif row["kind"] == "token":
            what = f"IAM token *** (id {row['secret_id']})"
        else:
            what = "not set"
        used = "in use" if row["in_use"] else ""
        table.append([str(order), row["source"], row["where"], what, used])
    click.echo(format_table(["#", "SOURCE", "WHERE", "CREDENTIALS", ""], table))


def _describe(credentials: Credentials) -> str:
    if isinstance(credentials, AkSk):
        return f"AK {masked_ak(credentials.ak)} with its SK (id {key_id(credentials.sk)})"
    return f"an IAM token (id {key_id(credentials.token)})"


def _warn_if_overridden(config: Config) -> None:
    try:
        env = environment_credentials(os.environ)
    except ApiConfigurationError:
        env = None
    if env is not None:
        click.echo(
            f"note: {env.where} set in this environment win over the key file wherever they "
            "are set for the receiver too",
            err=True,
        )


def _reload_hint() -> None:
    click.echo(
        "a running receiver signs with them from its next API request (it re-reads the key "
        "file when it changes)",
        err=True,
    )


def register(main: click.Group) -> None:
    """Under ``callbacks keys``."""
    keys = main.commands.get("keys")
    (keys if isinstance(keys, click.Group) else main).add_command(metastudio_group)
