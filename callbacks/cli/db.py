"""``callbacks db ...``: the store's schema."""

from __future__ import annotations

import click

from callbacks.cli._support import config_option, load_config_or_fail, open_only, run_with_store


@click.group()
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
    run_with_store(config, open_only, upgrade=True)
    click.echo(f"schema up to date ({config.store.url.split('://', 1)[0]})")


def register(main: click.Group) -> None:
    main.add_command(db)
