"""SQLite inbox: WAL, ``synchronous=FULL``, and group commit with the fsync off the event loop.

Writes are batched: each batch runs in one transaction and is committed once, and callbacks that
arrive while a commit (its fsync) is running share the next one. The statements themselves run on
the event loop, where they take microseconds; only ``COMMIT`` goes to a thread of its own. Why
not run the statements in that thread too: the sqlite3 module lets go of the GIL around every
SQLite step, and a thread running them has to win the GIL back from the busy event loop at each
one, which stalls every batch under load. If another process holds the write lock (the CLI
purging, say), the batch runs wholly in the commit thread so the loop never waits for it.

Several serving processes (``callbacks serve --workers N``) may share a file: each group-commits
on its own and holds the write lock from ``BEGIN IMMEDIATE`` to ``COMMIT`` only, taking turns
through ``<db>.write-lock``; claims are leases, so a dead worker's claims come back when they
lapse (see sqlite_locks.py for both lock files). The CLI may read and write beside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from callbacks.errors import StoreUnavailable
from callbacks.store.base import (
    FILTER_INDEXES,
    SCHEMA_VERSION,
    Accepted,
    EventFilter,
    InboundCallback,
    KeyUsage,
    Lease,
    Outcome,
    StoredEvent,
    check_schema_version,
    duplicate_digest,
    event_columns,
    event_from_row,
    first_id_from,
    purge_where,
    replay_updates,
    replay_where,
)
from callbacks.store.group_commit import GroupCommit
from callbacks.store.rekey import PAGE, rekeyed
from callbacks.store.sqlite_locks import ServerLock, WriteLock

T = TypeVar("T")
_MAX_BATCH = 512
_COUNT = "SELECT COUNT(*) FROM events"
_DELETE = "DELETE FROM events"

# Twelve parameters a row; SQLite before 3.32 allows 999 per statement.
_ROWS_PER_INSERT = 80
# Outcomes wait this long (seconds) for a batch of callbacks to ride in (see GroupCommit).
_OUTCOME_LINGER = 0.02

# Schema 1: the tables. Later versions change them in :data:`_MIGRATIONS`.
_SCHEMA_1 = (
    """CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    provider TEXT NOT NULL,
    event_type TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
    duplicate_of TEXT,
    key_id TEXT,
    received_at REAL NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    claimed_until REAL,
    claimed_by TEXT,
    handler_state TEXT NOT NULL DEFAULT '{}',
    last_error TEXT,
    updated_at REAL NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_at) WHERE status = 'pending'",
    "CREATE INDEX IF NOT EXISTS events_key_usage ON events (route, key_id, received_at)",
    "CREATE INDEX IF NOT EXISTS events_received ON events (received_at)",
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
)


def _create_tables(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_1:
        conn.execute(statement)


def _rekey_events(conn: sqlite3.Connection) -> None:
    """Schema 2: unambiguous dedupe keys over all of a body's content (see rekey.py)."""
    seen: set[str] = set()
    last = ""
    while True:
        rows = conn.execute(
            "SELECT id, route, provider, body FROM events "
            "WHERE id > ? AND dedupe_key IS NOT NULL ORDER BY id LIMIT ?",
            (last, PAGE),
        ).fetchall()
        if not rows:
            return
        conn.executemany("UPDATE events SET dedupe_key = ? WHERE id = ?", rekeyed(rows, seen))
        last = rows[-1][0]


def _strip_duplicate_bodies(conn: sqlite3.Connection) -> None:
    """Schema 2: a duplicate keeps the digest of its body, not the body."""
    conn.execute("ALTER TABLE events ADD COLUMN body_sha256 TEXT")
    last = ""
    while True:
        rows = conn.execute(
            "SELECT id, body FROM events WHERE id > ? AND status = 'duplicate' ORDER BY id LIMIT ?",
            (last, PAGE),
        ).fetchall()
        if not rows:
            return
        conn.executemany(
            "UPDATE events SET body_sha256 = ?, body = X'' WHERE id = ?",
            [(duplicate_digest(body), event_id) for event_id, body in rows],
        )
        last = rows[-1][0]


def _schema_2(conn: sqlite3.Connection) -> None:
    _rekey_events(conn)
    _strip_duplicate_bodies(conn)


def _schema_3(conn: sqlite3.Connection) -> None:
    """Schema 3: dead and unhandled events counted by route without reading the whole table."""
    conn.execute(
        "CREATE INDEX IF NOT EXISTS events_for_operator ON events (status, route) "
        "WHERE status IN ('dead', 'unhandled')"
    )


def _schema_4(conn: sqlite3.Connection) -> None:
    """Schema 4: the operator's lists by route read one index range however many events are
    stored (see ``FILTER_INDEXES``)."""
    for statement in FILTER_INDEXES:
        conn.execute(statement.format(events="events"))


def _schema_5(conn: sqlite3.Connection) -> None:
    """Schema 5: two index entries fewer per callback (see ``SCHEMA_VERSION`` in base.py).
    Key usage (each key's last verification) moves to a row per key, which every batch
    updates once; the day's counts are read off the id range."""
    conn.execute(
        "CREATE TABLE key_usage (route TEXT NOT NULL, key_id TEXT NOT NULL, "
        "last_verified_at REAL NOT NULL, PRIMARY KEY (route, key_id))"
    )
    conn.execute(
        "INSERT INTO key_usage (route, key_id, last_verified_at) "
        "SELECT route, key_id, MAX(received_at) FROM events WHERE key_id IS NOT NULL "
        "GROUP BY route, key_id"
    )
    conn.execute("DROP INDEX IF EXISTS events_key_usage")
    conn.execute("DROP INDEX IF EXISTS events_received")


# Each step brings the schema to its version; a fresh file runs them all. In version order.
_MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (1, _create_tables),
    (2, _schema_2),
    (3, _schema_3),
    (4, _schema_4),
    (5, _schema_5),
)

_COLUMNS = event_columns()
# The same columns as JSON values: the body as hex (any bytes survive), the handler state as the
# JSON text it is stored as.
_PACKED_COLUMNS = event_columns(body="hex({})")


def _unpack(row: list[Any]) -> StoredEvent:
    row[6] = bytes.fromhex(row[6])
    return event_from_row(row)


class _Job:
    """One write. ``atomic`` jobs run several statements and get a savepoint of their own; a
    single statement needs none, since SQLite undoes a failed statement by itself."""

    __slots__ = ("atomic", "callback", "error", "fn", "lease", "result")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any] | None,
        *,
        atomic: bool = False,
        callback: InboundCallback | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.fn = fn  # None for an accepted callback: those are inserted together
        self.atomic = atomic
        self.callback = callback
        self.lease = lease
        self.result: Any = None
        self.error: BaseException | None = None


class SQLiteStore:
    """``write_timeout``: how long a write waits for another process's write lock (the CLI
    purging, say) before it fails with :class:`StoreUnavailable`."""

    def __init__(self, path: Path, *, write_timeout: float = 10.0) -> None:
        self.path = path
        self._busy_ms = max(1, round(write_timeout * 1000))
        self._conn: sqlite3.Connection | None = None
        self._commits: GroupCommit[_Job, Any] = GroupCommit(
            self._write_jobs, max_batch=_MAX_BATCH, name="sqlite-group-commit"
        )
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        self._read_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._server_lock: ServerLock | None = None
        self._write_lock = WriteLock(path)

    # -- lifecycle -----------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_ms / 1000,
        )
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    async def open(self) -> None:
        await self._start(create=False)

    async def upgrade(self) -> int:
        await self._start(create=True)
        return SCHEMA_VERSION

    async def _start(self, *, create: bool) -> None:
        if self._conn is not None:
            if create:  # a transaction of its own: keep it off the batches' connection
                await asyncio.to_thread(self._create_on_side_connection)
            return
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _create_private(self.path)
            conn = self._connect()
            conn.execute("PRAGMA journal_mode = WAL")
            if create:
                _create_schema(conn)
            version = _schema_version(conn)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc.strerror}") from exc
        try:
            check_schema_version(version, store=f"SQLite store {self.path}")
        except BaseException:
            conn.close()
            raise
        conn.execute("PRAGMA busy_timeout = 0")  # the loop never waits for the lock: see _run_batch
        # A batch's multi-row INSERT and the outcomes' UPDATE keep a statement journal (so one
        # can be undone alone), which past 64 KiB spills to a temporary file: a pwrite for each
        # page the batch touches, on the loop. In memory it is a batch's pages at most, and the
        # INSERT alone takes 7-8 µs a row instead of 15 (bench/README.md). Only here: the reader's
        # sorts for large lists keep spilling to disk rather than growing the process.
        conn.execute("PRAGMA temp_store = MEMORY")
        self._conn = conn
        self._reader = self._connect()

    def _create_on_side_connection(self) -> None:
        conn = self._connect()
        try:
            _create_schema(conn)
        finally:
            conn.close()

    async def recover(self) -> None:
        """Join the processes serving the file; the first one in releases every claim, which
        only a dead process can hold. With others serving, claims come back as leases lapse."""
        if self._server_lock is not None:
            return
        lock = ServerLock(self.path)
        try:
            alone = await asyncio.to_thread(lock.join)
        except OSError as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc.strerror}") from exc
        self._server_lock = lock
        if not alone:
            return
        try:
            await self._write(
                lambda c: c.execute(
                    "UPDATE events SET claimed_until = NULL, claimed_by = NULL "
                    "WHERE claimed_until IS NOT NULL"
                )
            )
        except StoreUnavailable:
            pass  # the write lock is held elsewhere too long: the claims lapse with their leases
        finally:
            lock.share()

    async def close(self) -> None:
        await self._commits.drain()  # what was accepted is committed before the store closes
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._committer.shutdown(wait=True)
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._write_lock.close()
        if self._server_lock is not None:
            self._server_lock.close()
            self._server_lock = None

    # -- batches -------------------------------------------------------------------------------

    async def _submit(self, job: _Job, *, linger: float = 0.0) -> Any:
        if self._conn is None:
            raise StoreUnavailable("the SQLite store is not open")
        return await self._commits.submit(job, linger=linger)

    async def _write_jobs(self, batch: list[_Job]) -> list[Any]:
        try:
            await self._run_batch(batch)
        except Exception as exc:
            return [_as_unavailable(exc)] * len(batch)
        return [job.result if job.error is None else job.error for job in batch]

    async def _run_batch(self, batch: list[_Job]) -> None:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        await self._take_write_lock(loop)
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
                await loop.run_in_executor(
                    self._committer, _run_batch_waiting, conn, batch, self._busy_ms
                )
                return
            _run_jobs(conn, batch)
            # From here the connection belongs to the commit thread until it is done; shielded,
            # so a cancelled flusher cannot touch the connection while the COMMIT runs.
            await asyncio.shield(
                loop.run_in_executor(self._committer, _commit, conn, self._write_lock)
            )
        finally:
            self._write_lock.give_back()

    async def _take_write_lock(self, loop: asyncio.AbstractEventLoop) -> None:
        """Our turn to write among the processes serving the file: at once if no other is
        writing, else in the commit thread, woken when the other's commit is done (a request
        that cannot wait that long is answered 503 by the intake meanwhile)."""
        if self._write_lock.try_take():
            return
        taking = loop.run_in_executor(self._committer, self._write_lock.take)
        try:
            await asyncio.shield(taking)
        except asyncio.CancelledError:
            taking.add_done_callback(lambda _: self._write_lock.give_back())
            raise

    async def _write(
        self, fn: Callable[[sqlite3.Connection], T], *, atomic: bool = False, linger: float = 0.0
    ) -> T:
        return await self._submit(_Job(fn, atomic=atomic), linger=linger)  # type: ignore[no-any-return]

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._reader is None:
                raise StoreUnavailable("the SQLite store is not open")
            with self._read_lock:
                try:
                    return fn(self._reader)
                except sqlite3.Error as exc:
                    raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

        return await asyncio.to_thread(run)

    # -- receiving -----------------------------------------------------------------------------

    async def accept(self, callback: InboundCallback, lease: Lease | None = None) -> Accepted:
        job = _Job(None, callback=callback, lease=lease)
        return await self._submit(job)  # type: ignore[no-any-return]

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    # -- dispatching ---------------------------------------------------------------------------

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredEvent]:
        def run(conn: sqlite3.Connection) -> list[StoredEvent]:
            # Three statements whatever the count (see _accept_all on why steps are expensive):
            # pick the ids, lease them, read them back as one JSON document.
            picked = conn.execute(
                "SELECT group_concat(id) FROM (SELECT id FROM events WHERE status = 'pending' "
                "AND next_attempt_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) "
                "ORDER BY next_attempt_at LIMIT ?)",
                (now, now, limit),
            ).fetchone()[0]
            if not picked:
                return []
            ids = picked.split(",")
            marks = ",".join("?" * len(ids))
            conn.execute(
                f"UPDATE events SET claimed_until = ?, claimed_by = ? WHERE id IN ({marks})",  # noqa: S608
                (now + lease_seconds, owner, *ids),
            )
            packed = conn.execute(
                f"SELECT json_group_array(json_array({_PACKED_COLUMNS})) FROM events "  # noqa: S608
                f"WHERE id IN ({marks})",
                ids,
            ).fetchone()[0]
            return sorted((_unpack(row) for row in orjson.loads(packed)), key=lambda e: e.id)

        return await self._write(run)

    async def finish_many(self, outcomes: Sequence[tuple[str, Outcome]], *, owner: str) -> int:
        return len(await self.finish([(event_id, owner, o) for event_id, o in outcomes]))

    async def finish(self, outcomes: Sequence[tuple[str, str, Outcome]]) -> set[str]:
        if not outcomes:
            return set()
        packed = orjson.dumps(
            [
                [
                    event_id,
                    o.status,
                    o.attempts,
                    o.next_attempt_at,
                    dict(o.handler_state),
                    o.last_error,
                    owner,
                ]
                for event_id, owner, o in outcomes
            ]
        )
        refuted = [event_id for event_id, _, o in outcomes if o.status == "refuted"]

        # Two statements whatever the count (RETURNING would be a step per row, see
        # _accept_all): which claims are still their owner's, then the update of those. The
        # outcomes travel as one JSON array, each with the owner whose claim it must be.
        def run(conn: sqlite3.Connection) -> set[str]:
            now = time.time()
            held = _held_by_owner(conn, packed, owner_at=6)
            if held:
                conn.execute(
                    "UPDATE events SET status = json_extract(o.value, '$[1]'), "
                    "attempts = json_extract(o.value, '$[2]'), "
                    "next_attempt_at = json_extract(o.value, '$[3]'), "
                    "handler_state = json_extract(o.value, '$[4]'), "
                    "last_error = json_extract(o.value, '$[5]'), "
                    "claimed_until = NULL, claimed_by = NULL, updated_at = ? "
                    "FROM json_each(?) AS o "
                    "WHERE events.id = json_extract(o.value, '$[0]') "
                    "AND events.claimed_by = json_extract(o.value, '$[6]')",
                    (now, packed),
                )
            for event_id in refuted:
                if event_id in held:  # only a refutation this run still held gives up the key
                    _release_refuted(conn, event_id, now)
            return held

        return await self._write(run, linger=_OUTCOME_LINGER)

    async def renew(self, leases: Sequence[tuple[str, str]], *, until: float) -> set[str]:
        if not leases:
            return set()
        packed = orjson.dumps(list(leases))

        def run(conn: sqlite3.Connection) -> set[str]:
            # Each lease travels with its owner: only a claim that is still that owner's is
            # extended, so a lapsed one taken over by another claimer stays theirs.
            held = _held_by_owner(conn, packed, owner_at=1)
            if held:
                conn.execute(
                    "UPDATE events SET claimed_until = ? FROM json_each(?) AS l "
                    "WHERE events.id = json_extract(l.value, '$[0]') "
                    "AND events.claimed_by = json_extract(l.value, '$[1]')",
                    (until, packed),
                )
            return held

        return await self._write(run)

    # -- operating -----------------------------------------------------------------------------

    async def get(self, id_prefix: str) -> StoredEvent | None:
        def run(conn: sqlite3.Connection) -> StoredEvent | None:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id >= ? AND id < ? LIMIT 2",  # noqa: S608
                (id_prefix, id_prefix + "\U0010ffff"),
            ).fetchall()
            return event_from_row(rows[0]) if len(rows) == 1 else None

        return await self._read(run)

    async def list_events(self, where: EventFilter) -> list[StoredEvent]:
        clauses, params = where.where_sql("?")
        sql = f"SELECT {_COLUMNS} FROM events{clauses} ORDER BY id DESC LIMIT ?"  # noqa: S608
        return await self._read(
            lambda c: [event_from_row(r) for r in c.execute(sql, (*params, where.limit))]
        )

    async def requeue(
        self,
        ids: Sequence[str] = (),
        *,
        dead: bool = False,
        route: str | None = None,
        unhandled: bool = False,
    ) -> int:
        selection = replay_where(ids, dead=dead, route=route, placeholder="?", unhandled=unhandled)
        if selection is None:
            return 0
        where, params = selection
        now = time.time()

        def run(conn: sqlite3.Connection) -> int:
            rows = conn.execute(f"SELECT id, handler_state FROM events{where}", params).fetchall()  # noqa: S608
            conn.executemany(_REQUEUE_SQL, replay_updates(rows, now))
            return len(rows)

        return await self._write(run, atomic=True)

    async def purge(
        self, before: float, *, include_dead: bool = False, dry_run: bool = False
    ) -> int:
        where, params = purge_where(before, include_dead=include_dead, placeholder="?")
        if dry_run:
            return int(await self._read(lambda c: c.execute(_COUNT + where, params).fetchone()[0]))
        return await self._write(lambda c: c.execute(_DELETE + where, params).rowcount)

    async def key_usage(self, now: float) -> list[KeyUsage]:
        since = now - 86400

        def run(conn: sqlite3.Connection) -> list[KeyUsage]:
            last = conn.execute(
                "SELECT route, key_id, last_verified_at FROM key_usage ORDER BY route, key_id"
            ).fetchall()
            counted = conn.execute(
                "SELECT route, key_id, COUNT(*) FROM events WHERE id >= ? AND received_at >= ? "
                "AND key_id IS NOT NULL GROUP BY route, key_id",
                (first_id_from(since) or "", since),
            ).fetchall()
            counts = {(route, key_id): n for route, key_id, n in counted}
            return [KeyUsage(r, k, at, counts.get((r, k), 0)) for r, k, at in last]

        return await self._read(run)

    async def waiting_for_operator(self) -> dict[tuple[str, str], int]:
        rows = await self._read(
            lambda c: c.execute(
                "SELECT route, status, COUNT(*) FROM events "
                "WHERE status IN ('dead', 'unhandled') GROUP BY status, route"
            ).fetchall()
        )
        return {(route, status): count for route, status, count in rows}

    async def inbox_depth(self) -> int:
        return int(
            await self._read(
                lambda c: c.execute(
                    "SELECT COUNT(*) FROM events WHERE status = 'pending'"
                ).fetchone()[0]
            )
        )


_REQUEUE_SQL = (
    "UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = ?, handler_state = ?, "
    "last_error = NULL, claimed_until = NULL, claimed_by = NULL, updated_at = ? WHERE id = ?"
)

_INSERT_DUPLICATE = (
    "INSERT INTO events (id, route, provider, event_type, duplicate_of, key_id, received_at, "
    "body, body_sha256, status, next_attempt_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, X'', ?, 'duplicate', ?, ?)"
)


def _row(cb: InboundCallback, original: str) -> tuple[Any, ...]:
    """Parameters for the duplicate insert: metadata and the body's digest, not the body."""
    return (
        cb.delivery_id,
        cb.route,
        cb.provider,
        cb.event_type,
        original,
        cb.key_id,
        cb.received_at,
        duplicate_digest(cb.body),
        cb.received_at,
        cb.received_at,
    )


def _accept_all(conn: sqlite3.Connection, jobs: list[_Job]) -> None:
    """Insert a batch's callbacks with one statement, then record the duplicates.

    One multi-row INSERT is one SQLite step. That matters more than it seems: the sqlite3 module
    lets go of the GIL around every step and must win it back from whichever thread took it
    meanwhile, so a statement per row would stall the batch once per row. A callback whose
    dedupe key was taken (by an earlier event or earlier in this batch) is not inserted; when the
    change count says that happened, one look-up finds which, and each is stored as a duplicate.
    """
    if not jobs:
        return
    callbacks = [job.callback for job in jobs if job.callback is not None]
    _record_key_usage(conn, callbacks)
    before = conn.total_changes
    for start in range(0, len(jobs), _ROWS_PER_INSERT):
        chunk = jobs[start : start + _ROWS_PER_INSERT]
        conn.execute(_insert_pending_sql(len(chunk)), _flat(chunk))
    if conn.total_changes - before == len(callbacks):
        for job, cb in zip(jobs, callbacks, strict=True):
            job.result = Accepted(cb.delivery_id)
        return
    ids = [cb.delivery_id for cb in callbacks]
    marks = ",".join("?" * len(ids))
    found = conn.execute(
        f"SELECT group_concat(id) FROM events WHERE id IN ({marks})",  # noqa: S608
        ids,
    ).fetchone()[0]
    inserted = set(found.split(",")) if found else set()
    for job, cb in zip(jobs, callbacks, strict=True):
        job.result = (
            Accepted(cb.delivery_id) if cb.delivery_id in inserted else _duplicate(conn, cb)
        )


def _record_key_usage(conn: sqlite3.Connection, callbacks: list[InboundCallback]) -> None:
    """Each key's latest verification in the batch, one row per key (duplicates count: a retry
    verified with the key too). One statement a batch instead of an index entry per event."""
    latest: dict[tuple[str, str], float] = {}
    for cb in callbacks:
        if cb.key_id is not None and latest.get((cb.route, cb.key_id), -1.0) < cb.received_at:
            latest[cb.route, cb.key_id] = cb.received_at
    if not latest:
        return
    params: list[Any] = []
    for (route, key_id), at in latest.items():
        params += (route, key_id, at)
    conn.execute(_record_key_usage_sql(len(latest)), params)


@functools.lru_cache(maxsize=64)
def _record_key_usage_sql(keys: int) -> str:
    values = ",".join(["(?, ?, ?)"] * keys)
    # Only placeholders are formatted in: the values are bound.
    return (
        f"INSERT INTO key_usage (route, key_id, last_verified_at) VALUES {values} "  # noqa: S608
        "ON CONFLICT (route, key_id) DO UPDATE SET "
        "last_verified_at = max(last_verified_at, excluded.last_verified_at)"
    )


@functools.lru_cache(maxsize=_ROWS_PER_INSERT)
def _insert_pending_sql(rows: int) -> str:
    values = ",".join(["(?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)"] * rows)
    columns = "id, route, provider, event_type, dedupe_key, key_id, received_at, body, status, "
    columns += "next_attempt_at, updated_at, claimed_by, claimed_until"
    # Only placeholders are formatted in: the values are bound.
    return f"INSERT INTO events ({columns}) VALUES {values} ON CONFLICT (dedupe_key) DO NOTHING"  # noqa: S608


def _flat(jobs: list[_Job]) -> list[Any]:
    params: list[Any] = []
    for job in jobs:
        cb, lease = job.callback, job.lease
        assert cb is not None
        params += (
            cb.delivery_id,
            cb.route,
            cb.provider,
            cb.event_type,
            cb.dedupe_key,
            cb.key_id,
            cb.received_at,
            cb.body,
            cb.received_at,
            cb.received_at,
            None if lease is None else lease.owner,
            None if lease is None else lease.until,
        )
    return params


def _release_refuted(conn: sqlite3.Connection, event_id: str, now: float) -> None:
    """A refuted event gives up its dedupe key: the same content sent again later is a new
    event, confirmed again (its duplicates so far carry that refuted content, and stay so)."""
    conn.execute(
        "UPDATE events SET dedupe_key = NULL, updated_at = ? WHERE id = ? AND status = 'refuted'",
        (now, event_id),
    )


def _duplicate(conn: sqlite3.Connection, cb: InboundCallback) -> Accepted:
    original = conn.execute(
        "SELECT id FROM events WHERE dedupe_key = ?", (cb.dedupe_key,)
    ).fetchone()[0]
    conn.execute(_INSERT_DUPLICATE, _row(cb, original))
    return Accepted(cb.delivery_id, duplicate_of=original)


def _run_batch_waiting(conn: sqlite3.Connection, batch: list[_Job], busy_ms: int) -> None:
    """The whole batch in the commit thread, waiting up to ``busy_ms`` for another process's
    write lock. One wait per batch, and callbacks whose requests gave up meanwhile are not in
    the next batch (see GroupCommit), so waits do not stack past what a request allows."""
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    try:
        conn.execute("BEGIN IMMEDIATE")
        _run_jobs(conn, batch)
        _commit(conn, None)
    finally:
        conn.execute("PRAGMA busy_timeout = 0")


def _held_by_owner(conn: sqlite3.Connection, packed: bytes, *, owner_at: int) -> set[str]:
    """Of the JSON array's ``[id, ...]`` items, the ids whose claim is the owner's at index
    ``owner_at`` (one step: the ids come back as one text)."""
    found = conn.execute(
        "SELECT group_concat(events.id) FROM json_each(?) AS o JOIN events "
        "ON events.id = json_extract(o.value, '$[0]') "
        "AND events.claimed_by = json_extract(o.value, ?)",
        (packed, f"$[{owner_at}]"),
    ).fetchone()[0]
    return set(found.split(",")) if found else set()


def _commit(conn: sqlite3.Connection, write_lock: WriteLock | None) -> None:
    """COMMIT, or ROLLBACK if it fails, so the connection never stays inside a transaction;
    then the write lock goes to the next process at once, not after a hop back to the loop."""
    try:
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    finally:
        if write_lock is not None:
            write_lock.give_back()


def _run_jobs(conn: sqlite3.Connection, batch: list[_Job]) -> None:
    """A batch's statements, inside its transaction; if they fail, the transaction is undone."""
    try:
        _run_each(conn, batch)
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def _run_each(conn: sqlite3.Connection, batch: list[_Job]) -> None:
    """Callbacks together in one insert, then the other jobs one by one."""
    _accept_all(conn, [job for job in batch if job.callback is not None])
    for job in batch:
        if job.fn is None:
            continue
        if job.atomic:
            _run_atomic(conn, job)
            continue
        try:
            job.result = job.fn(conn)
        except Exception as exc:
            job.error = _as_unavailable(exc)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _run_atomic(conn: sqlite3.Connection, job: _Job) -> None:
    assert job.fn is not None
    conn.execute("SAVEPOINT job")
    try:
        job.result = job.fn(conn)
    except Exception as exc:
        conn.execute("ROLLBACK TO job")
        job.error = _as_unavailable(exc)
    conn.execute("RELEASE job")


def _create_private(path: Path) -> None:
    """Create the database file 0600 if it does not exist: it holds every payload and the raw
    signatures. SQLite gives its ``-wal`` and ``-shm`` files the database file's mode (whatever
    the umask), so they follow. An existing file keeps the mode its owner gave it."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _create_schema(conn: sqlite3.Connection) -> None:
    """Apply the missing migrations, all in one write transaction (all or nothing). A schema
    already current takes no write: a worker starting while another process holds the write lock
    (a CLI purge) need not wait for it, nor fail its start if the wait is long."""
    if _schema_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _schema_version(conn) or 0
        if current < SCHEMA_VERSION:
            for version, step in _MIGRATIONS:
                if version > current:
                    step(conn)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _schema_version(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else row[0]


def _as_unavailable(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        return StoreUnavailable(f"SQLite write failed: {exc}")
    return exc
