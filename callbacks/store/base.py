"""What every store is: its records, roles and schema version, and the rules both backends share.

This module imports no backend (``sqlite.py`` and ``postgres.py`` import it). Each consumer names
only the role it uses: the intake an :class:`Inbox`, the dispatcher a :class:`WorkQueue`, the CLI
an :class:`Admin`; the server opens and closes a :class:`Lifecycle`. A backend implements them all
(:class:`Store`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

import orjson

from callbacks.errors import SchemaOutOfDate

# ``unhandled``: no handler was registered for the event's type when it was dispatched (a replay
# delivers it once one is). ``refuted``: the platform's API contradicts the callback
# (callbacks/confirm); never delivered, and it gives up its dedupe key (see _release_refuted in
# each backend).
EventStatus = Literal["pending", "delivered", "dead", "duplicate", "unhandled", "refuted"]
EVENT_STATUSES: tuple[str, ...] = (
    "pending",
    "delivered",
    "dead",
    "duplicate",
    "unhandled",
    "refuted",
)
# Statuses that wait for an operator; counted by route for the metrics.
SETTLED_FOR_OPERATOR: tuple[str, ...] = ("dead", "unhandled")
# 1: the first schema. 2: unambiguous dedupe keys covering all content (callbacks.dedupe), and
# duplicates keep the digest of their body instead of the body. 3: an index for counting dead and
# unhandled events by route (the metrics). 4: an index for the operator's lists by route (below).
# 5: fewer index entries per accepted callback (below).
SCHEMA_VERSION = 5

# Schema 4, in both backends: the operator's lists (``events list``, the console's inbox) are
# newest first, by id. Filtered by route with no index in id order for it, the database walks the
# whole table backwards or sorts every match: 4.3 ms for a rare route's newest 100 among 300,000
# events and 56 ms for its dead ones, 0.5 and 0.8 ms with this index. It costs each accept one
# more index entry (appended at the end: ids grow). A status filter alone stays a backwards scan
# of the primary key (10 ms for the dead among 300,000): an index on status would be rewritten by
# every delivery, and a partial one is not used for a bound parameter.
FILTER_INDEXES = ("CREATE INDEX IF NOT EXISTS {events}_by_route ON {events} (route, id)",)


# Schema 5: each index is one more entry written per accepted callback, and with SQLite one more
# WAL page per commit (8.7 frames for a lone callback's row and indexes). Time ranges (the
# lists' since/until, the purge) now also bound the id, which begins with the arrival
# millisecond, so the primary key serves them and the received_at index is gone from both
# stores; SQLite keeps key usage per key, written once a batch (see the SQLite store).
_ID_MS_DIGITS = 12
_ID_MS_MAX: int = 16**_ID_MS_DIGITS - 1


def first_id_from(moment: float) -> str | None:
    """A bound every event received at ``moment`` or later has an id at least as large as
    (None when there is none to give: ``moment`` not a finite time in the ids' range)."""
    ms = _id_ms(moment)
    return None if ms is None else f"{ms:0{_ID_MS_DIGITS}x}"


def id_bound_before(moment: float) -> str | None:
    """A bound every event received before ``moment`` has a smaller id than (None: none)."""
    ms = _id_ms(moment)
    return None if ms is None or ms == _ID_MS_MAX else f"{ms + 1:0{_ID_MS_DIGITS}x}"


def _id_ms(moment: float) -> int | None:
    if not (0 <= moment <= _ID_MS_MAX / 1000):  # also NaN
        return None
    return min(int(moment * 1000), _ID_MS_MAX)


def new_delivery_id(now: float | None = None) -> str:
    """32 hex digits: 48 bits of milliseconds then 80 random bits, so ids sort by arrival."""
    ms = int((time.time() if now is None else now) * 1000)
    # Unique, not secret: the process's Mersenne Twister (seeded from the OS, reseeded after a
    # fork) avoids a syscall, which on the request path means giving up the GIL and waiting
    # to win it back from the store's commit thread.
    return f"{ms:012x}{random.getrandbits(80):020x}"


# -- records -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundCallback:
    """A verified callback, as the intake hands it to the store."""

    delivery_id: str
    route: str
    provider: str
    event_type: str
    dedupe_key: str
    key_id: str | None
    received_at: float
    body: bytes


class Lease(NamedTuple):
    """A claim on an event: hidden from other claimers until ``until``, finished only by ``owner``.

    An event can be stored already leased (see :meth:`Inbox.accept`): should its owner die
    first, the lease lapses (or SQLite's start-up recovery frees it) and the event is claimed
    like any other.
    """

    owner: str
    until: float


@dataclass(frozen=True)
class Accepted:
    delivery_id: str
    duplicate_of: str | None = None

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


@dataclass(frozen=True)
class StoredEvent:
    """One row of the inbox. The field order is the column order rows are read in.

    A duplicate keeps no body (``body`` is empty): its original's body is the content, and
    ``body_sha256`` is the digest of the bytes the duplicate itself carried.
    """

    id: str
    route: str
    provider: str
    event_type: str
    key_id: str | None
    received_at: float
    body: bytes = field(repr=False)
    status: str
    attempts: int
    next_attempt_at: float
    handler_state: Mapping[str, Any]
    last_error: str | None
    duplicate_of: str | None
    updated_at: float
    body_sha256: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What one dispatch round did to an event; written back when the claim is released."""

    status: EventStatus
    attempts: int
    next_attempt_at: float
    handler_state: Mapping[str, Any]
    last_error: str | None


@dataclass(frozen=True)
class KeyUsage:
    route: str
    key_id: str
    last_verified_at: float
    count_24h: int


@dataclass(frozen=True)
class EventFilter:
    """Which events to list, newest first; ``before_id`` pages on by id (keyset pagination: ids
    sort by arrival, so each page is one index range scan however deep it is)."""

    route: str | None = None
    status: str | None = None
    since: float | None = None
    limit: int = 100
    event_type: str | None = None
    until: float | None = None
    key_id: str | None = None
    before_id: str | None = None
    after_id: str | None = None
    body_contains: bytes | None = None
    """Only bodies holding these bytes (a cheap first pass; callers check the parsed body)."""

    def where_sql(
        self, placeholder: str, *, contains: str = "instr(body, {}) > 0"
    ) -> tuple[str, tuple[Any, ...]]:
        """`` WHERE ...`` (or nothing) and its parameters, in the driver's placeholder style;
        ``contains`` is the backend's "body holds these bytes" test, ``{}`` the placeholder."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (
            ("route", "=", self.route),
            ("status", "=", self.status),
            ("received_at", ">=", self.since),
            ("id", ">=", None if self.since is None else first_id_from(self.since)),
            ("event_type", "=", self.event_type),
            ("received_at", "<", self.until),
            ("id", "<", None if self.until is None else id_bound_before(self.until)),
            ("key_id", "=", self.key_id),
            ("id", "<", self.before_id),
            ("id", ">", self.after_id),
        ):
            if value is not None and value != "":
                clauses.append(f"{column} {op} {placeholder}")
                params.append(value)
        if self.body_contains:
            clauses.append(contains.format(placeholder))
            params.append(self.body_contains)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


# -- roles ---------------------------------------------------------------------------------------


class Lifecycle(Protocol):
    async def open(self) -> None:
        """Connect and check the schema (raising :class:`SchemaOutOfDate` when it is not there)."""

    async def upgrade(self) -> int:
        """Create or migrate the schema; returns the schema version now in place."""

    async def recover(self) -> None:
        """At server start: release claims that only a dead process of ours could hold."""

    async def close(self) -> None:
        """Commit what was accepted, then let go of the database."""

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless a trivial query succeeds."""


class Inbox(Protocol):
    async def accept(self, callback: InboundCallback, lease: Lease | None = None) -> Accepted:
        """Store durably (committed to disk) before returning; duplicates are kept as such.

        With a ``lease`` the new event is stored already claimed by its owner, so no claim query
        has to find it again (duplicates are never leased).
        """


class WorkQueue(Protocol):
    async def claim(
        self, *, owner: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredEvent]:
        """Take up to ``limit`` due pending events, hidden from other claimers for the lease."""

    async def finish_many(self, outcomes: Sequence[tuple[str, Outcome]], *, owner: str) -> int:
        """Write back a dispatch round's outcomes and release its claims, in one write; returns
        how many claims were still ``owner``'s (the others were lost and are left alone)."""

    async def finish(self, outcomes: Sequence[tuple[str, str, Outcome]]) -> set[str]:
        """Write back outcomes ``(event id, owner, outcome)`` and release their claims, in one
        write; returns the ids written. An outcome whose claim is no longer its owner's is left
        out: the event was taken over, and the new owner's outcome must stand."""

    async def renew(self, leases: Sequence[tuple[str, str]], *, until: float) -> set[str]:
        """Extend the leases ``(event id, owner)`` to ``until``; returns the ids renewed. An id
        left out was lost: its claim is no longer that owner's (it lapsed and another claimer
        took the event, or an operator re-queued it)."""

    async def inbox_depth(self) -> int:
        """How many events are pending."""

    async def waiting_for_operator(self) -> dict[tuple[str, str], int]:
        """How many events are ``dead`` or ``unhandled``, by ``(route, status)``."""


class Admin(Protocol):
    async def get(self, id_prefix: str) -> StoredEvent | None:
        """The one event whose id starts with ``id_prefix``; None if none or several do."""

    async def list_events(self, where: EventFilter) -> list[StoredEvent]:
        """Newest first."""

    async def requeue(
        self,
        ids: Sequence[str] = (),
        *,
        dead: bool = False,
        route: str | None = None,
        unhandled: bool = False,
    ) -> int:
        """Make events pending again (see :func:`replay_where` and :func:`reset_handler_state`)."""

    async def purge(
        self, before: float, *, include_dead: bool = False, dry_run: bool = False
    ) -> int:
        """Delete the delivered and duplicate events received before ``before`` (and the dead
        ones with ``include_dead``); pending ones always stay. ``dry_run`` only counts them."""

    async def key_usage(self, now: float) -> list[KeyUsage]: ...


class ServingStore(Lifecycle, Inbox, WorkQueue, Protocol):
    """What a running receiver uses: :func:`callbacks.create_app` takes one."""


class Store(ServingStore, Admin, Protocol):
    """Every role: what both backends implement."""


# -- the schema version --------------------------------------------------------------------------


def check_schema_version(version: int | None, *, store: str) -> None:
    """Raise :class:`SchemaOutOfDate` unless ``version`` (None: no schema) is this release's.

    ``store`` names the store for the message ("SQLite store /data/callbacks.db"), never with a
    password in it.
    """
    if version == SCHEMA_VERSION:
        return
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaOutOfDate(
            f"{store} has schema version {version}, from a newer release; "
            f"this release needs {SCHEMA_VERSION}: run the newer release"
        )
    raise SchemaOutOfDate(
        f"{store} has schema version {version or 'none'}, "
        f"this release needs {SCHEMA_VERSION}: run `callbacks db upgrade`"
    )


# -- rows ----------------------------------------------------------------------------------------

# The columns a row is selected with, in :class:`StoredEvent`'s field order.
EVENT_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StoredEvent))


def event_columns(alias: str = "", **expressions: str) -> str:
    """The SELECT list for :func:`event_from_row`: :data:`EVENT_COLUMNS`, qualified by ``alias``.

    ``expressions`` replace a column by an expression of it, ``{}`` standing for the column:
    ``event_columns(body="hex({})")``.
    """
    prefix = f"{alias}." if alias else ""
    return ", ".join(expressions.get(c, "{}").format(prefix + c) for c in EVENT_COLUMNS)


def event_from_row(row: Sequence[Any]) -> StoredEvent:
    """A stored event from a row selected with :func:`event_columns` (the handler state as JSON
    text, the body as bytes or anything ``bytes()`` takes)."""
    (
        event_id,
        route,
        provider,
        event_type,
        key_id,
        received_at,
        body,
        status,
        attempts,
        next_attempt_at,
        handler_state,
        last_error,
        duplicate_of,
        updated_at,
        body_sha256,
    ) = row
    return StoredEvent(
        id=event_id,
        route=route,
        provider=provider,
        event_type=event_type,
        key_id=key_id,
        received_at=received_at,
        body=bytes(body),
        status=status,
        attempts=attempts,
        next_attempt_at=next_attempt_at,
        handler_state=orjson.loads(handler_state),
        last_error=last_error,
        duplicate_of=duplicate_of,
        updated_at=updated_at,
        body_sha256=body_sha256,
    )


def duplicate_digest(body: bytes) -> str:
    """What a duplicate keeps of its body: a retry carries the original's content again (with
    a new timestamp and signature), and storing it whole would let replays fill the disk."""
    return hashlib.sha256(body).hexdigest()


# -- replay --------------------------------------------------------------------------------------


def replay_where(
    ids: Sequence[str],
    *,
    dead: bool,
    route: str | None,
    placeholder: str,
    unhandled: bool = False,
) -> tuple[str, tuple[Any, ...]] | None:
    """Which events a replay re-queues, as `` WHERE ...`` and its parameters; None: none.

    Either every dead and/or every unhandled event (of ``route``, if given), or the events named
    by ``ids``, except duplicates: a duplicate is delivered through its original.
    """
    statuses = [s for s, wanted in (("dead", dead), ("unhandled", unhandled)) if wanted]
    if statuses:
        where = " WHERE status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"
        if route:
            return f"{where} AND route = {placeholder}", (route,)
        return where, ()
    unique = tuple(dict.fromkeys(ids))
    if not unique:
        return None
    marks = ", ".join([placeholder] * len(unique))
    return f" WHERE id IN ({marks}) AND status != 'duplicate'", unique


def purge_where(
    before: float, *, include_dead: bool, placeholder: str
) -> tuple[str, tuple[Any, ...]]:
    """Which events a purge deletes, as `` WHERE ...`` and its parameters.

    Never a pending event. A dead event is one no handler has dealt with: it is kept unless the
    operator asks for it, so retention cannot silently drop work still to be replayed.
    """
    statuses = "'delivered', 'duplicate', 'dead'" if include_dead else "'delivered', 'duplicate'"
    where, params = EventFilter(until=before).where_sql(placeholder)  # the time range's rule
    return f"{where} AND status IN ({statuses})", params


def reset_handler_state(state: str | bytes) -> str:
    """For a replay: forget the handlers that failed; if all succeeded, forget them all."""
    handlers: dict[str, Any] = orjson.loads(state)
    kept = {name: s for name, s in handlers.items() if s.get("status") == "ok"}
    if len(kept) == len(handlers):
        kept = {}
    return orjson.dumps(kept).decode()


def replay_updates(
    rows: Sequence[Sequence[Any]], now: float
) -> list[tuple[float, str, float, str]]:
    """For each selected ``(id, handler_state)`` row, the parameters of its re-queue UPDATE:
    ``next_attempt_at``, the reset handler state, ``updated_at``, the id."""
    return [(now, reset_handler_state(state), now, event_id) for event_id, state in rows]
