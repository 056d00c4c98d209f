"""``callbacks keys ...``: rotate a route's keys one safe, visible step at a time.

The platforms' own guidance, and the order of the commands: ``add`` the new key to the receiver
(it verifies at once, as *next*), switch the platform to it, ``list`` to watch which key verifies
the callbacks, ``promote`` it, and ``retire`` the old one when nothing has used it for a while.

Key ids (fingerprints) are printed, never keys, with two exceptions: ``keys generate`` and
``keys add --generate`` print the fresh key once, because the operator must give it to the
platform. The rules are :mod:`callbacks.rotation`'s; the key file is rewritten by
:func:`callbacks.keyfile.update_key_file` (locked, atomic, owner and mode kept). The running
receiver polls it every ``keys.reload_interval`` seconds (and reloads at once on SIGHUP).
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

import click

from callbacks.cli._support import (
    DurationType,
    MomentType,
    ago,
    config_option,
    echo_json,
    fail,
    format_table,
    json_option,
    load_config_or_fail,
    missing_sqlite_file,
    read_keys_or_fail,
    reload_hint,
    route_or_fail,
    store_for,
    update_keys_or_fail,
)
from callbacks.config import PROVIDERS, Config
from callbacks.errors import KeyFileError, StoreUnavailable
from callbacks.event_view import iso
from callbacks.keyfile import KeyEntry, KeyFile
from callbacks.rotation import KeyStillInUse, add_key, check_key, check_retirable, generate_key_for
from callbacks.store import KeyUsage
from verify import InvalidKey, key_id


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds / 60:g}m"


def _read_key_option(value: str) -> str:
    if value != "-":
        return value
    return sys.stdin.readline().rstrip("\r\n")


# --------------------------------------------------------------------------- key usage


class _NoStoreYet(StoreUnavailable):
    """The SQLite file is not there: no receiver has run with this config yet."""


def load_key_usage(config: Config) -> dict[tuple[str, str], KeyUsage]:
    """When each key last verified a callback, from the store. Raises StoreUnavailable.

    A SQLite store that does not exist yet is not created here (opening it would, empty), and
    raises :class:`_NoStoreYet`: the receiver creates it at its first start.
    """
    missing = missing_sqlite_file(config)
    if missing is not None:
        raise _NoStoreYet(
            f"the SQLite store {missing} does not exist yet; `callbacks serve` creates it"
        )

    async def run() -> list[KeyUsage]:
        store = store_for(config)
        try:
            await store.open()
            return await store.key_usage(time.time())
        finally:
            await store.close()

    return {(u.route, u.key_id): u for u in asyncio.run(run())}


# --------------------------------------------------------------------------- commands


@click.group("keys")
def keys_group() -> None:
    """Rotate the keys each route verifies callbacks with.

    \b
    Rotation, step by step (the platforms' own guidance):
      callbacks keys add sensetime --generate        # new key verifies now, as `next`
      (paste the printed key into the platform console)
      callbacks keys list                            # watch: which key verifies callbacks?
      callbacks keys promote sensetime 3f9c2a        # new key primary, old one `previous`
      callbacks keys retire sensetime 8b1e07         # once the old key has gone quiet

    A running receiver picks up every change without a restart: it polls the key file every
    keys.reload_interval seconds (1 s by default) and reloads at once on SIGHUP, logging the
    new key ids (`keys_loaded`), never the keys.

    \b
    Example:
      callbacks keys list --config /etc/avatar-callbacks/callbacks.toml
    """


@keys_group.command("generate")
@config_option
@click.option("--route", "route_name", metavar="ROUTE", help="Follow this route's key rules.")
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    help="Follow this platform's key rules (default: a key both platforms accept).",
)
@json_option
def generate(
    config_path: str | None, route_name: str | None, provider: str | None, as_json: bool
) -> None:
    """Print a fresh random key; it is not stored anywhere.

    SenseTime AuthKeys are at most 32 characters with an uppercase letter, a lowercase letter and
    a digit; MetaStudio keys at most 32 characters. To generate and store a key in one step, use
    `callbacks keys add ROUTE --generate`.

    \b
    Example:
      callbacks keys generate --provider sensetime
    """
    if route_name and provider:
        raise click.UsageError("pass --route or --provider, not both")
    if route_name:
        provider = route_or_fail(load_config_or_fail(config_path), route_name).provider
    key = generate_key_for(provider)
    if as_json:
        echo_json({"key": key, "id": key_id(key), "provider": provider or "any"})
    else:
        click.echo(key)


@keys_group.command("add", short_help="Add a key to ROUTE as `next`: it verifies, not signs.")
@config_option
@click.argument("route_name", metavar="ROUTE")
@click.option(
    "--key",
    "key_text",
    metavar="K",
    help="The key to add; `-` reads it from stdin (keeps it out of shell history).",
)
@click.option("--generate", "gen", is_flag=True, help="Generate the key; it is printed once.")
@json_option
def add(
    config_path: str | None, route_name: str, key_text: str | None, gen: bool, as_json: bool
) -> None:
    """Add a key to ROUTE as `next`: it verifies callbacks at once, but does not sign yet.

    A route's first key becomes its primary key. With --generate the new key is printed once:
    give it to the platform (SenseTime console, or MetaStudio's callback_config.key), then
    promote it.

    \b
    Example:
      callbacks keys add sensetime --generate
      printf '%s\\n' "$NEW_KEY" | callbacks keys add metastudio-video --key -
    """
    if (key_text is None) == (not gen):
        raise click.UsageError("pass exactly one of --key K or --generate")
    config = load_config_or_fail(config_path)
    route = route_or_fail(config, route_name)
    secret = generate_key_for(route.provider) if gen else _read_key_option(key_text or "")
    try:
        check_key(route.provider, secret)
    except InvalidKey as exc:
        raise click.BadParameter(f"{exc} ({route.describe} route)", param_hint="--key") from None

    def change(keys: KeyFile) -> KeyFile:
        return add_key(keys, route.name, secret, now=datetime.now(UTC))

    _, after = update_keys_or_fail(config, change, missing_ok=True)
    entry = next(e for e in after.for_route(route.name) if e.secret == secret)
    _report_added(config, entry, shown=secret if gen else None, as_json=as_json)


def _report_added(config: Config, entry: KeyEntry, *, shown: str | None, as_json: bool) -> None:
    if as_json:
        result: dict[str, Any] = {"route": entry.route, "id": entry.id, "state": entry.state}
        if shown is not None:
            result["key"] = shown
        echo_json(result)
    elif entry.state == "primary":
        click.echo(
            f"added key {entry.id} to route {entry.route!r} as primary "
            "(the route had no primary key): it signs and verifies from now on"
        )
    else:
        click.echo(
            f"added key {entry.id} to route {entry.route!r} as next: it verifies callbacks now.\n"
            "Switch the platform to it, then make it primary:\n"
            f"  callbacks keys promote {entry.route} {entry.id}"
        )
    if shown is not None and not as_json:
        click.echo(f"key (shown only this once; give it to the platform now): {shown}")
    reload_hint(config)


@keys_group.command("promote", short_help="Make KEY_ID the primary key of ROUTE.")
@config_option
@click.argument("route_name", metavar="ROUTE")
@click.argument("key_ref", metavar="KEY_ID")
@click.option(
    "--retire-after",
    type=MomentType(ahead=True),
    default="7d",
    show_default=True,
    help="When the old primary stops verifying: a date (2026-12-01) or a duration from now (7d).",
)
@json_option
def promote(
    config_path: str | None, route_name: str, key_ref: str, retire_after: datetime, as_json: bool
) -> None:
    """Make KEY_ID (an id or unique id prefix) ROUTE's primary key.

    The old primary becomes `previous`: it keeps verifying callbacks until --retire-after, then
    stops, so callbacks the platform signed before the switch still arrive.

    \b
    Example:
      callbacks keys promote sensetime 3f9c2a --retire-after 3d
    """
    config = load_config_or_fail(config_path)
    route = route_or_fail(config, route_name)
    before, after = update_keys_or_fail(
        config, lambda keys: keys.promote(route.name, key_ref, retire_after=retire_after)
    )
    new = after.primary(route.name)
    assert new is not None
    old = before.primary(route.name)
    if as_json:
        echo_json(
            {
                "route": route.name,
                "primary": new.id,
                "previous": old.id if old else None,
                "retire_after": iso(retire_after) if old else None,
            }
        )
    else:
        click.echo(f"key {new.id} is now the primary key of route {route.name!r}")
        if old is not None:
            _report_previous(route.name, old.id, retire_after)
    reload_hint(config)


def _report_previous(route: str, old_id: str, retire_after: datetime) -> None:
    if retire_after <= datetime.now(UTC):
        click.echo(f"key {old_id} is now previous and no longer verifies (--retire-after passed)")
    else:
        click.echo(
            f"key {old_id} is now previous: it verifies until {iso(retire_after)}, then stops.\n"
            f"When it has gone quiet: callbacks keys retire {route} {old_id}"
        )


@keys_group.command("retire", short_help="Remove KEY_ID from ROUTE, unless still in use.")
@config_option
@click.argument("route_name", metavar="ROUTE")
@click.argument("key_ref", metavar="KEY_ID")
@click.option(
    "--quiet-period",
    type=DurationType(),
    default=None,
    help="How long the key must not have verified a callback (default: keys.quiet_period_hours"
    " from the config, 24h unless set).",
)
@click.option(
    "--force", is_flag=True, help="Remove the key even if it is primary or was used recently."
)
def retire(
    config_path: str | None,
    route_name: str,
    key_ref: str,
    quiet_period: int | None,
    force: bool,
) -> None:
    """Remove KEY_ID (an id or unique id prefix) from ROUTE: it stops verifying.

    Refuses to remove the primary key, and a key that verified a callback within the quiet
    period (the platform may still be signing with it), unless --force.

    \b
    Example:
      callbacks keys retire sensetime 8b1e07
      callbacks keys retire sensetime 8b1e07 --quiet-period 2h
    """
    config = load_config_or_fail(config_path)
    route = route_or_fail(config, route_name)
    try:
        entry = read_keys_or_fail(config).find(route.name, key_ref)
    except KeyFileError as exc:
        fail(str(exc))
    if not force:
        quiet = quiet_period if quiet_period is not None else config.keys.quiet_period_hours * 3600
        _refuse_if_in_use(config, entry, quiet)
    _, after = update_keys_or_fail(config, lambda keys: keys.remove(route.name, entry.id))
    left = len(after.for_route(route.name))
    click.echo(f"retired key {entry.id} from route {route.name!r} ({left} key(s) left)")
    if left == 0:
        click.echo(
            f"warning: route {route.name!r} has no keys now: its callbacks are refused until "
            f"you add one (`callbacks keys add {route.name} --generate`)",
            err=True,
        )
    reload_hint(config)


def _refuse_if_in_use(config: Config, entry: KeyEntry, quiet: float) -> None:
    """Exit 1, saying why and when it would be safe, if retiring ``entry`` is not."""
    usage: KeyUsage | None = None
    if entry.state != "primary":
        try:
            usage = load_key_usage(config).get((entry.route, entry.id))
        except StoreUnavailable as exc:
            fail(
                f"cannot tell when key {entry.id} last verified a callback ({exc}); "
                "pass --force to retire it without that check"
            )
    try:
        check_retirable(
            entry,
            last_verified_at=usage.last_verified_at if usage else None,
            quiet_period=quiet,
            now=time.time(),
        )
    except KeyStillInUse as exc:
        fail(_why_in_use(exc))


def _why_in_use(exc: KeyStillInUse) -> str:
    entry = exc.entry
    if exc.last_verified_at is None:
        return (
            f"key {entry.id} is the primary key of route {entry.route!r}: promote another key "
            f"first (`callbacks keys promote {entry.route} KEY_ID`), or pass --force"
        )
    last, quiet = exc.last_verified_at, exc.quiet_period
    return (
        f"key {entry.id} of route {entry.route!r} verified a callback {ago(time.time() - last)} "
        f"ago (at {iso(last)}), within the quiet period of {_hours(quiet)}: the platform may "
        f"still sign with it. Retire it after {iso(last + quiet)}, or pass --force"
    )


@keys_group.command("list", short_help="Show each route's keys and when they last verified.")
@config_option
@click.option("--route", "route_name", metavar="ROUTE", help="Only this route.")
@json_option
def list_keys(config_path: str | None, route_name: str | None, as_json: bool) -> None:
    """Show every route's keys: id, state, when added, and when each last verified a callback.

    Usage comes from the store: the last callback each key verified, and how many it verified
    in the last 24 hours. Keys are shown by id only.

    \b
    Example:
      callbacks keys list --route sensetime
      callbacks keys list --json | jq '.[] | select(.state == "previous")'
    """
    config = load_config_or_fail(config_path)
    routes = [route_or_fail(config, route_name).name] if route_name else _all_routes(config)
    keyfile = read_keys_or_fail(config)
    if not route_name:
        _warn_unconfigured(config, keyfile)
    try:
        usage: dict[tuple[str, str], KeyUsage] | None = load_key_usage(config)
    except _NoStoreYet:
        click.echo("note: no usage recorded: no receiver has run with this config yet", err=True)
        usage = {}
    except StoreUnavailable as exc:
        click.echo(f"warning: key usage unknown, the store is unavailable: {exc}", err=True)
        usage = None
    rows = [_key_row(e, usage) for r in routes for e in keyfile.for_route(r)]
    if as_json:
        echo_json(rows)
        return
    _print_key_table(config, routes, rows)


def _all_routes(config: Config) -> list[str]:
    return [r.name for r in config.routes]


def _warn_unconfigured(config: Config, keyfile: KeyFile) -> None:
    known = {r.name for r in config.routes}
    for name in sorted({e.route for e in keyfile.entries} - known):
        click.echo(
            f"note: {config.keys.file} holds keys for route {name!r}, which {config.source} "
            "does not define",
            err=True,
        )


def _key_row(entry: KeyEntry, usage: dict[tuple[str, str], KeyUsage] | None) -> dict[str, Any]:
    used = usage.get((entry.route, entry.id)) if usage is not None else None
    return {
        "route": entry.route,
        "id": entry.id,
        "state": entry.state,
        "added_at": iso(entry.added_at),
        "retire_after": iso(entry.retire_after) if entry.retire_after else None,
        "verifies": entry.as_key().verifies_at(time.time()),
        "last_verified_at": iso(used.last_verified_at) if used else None,
        "verified_24h": (used.count_24h if used else 0) if usage is not None else None,
    }


def _print_key_table(config: Config, routes: list[str], rows: list[dict[str, Any]]) -> None:
    headers = ("ROUTE", "KEY ID", "STATE", "ADDED", "RETIRE AFTER", "LAST VERIFIED", "24H")
    table: list[list[str]] = []
    now = time.time()
    for name in routes:
        mine = [r for r in rows if r["route"] == name]
        if not mine:
            table.append([name, "(no keys)", "", "", "", "", ""])
        for r in mine:
            state = r["state"] if r["verifies"] else f"{r['state']} (expired)"
            last = r["last_verified_at"]
            if last is not None:
                moment = datetime.fromisoformat(last).timestamp()
                last = f"{last} ({ago(now - moment)} ago)"
            count = "?" if r["verified_24h"] is None else str(r["verified_24h"])
            table.append(
                [
                    name,
                    r["id"],
                    state,
                    r["added_at"],
                    r["retire_after"] or "-",
                    last or "never",
                    count,
                ]
            )
    click.echo(format_table(headers, table))
    if not routes:
        click.echo(f"no routes are configured in {config.source}", err=True)


def register(main: click.Group) -> None:
    main.add_command(keys_group)
