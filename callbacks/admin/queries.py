"""What the console asks of the store: filtered pages of events, one event for display, keys.

Pages are keyset-paginated, newest first: a page is "the next ``limit`` events whose id sorts
before ``before``", one index range scan however far back it is, so thousands of events stay
fast and a page never shifts when new events arrive.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from callbacks.config import Config
from callbacks.errors import CallbacksError
from callbacks.event_view import display_body, event_summary, iso
from callbacks.keyfile import KeyFile
from callbacks.store import EVENT_STATUSES, Admin, EventFilter, KeyUsage, StoredEvent

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# A text search checks parsed bodies after the store's cheap byte match; it stops after this many
# candidates and hands back a cursor, so one request stays bounded however rare the match.
_SCAN_BATCH = 200
_SCAN_LIMIT = 5000
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVENT_ID = re.compile(r"^[0-9a-f]{1,32}$")
# Where each platform puts the id of the job or task a callback is about.
_JOB_FIELDS = ("job_id", "jobId", "taskId", "task_id", "room_id")


class BadQuery(CallbacksError):
    """A filter the console cannot use; ``reason`` is the stable code, the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class Query:
    route: str | None = None
    status: str | None = None
    event_type: str | None = None
    key_id: str | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None
    before: str | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_params(cls, params: Mapping[str, str], now: float | None = None) -> Query:
        """From a query string or form; every value checked (BadQuery says which is wrong)."""
        now = time.time() if now is None else now

        def text(name: str, longest: int = 200) -> str | None:
            value = params.get(name, "").strip()
            if len(value) > longest:
                raise BadQuery("bad_filter", f"{name}: at most {longest} characters")
            return value or None

        status = text("status")
        if status is not None and status not in EVENT_STATUSES:
            raise BadQuery("bad_filter", f"status: one of {', '.join(EVENT_STATUSES)}")
        before = text("before")
        if before is not None and not _EVENT_ID.match(before):
            raise BadQuery("bad_filter", "before: an event id")
        limit_text = params.get("limit", "") or str(DEFAULT_LIMIT)
        if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 4):
            raise BadQuery("bad_filter", f"limit: a whole number from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery("bad_filter", f"limit: a whole number from 1 to {MAX_LIMIT}")
        return cls(
            route=text("route"),
            status=status,
            event_type=text("type"),
            key_id=text("key_id"),
            since=parse_moment(text("since"), now, "since"),
            until=parse_moment(text("until"), now, "until"),
            text=text("q"),
            before=before,
            limit=limit,
        )

    def params(self, **changes: Any) -> dict[str, str]:
        """The query string that asks for this query (with ``changes``), for links."""
        query = replace(self, **changes)
        out = {
            "route": query.route,
            "status": query.status,
            "type": query.event_type,
            "key_id": query.key_id,
            "since": iso(query.since) if query.since is not None else None,
            "until": iso(query.until) if query.until is not None else None,
            "q": query.text,
            "before": query.before,
            "limit": str(query.limit) if query.limit != DEFAULT_LIMIT else None,
        }
        return {k: v for k, v in out.items() if v}

    def store_filter(self, limit: int) -> EventFilter:
        return EventFilter(
            route=self.route,
            status=self.status,
            since=self.since,
            until=self.until,
            event_type=self.event_type,
            key_id=self.key_id,
            before_id=self.before,
            body_contains=_json_text(self.text) if self.text else None,
            limit=limit,
        )


def parse_moment(value: str | None, now: float, name: str) -> float | None:
    """``1h`` / ``7d`` (that long ago), or an ISO 8601 date or time (UTC unless it says)."""
    if value is None:
        return None
    duration = _DURATION.match(value)
    if duration:
        return now - int(duration.group(1)) * _UNIT_SECONDS[duration.group(2)]
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(
            "bad_filter", f"{name}: a time (2026-12-01T08:00Z) or an age (30m, 1h, 7d)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _json_text(text: str) -> bytes:
    """How ``text`` appears inside a JSON body (escapes and all, as encoders write it)."""
    return orjson.dumps(text)[1:-1]


@dataclass(frozen=True)
class Page:
    events: list[StoredEvent]
    next_before: str | None
    """Pass as ``before`` for the next (older) page; None: this is the last."""


async def find_events(store: Admin, query: Query) -> Page:
    if not query.text:
        rows = await store.list_events(query.store_filter(query.limit + 1))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return Page(rows, rows[-1].id if more and rows else None)
    found: list[StoredEvent] = []
    cursor = query.before
    scanned = 0
    while scanned < _SCAN_LIMIT:
        batch = await store.list_events(replace(query, before=cursor).store_filter(_SCAN_BATCH))
        for event in batch:
            scanned += 1
            cursor = event.id
            if job_id_matches(event, query.text):
                found.append(event)
                if len(found) == query.limit:
                    return Page(found, cursor)
        if len(batch) < _SCAN_BATCH:
            return Page(found, None)
    return Page(found, cursor)


def job_ids(event: StoredEvent) -> list[str]:
    """The job, task or room ids a callback names (a live event's inside its ``message``)."""
    try:
        raw = orjson.loads(event.body)
    except orjson.JSONDecodeError:
        return []
    if not isinstance(raw, dict):
        return []
    found = [str(raw[f]) for f in _JOB_FIELDS if f in raw and raw[f] is not None]
    message = raw.get("message")
    if isinstance(message, str) and message.lstrip().startswith("{"):
        try:
            inner = orjson.loads(message)
        except orjson.JSONDecodeError:
            inner = None
        if isinstance(inner, dict):
            found += [str(inner[f]) for f in _JOB_FIELDS if f in inner and inner[f] is not None]
    return found


def job_id_matches(event: StoredEvent, text: str | None) -> bool:
    if not text:
        return True
    needle = text.casefold()
    return any(needle in found.casefold() for found in job_ids(event))


def summary(event: StoredEvent) -> dict[str, Any]:
    return {**event_summary(event), "job_ids": job_ids(event)}


def pretty(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


async def event_detail(store: Admin, event: StoredEvent) -> dict[str, Any]:
    """Everything the console shows of one event; a duplicate shows its original's body."""
    original = None
    if event.status == "duplicate" and event.duplicate_of:
        original = await store.get(event.duplicate_of)
    shown = {
        **summary(event),
        "handler_state": dict(event.handler_state),
        "body": display_body(original or event) if (original or event).body else None,
    }
    if event.status == "duplicate":
        shown["body_sha256"] = event.body_sha256
        shown["body_of"] = original.id if original is not None else None
    return shown


def attempts(event: StoredEvent) -> list[dict[str, Any]]:
    """Each handler's and sink's delivery state, sinks marked, in name order."""
    rows = []
    for name, state in sorted(event.handler_state.items()):
        state = state if isinstance(state, Mapping) else {}
        rows.append(
            {
                "name": name,
                "kind": "sink" if name.startswith("sink:") else "handler",
                "status": state.get("status", "-"),
                "attempts": state.get("attempts", 0),
                "error": state.get("error"),
            }
        )
    return rows


def keys_view(
    config: Config, keyfile: KeyFile, usage: Sequence[KeyUsage], now: float
) -> list[dict[str, Any]]:
    """Per route: its keys by id (never the key), rotation state, and what each verified."""
    used = {(u.route, u.key_id): u for u in usage}
    routes = []
    for route in config.routes:
        keys = []
        for entry in keyfile.for_route(route.name):
            seen = used.get((route.name, entry.id))
            retire = entry.retire_after.timestamp() if entry.retire_after else None
            keys.append(
                {
                    "id": entry.id,
                    "state": entry.state,
                    "added_at": iso(entry.added_at.timestamp()),
                    "retire_after": iso(retire) if retire else None,
                    "verifies": retire is None or retire > now,
                    "last_verified_at": iso(seen.last_verified_at) if seen else None,
                    "verified_24h": seen.count_24h if seen else 0,
                }
            )
        routes.append(
            {
                "route": route.name,
                "provider": route.provider,
                "describe": route.describe,
                "allow_unsigned": route.allow_unsigned,
                "rotating": any(k["state"] != "primary" for k in keys),
                "keys": keys,
            }
        )
    return routes
