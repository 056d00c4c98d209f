"""The ``callbacks`` command line: serve, db, and the operator commands.

Exit codes: 0 ok, 1 the operation failed, 2 usage error (click's own). Every command finds the
config the same way: ``--config``, else ``CALLBACKS_CONFIG``, else the development setup in
``./.avatar-callbacks/`` if there is one.
"""

from __future__ import annotations

from dataclasses import replace

import click

from callbacks import cli_console, cli_events, cli_keys, cli_simulate, cli_sinks
from callbacks.cli_support import (
    config_option,
    fail,
    load_config_or_fail,
    resolve_config_path,
    run_with_store,
)
from callbacks.config import Config
from callbacks.devsetup import ensure_dev_setup
from callbacks.errors import KeyFileError
from callbacks.store import Store


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="avatar-callbacks")
def main() -> None:
    """Receive, verify and deliver SenseTime SoftSugar and Huawei MetaStudio callbacks.

    \b
    Start here:
      callbacks serve                      # development setup, no config needed
      callbacks simulate sensetime         # send it a correctly signed callback
      callbacks events list                # what arrived, and what the handlers did
    """


@main.command()
@config_option
@click.option("--host", default=None, help="Interface to bind (overrides [server] host).")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Port to bind.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes.")
def serve(config_path: str | None, host: str | None, port: int | None, workers: int | None) -> None:
    """Run the receiver.

    With no config at all, creates and runs a development setup in ./.avatar-callbacks/
    (SQLite, generated keys, one SenseTime and one MetaStudio route).

    \b
    Example:
      callbacks serve --config /etc/avatar-callbacks/callbacks.toml --workers 1
    """
    from callbacks.server import run

    resolved = resolve_config_path(config_path)
    dev = resolved is None
    if dev:
        try:
            resolved = ensure_dev_setup(port=port or 8000)
        except (OSError, KeyFileError) as exc:
            fail(f"cannot create the development setup: {exc}")
    assert resolved is not None
    config = load_config_or_fail(str(resolved))
    server = config.server
    server = replace(
        server,
        host=host or server.host,
        port=port or server.port,
        workers=workers or server.workers,
    )
    if server.workers > 1 and config.store.is_sqlite:
        fail("the SQLite store takes one worker process; use a postgresql:// store for several")
    config = replace(config, server=server)
    _check_startable(config)
    _print_banner(config, dev=dev)
    run(config)


def _check_startable(config: Config) -> None:
    """Fail before uvicorn starts, with one line, for the mistakes users make most."""
    from callbacks.errors import ConfigError, HandlerLoadError
    from callbacks.handlers import load_handlers
    from callbacks.keyfile import read_key_file
    from callbacks.sinks.delivery import check_sinks

    try:
        read_key_file(config.keys.file)
        load_handlers(config.handler_modules)
        check_sinks(config)
    except (KeyFileError, HandlerLoadError, ConfigError) as exc:
        fail(str(exc))
    if not config.store.is_sqlite:
        # SQLite creates its schema at start; a shared database is migrated on purpose, once.
        run_with_store(config, _nothing)


async def _nothing(store: Store) -> None:
    return None


def _print_banner(config: Config, *, dev: bool) -> None:
    base = f"http://{config.server.host}:{config.server.port}"
    click.echo(f"avatar-callbacks receiver on {base}  (config: {config.source})", err=True)
    for route in config.routes:
        click.echo(f"  POST {route.path:<34} {route.describe}", err=True)
        click.echo(f"       signed for {route.public_url}", err=True)
    if config.routes:
        first = config.routes[0]
        flag = "" if dev else f" --config {config.source}"
        click.echo("\nSend a correctly signed test callback from another terminal:", err=True)
        click.echo(f"  callbacks simulate {first.name}{flag}\n", err=True)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: str | None) -> None:
    """Create or migrate the store's schema (run once per release, before the receivers start).

    \b
    Example:
      callbacks db upgrade --config /etc/avatar-callbacks/callbacks.toml
    """
    config = load_config_or_fail(config_path)
    run_with_store(config, _nothing, upgrade=True)
    click.echo(f"schema up to date ({config.store.url.split('://', 1)[0]})")


for command_module in (cli_keys, cli_events, cli_simulate, cli_sinks, cli_console):
    command_module.register(main)
