"""The long-running processes: ``callbacks serve`` (the receiver) and ``callbacks dispatch`` (the
delivery side alone). Both check what users get wrong most before they start."""

from __future__ import annotations

import shlex
import sys
from dataclasses import replace
from pathlib import Path

import click

from callbacks.cli._support import (
    config_option,
    default_target,
    fail,
    load_config_or_fail,
    open_only,
    resolve_config_path,
    run_with_store,
)
from callbacks.config import Config, RouteConfig, load_config
from callbacks.devsetup import ensure_dev_setup
from callbacks.errors import ConfigError, KeyFileError
from callbacks.store import Store


@click.command()
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
    if resolved is None:
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
    config = replace(config, server=server)
    _check_startable(config)
    _print_banner(config)
    run(config)


@click.command()
@config_option
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.01, 60),
    default=None,
    help="Seconds between looks at the store for new events, the most a new event waits "
    "(overrides [dispatch] poll_interval).",
)
@click.option(
    "--listen",
    metavar="HOST:PORT",
    default=None,
    help="Also serve /healthz, /readyz and /metrics here, for probes and Prometheus "
    "(off by default: the process answers nothing).",
)
def dispatch(config_path: str | None, poll_interval: float | None, listen: str | None) -> None:
    """Deliver stored events in a process of its own, with no HTTP listener.

    Runs the handlers, sinks, confirmation and reconciliation for events that receivers with
    `[dispatch] enabled = false` stored, so their processes only verify and store. Several
    may run on one store: a lease keeps each event to one of them at a time. Stops on
    SIGTERM/SIGINT once running handlers finish (up to their timeout).

    \b
    Example:
      callbacks dispatch --config /etc/avatar-callbacks/callbacks.toml --listen 127.0.0.1:9101
    """
    from callbacks.dispatch.listener import ListenerUnavailable, parse_listen
    from callbacks.server import run_dispatcher

    config = load_config_or_fail(config_path)
    if listen is not None:
        try:
            parse_listen(listen)
        except ListenerUnavailable as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
    if poll_interval is not None:
        config = replace(config, dispatch=replace(config.dispatch, poll_interval=poll_interval))
    _check_deliverable(config)
    if config.dispatch.enabled:
        click.echo(
            "note: receivers started with this config dispatch too ([dispatch] enabled = true); "
            "set it to false in theirs to keep delivery out of their processes",
            err=True,
        )
    click.echo(
        f"avatar-callbacks dispatcher on {_store_label(config)} (config: {config.source}), "
        f"looking for new events every {config.dispatch.poll_interval:g} s",
        err=True,
    )
    run_dispatcher(config, listen)


def _store_label(config: Config) -> str:
    # Not the URL: a PostgreSQL URL may hold a password.
    return "the SQLite store" if config.store.is_sqlite else "the PostgreSQL store"


def _check_startable(config: Config) -> None:
    """Fail before uvicorn starts, with one line, for the mistakes users make most."""
    _check_deliverable(config)
    if config.store.is_sqlite:
        # The embedded schema comes with the file: created or migrated here, once, before the
        # workers start (not by N of them at once). If no other receiver serves the file, the
        # claims a crashed run left are released now too (see SQLiteStore.recover).
        run_with_store(config, _recover, upgrade=True)
    else:
        # A shared database is migrated on purpose, once (`callbacks db upgrade`).
        run_with_store(config, open_only)


def _check_deliverable(config: Config) -> None:
    """The key file, the handler modules, the sinks' extras and the confirmation settings."""
    from callbacks.confirm.gate import check_confirmation
    from callbacks.errors import CallbacksError, HandlerLoadError
    from callbacks.handlers import load_handlers
    from callbacks.keyfile import read_key_file
    from callbacks.sinks.delivery import check_sinks

    try:
        read_key_file(config.keys.file)
        load_handlers(config.handler_modules, config_dir=config.base_dir)
        check_sinks(config)
        check_confirmation(config)
    except (KeyFileError, HandlerLoadError, CallbacksError) as exc:
        fail(str(exc))


async def _recover(store: Store) -> None:
    await store.recover()


def _print_banner(config: Config) -> None:
    base = f"http://{config.server.host}:{config.server.port}"
    click.echo(f"avatar-callbacks receiver on {base}  (config: {config.source})", err=True)
    for route in config.routes:
        click.echo(f"  POST {route.path:<34} {route.describe}", err=True)
        click.echo(f"       signed for {route.public_url}", err=True)
    if not config.dispatch.enabled:
        click.echo(
            "  [dispatch] enabled = false: callbacks are stored, and delivered by "
            "`callbacks dispatch` with this config",
            err=True,
        )
    if config.routes:
        click.echo("\nSend a correctly signed test callback from another terminal:", err=True)
        click.echo(f"  {simulate_command(config, config.routes[0])}\n", err=True)


def simulate_command(config: Config, route: RouteConfig) -> str:
    """A ``callbacks simulate`` line that works pasted as it is into another terminal: from any
    folder, without the virtual environment active, without this shell's environment."""
    args = [*_this_command(), "simulate", route.name, "--config", config.source]
    target = default_target(config, route)
    try:
        as_written = default_target(load_config(config.source, env={}), route)
    except ConfigError:
        as_written = None
    if target != as_written:  # --port, --host or CALLBACKS_PORT chose another address
        args += ["--url", target]
    return shlex.join(args)


def _this_command() -> list[str]:
    """How to run the ``callbacks`` that is running now, by absolute path."""
    script = Path(sys.argv[0])
    if script.name == "callbacks" and script.is_file():
        return [str(script.absolute())]
    beside = Path(sys.executable).parent / "callbacks"  # the interpreter's (venv's) scripts
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-m", "callbacks.cli"]


def register(main: click.Group) -> None:
    main.add_command(serve)
    main.add_command(dispatch)
