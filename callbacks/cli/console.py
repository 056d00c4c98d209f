"""``callbacks events tail`` (follow new events as they arrive) and ``callbacks config check``
(validate a config and its key file for CI, without starting anything)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click
import orjson

from callbacks.cli._support import (
    config_option,
    echo_json,
    fail,
    json_option,
    load_config_or_fail,
    route_filter_option,
    status_filter_option,
)
from callbacks.config import Config, load_config
from callbacks.errors import CallbacksError, StoreUnavailable
from callbacks.event_view import iso
from callbacks.store import EventFilter, Store, StoredEvent, open_store

_PAGE = 500
# With --status an event can reach the state long after it arrived (dead after its retries): each
# poll looks again at events received this long before, or since the tail started if later.
_STATUS_WINDOW = 3600.0
_COLOURS = {"delivered": "green", "dead": "red", "pending": "yellow", "duplicate": "bright_black"}


# --------------------------------------------------------------------------- events tail


class Tail:
    """New events, oldest first, each once. Without a status filter, a cursor on the id (ids
    sort by arrival); with one, the events of a recent window not yet shown in that status."""

    def __init__(self, route: str | None, status: str | None, started: float) -> None:
        self.route = route
        self.status = status
        self.started = started
        self.cursor: str | None = None
        self.shown: dict[str, float] = {}

    async def start(self, store: Store) -> None:
        newest = await store.list_events(EventFilter(route=self.route, limit=1))
        self.cursor = newest[0].id if newest else None

    async def poll(self, store: Store, now: float) -> list[StoredEvent]:
        since = None if self.status is None else max(self.started, now - _STATUS_WINDOW)
        found: list[StoredEvent] = []
        before = None
        while True:
            page = await store.list_events(
                EventFilter(
                    route=self.route,
                    status=self.status,
                    since=since,
                    after_id=self.cursor if self.status is None else None,
                    before_id=before,
                    limit=_PAGE,
                )
            )
            found += [e for e in page if e.id not in self.shown]
            if len(page) < _PAGE:
                break
            before = page[-1].id
        found.sort(key=lambda e: e.id)
        if found and self.status is None:
            self.cursor = found[-1].id
        if self.status is not None:
            self.shown.update((e.id, e.received_at) for e in found)
            horizon = now - 2 * _STATUS_WINDOW
            self.shown = {i: at for i, at in self.shown.items() if at >= horizon}
        return found


def _line(event: StoredEvent, colour: bool) -> str:
    from callbacks.admin.queries import job_ids

    status = event.status.ljust(9)
    if colour:
        status = click.style(status, fg=_COLOURS.get(event.status), bold=event.status == "dead")
    jobs = ",".join(job_ids(event)) or "-"
    error = f"  {event.last_error}" if event.last_error else ""
    return (
        f"{iso(event.received_at)}  {status}  {event.route:<16} {event.event_type:<24} "
        f"{event.id}  job={jobs}{error}"
    )


def _json_line(event: StoredEvent) -> str:
    from callbacks.admin.queries import summary

    return orjson.dumps(summary(event)).decode()


async def _follow(
    config: Config, tail: Tail, interval: float, emit: Callable[[StoredEvent], None]
) -> None:
    store = open_store(config.store.url, base_dir=config.base_dir)
    await store.open()
    try:
        await tail.start(store)
        which = " ".join(
            f"{name} {value}"
            for name, value in (("route", tail.route), ("status", tail.status))
            if value
        )
        click.echo(
            f"following new events{' (' + which + ')' if which else ''}; Ctrl-C stops", err=True
        )
        while True:
            for event in await tail.poll(store, time.time()):
                emit(event)
            await asyncio.sleep(interval)
    finally:
        await store.close()


@click.command("tail")
@config_option
@route_filter_option
@status_filter_option("Only events that reach this state (dead: as their last retry fails).")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 60),
    default=0.5,
    show_default=True,
    help="Seconds between looks at the store.",
)
@json_option
def tail_events(
    config_path: str | None,
    route_name: str | None,
    status: str | None,
    interval: float,
    as_json: bool,
) -> None:
    """Follow new events as they arrive, one line each (Ctrl-C stops).

    On a terminal the lines are coloured by status; with --json, one JSON object per line.
    Bodies are never printed (`callbacks events show ID` shows one, masked).

    \b
    Example:
      callbacks events tail --route sensetime
      callbacks events tail --status dead --json | jq -r .id
    """
    config = load_config_or_fail(config_path)
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")

    def emit(event: StoredEvent) -> None:
        click.echo(_json_line(event) if as_json else _line(event, colour))

    follower = Tail(route_name, status, time.time())
    try:
        asyncio.run(_follow(config, follower, interval, emit))
    except KeyboardInterrupt:
        return
    except StoreUnavailable as exc:
        fail(str(exc))


# --------------------------------------------------------------------------- config check


def check_config(path: str) -> dict[str, Any]:
    """Everything ``callbacks serve`` checks before it starts, short of the store's server:
    the config, the key file, the handler modules, the sinks, a key per route, the console's
    token, the confirmers and the MetaStudio API credentials. Raises CallbacksError with one
    line for the first problem."""
    from callbacks.handlers import load_handlers
    from callbacks.keyfile import read_key_file
    from callbacks.sinks.delivery import check_sinks

    config = load_config(path)
    keyfile = read_key_file(config.keys.file)
    load_handlers(config.handler_modules)
    check_sinks(config)
    now = time.time()
    keyless = [
        r.name
        for r in config.routes
        if not r.allow_unsigned and not keyfile.ring(r.name).verifying_keys(now)
    ]
    if keyless:
        raise CallbacksError(
            f"{config.keys.file}: no verifying key for route(s) {', '.join(keyless)}: "
            "add one with `callbacks keys add ROUTE --generate`"
        )
    from callbacks.confirm.credentials import key_file_credentials
    from callbacks.confirm.gate import check_confirmation

    key_file_credentials(keyfile)  # a malformed [metastudio_api] table, even one not in use
    check_confirmation(config, os.environ)
    if config.admin is not None:
        from callbacks.admin.auth import load_tokens

        load_tokens(keyfile, os.environ)
    return {
        "ok": True,
        "config": config.source,
        "routes": [r.name for r in config.routes],
        "store": config.store.url.split("://", 1)[0],
        "sinks": [s.name for s in config.sinks],
        "console": config.admin.listen if config.admin else None,
    }


@click.group("config")
def config_group() -> None:
    """Check configuration files."""


@config_group.command("check")
@config_option
@json_option
def config_check(config_path: str | None, as_json: bool) -> None:
    """Validate a config and its key file without starting anything (for CI).

    Exits 0 when `callbacks serve` would start with them, else 1 with the first problem.

    \b
    Example:
      callbacks config check --config deploy/callbacks.toml
      callbacks config check --json
    """
    from callbacks.cli._support import resolve_config_path

    resolved = resolve_config_path(config_path)
    try:
        if resolved is None:
            raise CallbacksError("no config: pass --config PATH or set CALLBACKS_CONFIG")
        report = check_config(str(resolved))
    except CallbacksError as exc:
        fail(str(exc), code="config_invalid")
    if as_json:
        echo_json(report)
        return
    console = f", console on {report['console']}" if report["console"] else ""
    click.echo(
        f"config ok: {report['config']} ({len(report['routes'])} route(s), "
        f"{report['store']} store, {len(report['sinks'])} sink(s){console})"
    )


def register(main: click.Group) -> None:
    events = main.commands.get("events")
    if isinstance(events, click.Group):
        events.add_command(tail_events)
    main.add_command(config_group)
