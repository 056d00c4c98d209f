"""What every ``callbacks`` command shares: finding the config, opening the store, failing
clearly, and parsing and printing moments, durations, tables and JSON."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import orjson

from callbacks.config import CONFIG_ENV, Config, RouteConfig, load_config
from callbacks.devsetup import DEV_CONFIG
from callbacks.durations import DURATION
from callbacks.durations import parse_duration as parse_duration  # the CLI's, re-exported
from callbacks.errors import ConfigError, KeyFileError, StoreUnavailable
from callbacks.keyfile import KeyEntry, KeyFile, read_key_file, update_key_file
from callbacks.store import EVENT_STATUSES, Store, open_store, sqlite_path

CONFIG_HELP = "Config file (default: $CALLBACKS_CONFIG, else ./.avatar-callbacks/callbacks.toml)."


def fail(message: str, *, code: str = "failed") -> NoReturn:
    """Report a failed operation (exit 1): one clear line on stderr, or under ``--json`` the
    error as JSON on stdout, where the script reading the command's output looks for it."""
    if json_requested():
        echo_error_json(code, message)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def fail_after_report(message: str) -> NoReturn:
    """Exit 1 once the command has printed its report (its JSON, under ``--json``, says what
    failed): the reason goes to stderr only, so stdout stays one JSON document."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def json_requested() -> bool:
    """Whether the running command (or a group above it) was given ``--json``."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json"):
            return True
        ctx = ctx.parent
    return False


def echo_error_json(code: str, message: str) -> None:
    click.echo(orjson.dumps({"ok": False, "error": {"code": code, "message": message}}).decode())


def resolve_config_path(path: str | None) -> Path | None:
    if path:
        return Path(path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    if DEV_CONFIG.exists():
        return DEV_CONFIG
    return None


def load_config_or_fail(path: str | None) -> Config:
    resolved = resolve_config_path(path)
    if resolved is None:
        fail(
            "no config: pass --config PATH, set CALLBACKS_CONFIG, or run `callbacks serve` once "
            "to create the development setup"
        )
    try:
        return load_config(resolved.resolve())
    except ConfigError as exc:
        fail(str(exc))


def store_for(config: Config) -> Store:
    return open_store(config.store.url, base_dir=config.base_dir)


def missing_sqlite_file(config: Config) -> Path | None:
    """The SQLite store's file if the config names one that does not exist yet, else None."""
    if not config.store.is_sqlite:
        return None
    path = sqlite_path(config.store.url, base_dir=config.base_dir)
    return None if path.exists() else path


def run_with_store(config: Config, operation: Any, *, upgrade: bool = False) -> Any:
    """Open the store, run ``await operation(store)``, close it; store errors exit 1."""

    async def main() -> Any:
        store = store_for(config)
        try:
            if upgrade:
                await store.upgrade()
            else:
                await store.open()
            return await operation(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except StoreUnavailable as exc:
        fail(str(exc))


async def open_only(store: Store) -> None:
    """An operation for :func:`run_with_store` that only opens (or upgrades) the store."""
    return


config_option = click.option(
    "--config", "config_path", metavar="PATH", default=None, help=CONFIG_HELP
)


def parse_moment(text: str, *, now: datetime, ahead: bool) -> datetime:
    """An ISO date or date-time (UTC unless it names a zone), or a duration from ``now``.

    ``ahead`` says which way a duration counts: ``7d`` is a week from now for a deadline, a week
    ago for ``--since`` and ``--before``.
    """
    text = text.strip()
    if DURATION.match(text):
        delta = timedelta(seconds=parse_duration(text))
        return now + delta if ahead else now - delta
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        direction = "from now" if ahead else "ago"
        raise ValueError(
            f"{text!r} is neither a date (2026-12-01, 2026-12-01T08:00:00Z) nor a duration "
            f"{direction} (30m, 24h, 7d)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


if TYPE_CHECKING:  # click >= 8.2 types ParamType's value; older clicks are not generic
    _IntParam = click.ParamType[int, Any]
    _MomentParam = click.ParamType[datetime, Any]
else:
    _IntParam = _MomentParam = click.ParamType


class DurationType(_IntParam):
    """A click parameter holding a duration in whole seconds (``30m``, ``24h``, ``7d``)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class MomentType(_MomentParam):
    """A click parameter holding a UTC moment: a date, a date-time, or a duration ago/ahead."""

    name = "date"

    def __init__(self, *, ahead: bool) -> None:
        self.ahead = ahead

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_moment(str(value), now=datetime.now(UTC), ahead=self.ahead)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def ago(seconds: float) -> str:
    """A short human span: ``45s``, ``12m``, ``5h``, ``3d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")

# The event filters the commands that read the inbox share (list, tail, forward).
route_filter_option = click.option(
    "--route", "route_name", metavar="ROUTE", help="Only this route's events."
)
since_option = click.option(
    "--since",
    type=MomentType(ahead=False),
    help="Only events received since: a date (2026-12-01) or a duration ago (1h, 7d).",
)


def status_filter_option(help: str = "Only events in this state.") -> Callable[[Any], Any]:
    return click.option("--status", type=click.Choice(EVENT_STATUSES), help=help)


def limit_option(default: int, help: str) -> Callable[[Any], Any]:
    return click.option(
        "--limit", type=click.IntRange(1, 100_000), default=default, show_default=True, help=help
    )


def route_or_fail(config: Config, name: str) -> RouteConfig:
    try:
        return config.route(name)
    except KeyError as exc:
        fail(f"{exc.args[0]}; routes are defined in {config.source}")


def read_keys_or_fail(config: Config, *, missing_ok: bool = False) -> KeyFile:
    try:
        return read_key_file(config.keys.file, missing_ok=missing_ok)
    except KeyFileError as exc:
        fail(str(exc))


def default_target(config: Config, route: RouteConfig) -> str:
    """Where a local receiver serving ``config`` takes ``route``'s callbacks."""
    host = config.server.host
    if host in ("0.0.0.0", ""):  # noqa: S104 - we connect to it, not bind it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}{route.path}"


def primary_or_fail(config: Config, route: RouteConfig) -> KeyEntry:
    entry = read_keys_or_fail(config).primary(route.name)
    if entry is None:
        fail(
            f"route {route.name!r} has no primary key in {config.keys.file}: "
            f"add one with `callbacks keys add {route.name} --generate`"
        )
    return entry


def update_keys_or_fail(
    config: Config, change: Callable[[KeyFile], KeyFile], *, missing_ok: bool = False
) -> tuple[KeyFile, KeyFile]:
    """:func:`callbacks.keyfile.update_key_file` on the config's key file; failures exit 1."""
    try:
        return update_key_file(config.keys.file, change, missing_ok=missing_ok)
    except KeyFileError as exc:
        fail(str(exc))


def reload_hint(config: Config) -> None:
    click.echo(
        f"wrote {config.keys.file}; a running receiver loads it within "
        f"{config.keys.reload_interval:g}s (at once on SIGHUP) and logs `keys_loaded` with the ids",
        err=True,
    )


class JsonErrorsGroup(click.Group):
    """The top-level group: with ``--json`` anywhere on the command line, click's own errors
    (a bad option, a missing argument, an interrupted prompt) are JSON on stdout too, so a script
    never has to parse two formats."""

    def main(self, args: Sequence[str] | None = None, *pos: Any, **kwargs: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        wants_json = "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv
        if not wants_json or kwargs.get("standalone_mode") is False:
            return super().main(args, *pos, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            result = super().main(argv, *pos, **kwargs)
        except click.UsageError as exc:
            echo_error_json("usage", exc.format_message())
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            echo_error_json("failed", exc.format_message())
            sys.exit(exc.exit_code)
        except click.Abort:
            echo_error_json("aborted", "aborted")
            sys.exit(1)
        # Without standalone mode click returns ctx.exit()'s code instead of exiting with it.
        sys.exit(result if isinstance(result, int) else 0)
