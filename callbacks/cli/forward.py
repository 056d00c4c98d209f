"""``callbacks events forward``: re-send stored events to another endpoint.

For a developer's local app, a staging copy, or a consumer that missed events: each stored event
(oldest first) is POSTed as the sinks' envelope (:mod:`callbacks.sinks.envelope`), with the
Standard Webhooks headers the HTTP sink sends, signed when a secret is given. The store is only
read: forwarding changes no event's state. Duplicates are skipped (their original is the event).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click

from callbacks.cli._http import PostFailed, is_http_url, post, without_query
from callbacks.cli._support import (
    config_option,
    echo_json,
    fail,
    json_option,
    limit_option,
    load_config_or_fail,
    read_keys_or_fail,
    route_filter_option,
    run_with_store,
    since_option,
    status_filter_option,
)
from callbacks.config import Config
from callbacks.errors import KeyFileError
from callbacks.events import event_from_stored
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.secrets import secret_bytes, sink_secrets
from callbacks.sinks.signing import webhook_headers
from callbacks.store import EventFilter, Store, StoredEvent


@dataclass(frozen=True)
class Forwarded:
    """What forwarding one event gave: the answer's status, or why there was none."""

    event: StoredEvent
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.event.id,
            "route": self.event.route,
            "event_type": self.event.event_type,
            "status": self.status,
            "error": self.error,
            "ok": self.ok,
        }

    def line(self) -> str:
        what = f"{self.event.id}  {self.event.route}  {self.event.event_type}"
        if self.ok:
            return f"{self.status} ok      {what}"
        return f"{self.status or '---'} failed  {what}  {self.error or ''}".rstrip()


@click.command("forward", short_help="Re-send stored events to another endpoint.")
@config_option
@click.option("--to", "target", required=True, metavar="URL", help="Where to POST each event.")
@route_filter_option
@status_filter_option()
@since_option
@limit_option(1000, "At most this many (the newest), sent oldest first.")
@click.option(
    "--secret-env",
    metavar="VAR",
    help="Sign with the whsec_ secret held in this environment variable.",
)
@click.option(
    "--sign-as",
    "sink_name",
    metavar="SINK",
    help="Sign with this HTTP sink's secrets from the key file, as that sink does.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 300),
    default=10.0,
    show_default=True,
    help="Seconds to wait for each answer.",
)
@json_option
def forward_events(
    config_path: str | None,
    target: str,
    route_name: str | None,
    status: str | None,
    since: datetime | None,
    limit: int,
    secret_env: str | None,
    sink_name: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """POST stored events to URL as the sinks' JSON envelope, oldest first.

    Each request carries webhook-id (the delivery id: de-duplicate by it), webhook-timestamp and,
    with --secret-env or --sign-as, webhook-signature, exactly as the HTTP sink sends them; any
    Standard Webhooks library verifies it. The store is not changed. Exit 0 when every event got
    a 2xx, else 1.

    \b
    Example:
      callbacks events forward --to http://127.0.0.1:3000/hooks --since 1h
      WHSEC=whsec_... callbacks events forward --to http://127.0.0.1:3000/hooks --secret-env WHSEC
      callbacks events forward --to https://staging.example.com/hooks --sign-as staging --json
    """
    if not is_http_url(target):
        raise click.BadParameter(
            f"{without_query(target)!r} is not an http(s) URL", param_hint="--to"
        )
    if secret_env and sink_name:
        raise click.UsageError("pass --secret-env VAR or --sign-as SINK, not both")
    config = load_config_or_fail(config_path)
    keys = _signing_keys(config, secret_env, sink_name)
    where = EventFilter(
        route=route_name,
        status=status,
        since=since.timestamp() if since else None,
        limit=limit,
    )

    async def run(store: Store) -> list[StoredEvent]:
        return await store.list_events(where)

    stored = list(reversed(run_with_store(config, run)))
    originals = [event for event in stored if event.duplicate_of is None]
    results = _forward_all(config, originals, target, keys, timeout, as_json=as_json)
    failed = sum(not r.ok for r in results)
    unsent = len(originals) - len(results)
    skipped = len(stored) - len(originals)
    if as_json:
        echo_json(
            {
                "to": without_query(target),
                "signed": bool(keys),
                "forwarded": len(results) - failed,
                "failed": failed,
                "not_sent": unsent,
                "skipped_duplicates": skipped,
                "results": [r.as_dict() for r in results],
                "ok": failed == 0 and unsent == 0,
            }
        )
    else:
        click.echo(
            f"{len(results) - failed} forwarded, {failed} failed"
            + (f", {unsent} not sent" if unsent else "")
            + (f", {skipped} duplicates skipped" if skipped else "")
            + f" to {without_query(target)}"
            + ("" if keys else " (unsigned)"),
            err=True,
        )
    if failed or unsent:
        raise SystemExit(1)


def _signing_keys(
    config: Config, secret_env: str | None, sink_name: str | None
) -> tuple[bytes, ...]:
    if secret_env:
        value = os.environ.get(secret_env)
        if not value:
            fail(f"--secret-env {secret_env}: that environment variable is not set")
        try:
            return (secret_bytes(value),)
        except KeyFileError as exc:
            fail(f"--secret-env {secret_env}: {exc}")
    if sink_name:
        try:
            values = sink_secrets(read_keys_or_fail(config), sink_name)
        except KeyFileError as exc:
            fail(str(exc))
        if not values:
            fail(
                f"sink {sink_name!r} has no secret in {config.keys.file}: "
                f"`callbacks keys sink add {sink_name}` makes one"
            )
        return tuple(secret_bytes(v) for v in values)
    return ()


def _forward_all(
    config: Config,
    events: Sequence[StoredEvent],
    target: str,
    keys: tuple[bytes, ...],
    timeout: float,
    *,
    as_json: bool,
) -> list[Forwarded]:
    """Send each event; stop early only when nothing listens at ``target`` at all."""
    routes = {route.name: route for route in config.routes}
    results: list[Forwarded] = []
    for stored in events:
        body = EventEnvelope.from_event(
            event_from_stored(stored, routes.get(stored.route))
        ).encode()
        headers = webhook_headers(keys, stored.id, int(time.time()), body)
        try:
            result = Forwarded(stored, status=post(target, body, headers, timeout=timeout).status)
        except PostFailed as exc:
            if exc.refused:
                fail(f"{exc}: stopped after {len(results)} of {len(events)} event(s)")
            result = Forwarded(stored, error=str(exc))
        results.append(result)
        if not as_json:
            click.echo(result.line())
    return results


def register(main: click.Group) -> None:
    events = main.commands.get("events")
    if isinstance(events, click.Group):
        events.add_command(forward_events)
