"""``callbacks events ...``: what arrived, what the handlers did, replay and retention.

These commands read and change the store beside a running receiver: a replayed event becomes
``pending`` again and the receiver's dispatcher delivers it on its next poll.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import orjson

from callbacks.cli._support import (
    MomentType,
    config_option,
    echo_json,
    fail,
    format_table,
    json_option,
    limit_option,
    load_config_or_fail,
    route_filter_option,
    run_with_store,
    since_option,
    status_filter_option,
)
from callbacks.config import Config
from callbacks.event_view import display_body, event_summary, iso
from callbacks.store import EventFilter, Store, StoredEvent


@click.group("events")
def events_group() -> None:
    """Inspect, replay and purge stored callbacks.

    \b
    Example:
      callbacks events list --status dead --since 24h
      callbacks events show 0190a3f2
      callbacks events replay --dead --route sensetime
    """


# --------------------------------------------------------------------------- list


@events_group.command("list")
@config_option
@route_filter_option
@status_filter_option()
@since_option
@limit_option(100, "At most this many, newest first.")
@json_option
def list_events(
    config_path: str | None,
    route_name: str | None,
    status: str | None,
    since: datetime | None,
    limit: int,
    as_json: bool,
) -> None:
    """List stored callbacks, newest first.

    \b
    Example:
      callbacks events list --route sensetime --status pending --since 1h
      callbacks events list --status dead --json | jq -r '.[].id'
    """
    config = load_config_or_fail(config_path)
    where = EventFilter(
        route=route_name,
        status=status,
        since=since.timestamp() if since else None,
        limit=limit,
    )

    async def run(store: Store) -> list[StoredEvent]:
        return await store.list_events(where)

    events: list[StoredEvent] = run_with_store(config, run)
    if as_json:
        echo_json([event_summary(e) for e in events])
        return
    if not events:
        click.echo("no events match", err=True)
        return
    click.echo(format_table(_HEADERS, [_table_row(e) for e in events]))


_HEADERS = ("ID", "RECEIVED", "ROUTE", "TYPE", "STATUS", "ATTEMPTS", "KEY ID")


def _table_row(event: StoredEvent) -> list[str]:
    return [
        event.id,
        iso(event.received_at),
        event.route,
        event.event_type,
        event.status,
        str(event.attempts),
        event.key_id or "-",
    ]


# --------------------------------------------------------------------------- show


@events_group.command("show")
@config_option
@click.argument("event_id", metavar="ID")
@json_option
def show(config_path: str | None, event_id: str, as_json: bool) -> None:
    """Show one event: its metadata, handler state and body (authentication fields masked).

    ID may be a unique prefix of the id.

    \b
    Example:
      callbacks events show 0190a3f2c4
    """
    config = load_config_or_fail(config_path)
    event = _get_or_fail(config, event_id)
    original = _original_of(config, event)
    body = display_body(original or event)
    if as_json:
        shown = {**event_summary(event), "handler_state": event.handler_state, "body": body}
        if event.status == "duplicate":
            shown["body_sha256"] = event.body_sha256
            shown["body_of"] = original.id if original is not None else None
        echo_json(shown)
        return
    click.echo(format_table(("FIELD", "VALUE"), _detail_rows(event)))
    click.echo("\nhandler state:")
    click.echo(_pretty(event.handler_state) if event.handler_state else "  (none recorded)")
    if event.status == "duplicate":
        click.echo(_duplicate_note(event, original))
        if original is None:
            return
    click.echo("\nbody:")
    click.echo(body if isinstance(body, str) else _pretty(body))


def _original_of(config: Config, event: StoredEvent) -> StoredEvent | None:
    """A duplicate's original, whose body is the content (a duplicate keeps only a digest)."""
    if event.status != "duplicate" or not event.duplicate_of:
        return None
    original_id = event.duplicate_of

    async def run(store: Store) -> StoredEvent | None:
        return await store.get(original_id)

    original: StoredEvent | None = run_with_store(config, run)
    return original


def _duplicate_note(event: StoredEvent, original: StoredEvent | None) -> str:
    digest = f" (sha256 {event.body_sha256})" if event.body_sha256 else ""
    if original is None:
        return (
            f"\nthis delivery is a duplicate of delivery {event.duplicate_of}, which is no longer "
            f"stored; its own body was not kept{digest}"
        )
    return (
        f"\nthis delivery is a duplicate of delivery {original.id}: the body below is the "
        f"original's; this delivery's own body was not kept{digest}"
    )


def _get_or_fail(config: Config, id_prefix: str) -> StoredEvent:
    async def run(store: Store) -> StoredEvent | None:
        return await store.get(id_prefix)

    event: StoredEvent | None = run_with_store(config, run)
    if event is None:
        fail(
            f"no single event has an id starting with {id_prefix!r} (none matches, or several "
            "do: type more of the id); `callbacks events list` shows ids"
        )
    return event


def _detail_rows(event: StoredEvent) -> list[list[str]]:
    summary = event_summary(event)
    return [[name, "-" if value is None else str(value)] for name, value in summary.items()]


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


# --------------------------------------------------------------------------- replay


@events_group.command("replay")
@config_option
@click.argument("event_ids", metavar="[ID]...", nargs=-1)
@click.option("--dead", is_flag=True, help="Re-queue every dead event (of --route, if given).")
@click.option("--unhandled", is_flag=True, help="Re-queue every event that had no handler.")
@click.option("--route", "route_name", metavar="ROUTE", help="With --dead/--unhandled: one route.")
@json_option
def replay(
    config_path: str | None,
    event_ids: Sequence[str],
    dead: bool,
    unhandled: bool,
    route_name: str | None,
    as_json: bool,
) -> None:
    """Re-queue events for the handlers: the given IDs (unique prefixes), or all --dead or
    --unhandled ones.

    Handlers that already succeeded for an event are not called again, unless all of them had.
    A running receiver delivers re-queued events on its next poll.

    \b
    Example:
      callbacks events replay 0190a3f2c4 0190a3f31b
      callbacks events replay --dead --route metastudio-video
      callbacks events replay --unhandled      # after adding the handlers they lacked
    """
    if bool(event_ids) == (dead or unhandled):
        raise click.UsageError("pass event IDs or --dead/--unhandled (not both)")
    if route_name and not (dead or unhandled):
        raise click.UsageError("--route applies with --dead or --unhandled only")
    config = load_config_or_fail(config_path)
    ids = [] if dead or unhandled else _resolve_replayable(config, event_ids)

    async def run(store: Store) -> int:
        return await store.requeue(ids, dead=dead, route=route_name, unhandled=unhandled)

    count: int = run_with_store(config, run)
    if as_json:
        echo_json({"requeued": count})
        return
    click.echo(f"re-queued {count} event(s); a running receiver delivers them on its next poll")


def _resolve_replayable(config: Config, prefixes: Sequence[str]) -> list[str]:
    """Full ids for the prefixes, refusing (before changing anything) what cannot be replayed."""
    ids: list[str] = []
    for prefix in prefixes:
        event = _get_or_fail(config, prefix)
        if event.status == "duplicate":
            fail(
                f"event {event.id} is a duplicate of {event.duplicate_of} and was never "
                f"delivered: replay {event.duplicate_of} instead"
            )
        if event.id not in ids:
            ids.append(event.id)
    return ids


# --------------------------------------------------------------------------- purge


@events_group.command("purge")
@config_option
@click.option(
    "--before",
    type=MomentType(ahead=False),
    required=True,
    help="Delete events received before this: a date (2026-01-01) or an age (30d = older than "
    "30 days). Must be in the past.",
)
@click.option(
    "--include-dead",
    is_flag=True,
    help="Delete dead events too (no handler dealt with them; `events replay` can still).",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@json_option
def purge(
    config_path: str | None, before: datetime, include_dead: bool, dry_run: bool, as_json: bool
) -> None:
    """Delete old delivered and duplicate events (retention).

    Pending events are always kept, and dead events unless --include-dead: they hold work no
    handler has done yet.

    \b
    Example:
      callbacks events purge --before 30d --dry-run
      callbacks events purge --before 2026-01-01 --include-dead
    """
    # ``0d`` was "now" when parsed, a moment ago: anything within a second of now counts as now.
    if before > datetime.now(UTC) - timedelta(seconds=1):
        raise click.BadParameter(
            f"{iso(before)} is not in the past: a purge before it would delete every settled "
            "event, however new (an age like 30d counts back from now)",
            param_hint="--before",
        )
    config = load_config_or_fail(config_path)

    async def run(store: Store) -> int:
        return await store.purge(before.timestamp(), include_dead=include_dead, dry_run=dry_run)

    count: int = run_with_store(config, run)
    if as_json:
        echo_json(
            {
                "purged": 0 if dry_run else count,
                "would_purge": count if dry_run else None,
                "before": iso(before),
                "include_dead": include_dead,
                "dry_run": dry_run,
            }
        )
        return
    kept = "pending events are kept" if include_dead else "pending and dead events are kept"
    verb = "would purge" if dry_run else "purged"
    click.echo(f"{verb} {count} event(s) received before {iso(before)} ({kept})")


def register(main: click.Group) -> None:
    main.add_command(events_group)
