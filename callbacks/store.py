"""The durable inbox every accepted callback goes into before the receiver answers 200.

Two backends share this interface: SQLite (one process, the default) and PostgreSQL (several
replicas). The receiver only calls :meth:`Store.accept`; the dispatcher claims and finishes
events; the CLI lists, shows, re-queues and purges them.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import orjson

from callbacks.errors import StoreUnavailable

EventStatus = Literal["pending", "delivered", "dead", "duplicate"]
EVENT_STATUSES: tuple[str, ...] = ("pending", "delivered", "dead", "duplicate")
SCHEMA_VERSION = 1


def new_delivery_id(now: float | None = None) -> str:
    """32 hex digits: 48 bits of milliseconds then 80 random bits, so ids sort by arrival."""
    ms = int((time.time() if now is None else now) * 1000)
    # Unique, not secret: the process's Mersenne Twister (seeded from the OS, reseeded after a
    # fork) avoids a syscall, which on the request path means giving up the GIL and waiting
    # to win it back from the store's writer thread.
    return f"{ms:012x}{random.getrandbits(80):020x}"


@dataclass(frozen=True)
class InboundCallback:
    """A verified callback, as the receiver hands it to the store."""

    delivery_id: str
    route: str
    provider: str
    event_type: str
    dedupe_key: str
    key_id: str | None
    received_at: float
    body: bytes
    # Set when this process's dispatcher takes the event straight from the receiver: the row is
    # stored already claimed (leased) by it, so no claim query has to find it again. Should the
    # process die first, the lease lapses (or SQLite's start-up recovery frees it) and the event
    # is claimed like any other.
    claimed_by: str | None = None
    claimed_until: float | None = None


@dataclass(frozen=True)
class Accepted:
    delivery_id: str
    duplicate_of: str | None = None

    @property
    def duplicate(self) -> bool:
        return self.duplicate_of is not None


@dataclass(frozen=True)
class StoredEvent:
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


def event_from_row(row: Sequence[Any]) -> StoredEvent:
    """A stored event from a row in both backends' column order (see their ``_COLUMNS``)."""
    return StoredEvent(
        id=row[0],
        route=row[1],
        provider=row[2],
        event_type=row[3],
        key_id=row[4],
        received_at=row[5],
        body=bytes(row[6]),
        status=row[7],
        attempts=row[8],
        next_attempt_at=row[9],
        handler_state=orjson.loads(row[10]),
        last_error=row[11],
        duplicate_of=row[12],
        updated_at=row[13],
    )


def reset_handler_state(state: str | bytes) -> str:
    """For a replay: forget the handlers that failed; if all succeeded, forget them all."""
    handlers: dict[str, Any] = orjson.loads(state)
    kept = {name: s for name, s in handlers.items() if s.get("status") == "ok"}
    if len(kept) == len(handlers):
        kept = {}
    return orjson.dumps(kept).decode()


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
    route: str | None = None
    status: str | None = None
    since: float | None = None
    limit: int = 100

    def where_sql(self, placeholder: str) -> tuple[str, tuple[Any, ...]]:
        """`` WHERE ...`` (or nothing) and its parameters, in the driver's placeholder style."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, op, value in (
            ("route", "=", self.route),
            ("status", "=", self.status),
            ("received_at", ">=", self.since),
        ):
            if value is not None and value != "":
                clauses.append(f"{column} {op} {placeholder}")
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


class Store(Protocol):
    async def open(self) -> None:
        """Connect and check the schema (raising :class:`SchemaOutOfDate` when it is not there)."""

    async def close(self) -> None: ...

    async def upgrade(self) -> int:
        """Create or migrate the schema; returns the schema version now in place."""

    async def recover(self) -> None:
        """At server start: release claims that only a dead process of ours could hold."""

    async def accept(self, callback: InboundCallback) -> Accepted:
        """Store durably (committed to disk) before returning; duplicates are kept as such."""

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless a trivial query succeeds."""

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredEvent]:
        """Take up to ``limit`` due pending events, hidden from other claimers for the lease."""

    async def finish(self, event_id: str, *, owner: str, outcome: Outcome) -> bool:
        """Write back one event's outcome and release the claim; False if the claim was lost."""

    async def finish_many(self, outcomes: Sequence[tuple[str, Outcome]], *, owner: str) -> int:
        """:meth:`finish` for a whole dispatch round in one write; returns how many were ours."""

    async def get(self, id_prefix: str) -> StoredEvent | None: ...

    async def list_events(self, where: EventFilter) -> list[StoredEvent]: ...

    async def requeue(
        self, ids: Sequence[str] = (), *, dead: bool = False, route: str | None = None
    ) -> int:
        """Make events pending again (failed handlers only, or all if every one succeeded)."""

    async def purge(self, before: float) -> int: ...

    async def key_usage(self, now: float) -> list[KeyUsage]: ...

    async def inbox_depth(self) -> int: ...


Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Concurrent writes share transactions: the heart of both stores' write path.

    ``submit`` queues an item and waits for its result. One flusher task hands everything
    waiting to ``write_batch`` (one transaction, one commit) and, as soon as that returns, the
    next batch: items that arrive while a commit runs share the next one, and a lone item is
    written at once. ``write_batch`` returns one result or exception per item; if it raises,
    every item of the batch gets that exception.
    """

    def __init__(
        self,
        write_batch: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        max_batch: int,
        name: str,
    ) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._name = name
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)
        return await future

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        if self._flusher is not None:
            await self._flusher

    async def _flush(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            results: Sequence[Result | BaseException]
            try:
                results = await self._write_batch([item for item, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the request went away; what was written stays written
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def open_store(url: str, *, base_dir: Path | None = None) -> Store:
    """The backend for a ``store.url``: ``sqlite:///relative.db``, ``sqlite:////abs.db``,
    ``postgresql://...``."""
    if url.startswith("sqlite://"):
        from callbacks.store_sqlite import SQLiteStore

        return SQLiteStore(sqlite_path(url, base_dir=base_dir))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from callbacks.store_postgres import PostgresStore
        except ImportError as exc:  # psycopg is an optional extra
            raise StoreUnavailable(
                "the PostgreSQL store needs the postgres extra: "
                "pip install 'avatar-callbacks[postgres]'"
            ) from exc
        return PostgresStore(url)
    raise ValueError("store.url must start with sqlite:// or postgresql://")


def sqlite_path(url: str, *, base_dir: Path | None = None) -> Path:
    rest = url.removeprefix("sqlite://")
    if not rest.startswith("/") or rest == "/":
        raise ValueError("a SQLite store URL looks like sqlite:///callbacks.db")
    path = Path(rest[1:])  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    if not path.is_absolute():
        path = (base_dir or Path(os.getcwd())) / path
    return path
