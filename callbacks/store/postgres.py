"""PostgreSQL inbox: several receiver replicas share one database.

Same behaviour as :class:`callbacks.store.sqlite.SQLiteStore`, with these differences:

- Durability: every write is a transaction committed with ``synchronous_commit`` on (turned
  back on for our sessions if the server has it off).
- Group commit, as for SQLite, but for the client's sake: the server already groups concurrent
  WAL flushes, while each statement costs the Python client a few hundred microseconds of CPU.
  One flusher per process takes every callback waiting, inserts them with one multi-row
  statement in one transaction, and starts the next batch as soon as that commit returns, so a
  lone callback is written at once and a crowd shares round trips. If a batch fails for a reason
  other than the connection, its callbacks are written one by one, so one bad row cannot fail
  its neighbours.
- Claims are leases (a visibility timeout): a replica that dies holding a claim cannot be told
  apart from a slow live one, so nobody releases it early; the events become claimable again once
  ``claimed_until`` has passed. :meth:`PostgresStore.recover` is therefore a no-op. Replicas compare
  their own clocks to the leases, so keep their clocks in sync (NTP).
- Error messages never contain the store URL (it may hold a password).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

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
    purge_where,
    replay_updates,
    replay_where,
)
from callbacks.store.group_commit import GroupCommit
from callbacks.store.rekey import PAGE, rekeyed

Connection = psycopg.AsyncConnection[TupleRow]
_Leased = tuple[InboundCallback, Lease | None]  # what accept() queues for the group commit

EVENTS = "avatar_callbacks_events"
VERSIONS = "avatar_callbacks_schema_version"

# Two-key advisory lock: this constant namespaces it, the second key is the schema's name hash,
# so upgrades of different schemas in one database do not wait for each other.
_UPGRADE_LOCK = 0x41564342  # "AVCB"
_MAX_BATCH = 256

# Schema 1. ``id`` uses the "C" collation: ids are hex and sort by arrival, and byte order makes
# the primary key index serve prefix look-ups (LIKE 'abc%') and newest-first listing whatever the
# database's default collation is.
_SCHEMA_1: tuple[str, ...] = (
    f"""CREATE TABLE IF NOT EXISTS {EVENTS} (
        id TEXT COLLATE "C" PRIMARY KEY,
        route TEXT NOT NULL,
        provider TEXT NOT NULL,
        event_type TEXT NOT NULL,
        dedupe_key TEXT,
        duplicate_of TEXT,
        key_id TEXT,
        received_at DOUBLE PRECISION NOT NULL,
        body BYTEA NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at DOUBLE PRECISION NOT NULL,
        claimed_until DOUBLE PRECISION,
        claimed_by TEXT,
        handler_state JSONB NOT NULL DEFAULT '{{}}'::jsonb,
        last_error TEXT,
        updated_at DOUBLE PRECISION NOT NULL,
        CONSTRAINT {EVENTS}_dedupe_key UNIQUE (dedupe_key)
    )""",
    f"CREATE INDEX IF NOT EXISTS {EVENTS}_due ON {EVENTS} (next_attempt_at) "
    "WHERE status = 'pending'",
    f"CREATE INDEX IF NOT EXISTS {EVENTS}_key_usage ON {EVENTS} (route, key_id, received_at)",
    f"CREATE INDEX IF NOT EXISTS {EVENTS}_received ON {EVENTS} (received_at)",
    f"CREATE TABLE IF NOT EXISTS {VERSIONS} (version INTEGER NOT NULL)",
)


async def _rekey_events(conn: Connection) -> None:
    """Schema 2: unambiguous dedupe keys over all of a body's content (see rekey.py)."""
    seen: set[str] = set()
    last = ""
    while True:
        cur = await conn.execute(
            f"SELECT id, route, provider, body FROM {EVENTS} "  # noqa: S608
            "WHERE id > %s AND dedupe_key IS NOT NULL ORDER BY id LIMIT %s",
            (last, PAGE),
        )
        rows = await cur.fetchall()
        if not rows:
            return
        updates = rekeyed(rows, seen)
        if updates:
            await cur.executemany(
                f"UPDATE {EVENTS} SET dedupe_key = %s WHERE id = %s",  # noqa: S608
                updates,
            )
        last = rows[-1][0]


Step = str | Callable[[Connection], Awaitable[None]]

# Each entry brings the schema to its version, in the upgrade transaction: SQL statements, or a
# coroutine for a data step. A fresh schema runs them all. In version order.
_MIGRATIONS: tuple[tuple[int, tuple[Step, ...]], ...] = (
    (1, _SCHEMA_1),
    (
        2,
        (
            _rekey_events,
            f"ALTER TABLE {EVENTS} ADD COLUMN IF NOT EXISTS body_sha256 TEXT",
            f"UPDATE {EVENTS} SET body_sha256 = encode(sha256(body), 'hex'), body = ''::bytea "  # noqa: S608
            "WHERE status = 'duplicate'",
        ),
    ),
    (
        3,
        (
            # Dead and unhandled events counted by route (the metrics) without a table scan.
            f"CREATE INDEX IF NOT EXISTS {EVENTS}_for_operator ON {EVENTS} (status, route) "
            "WHERE status IN ('dead', 'unhandled')",
        ),
    ),
    (4, tuple(statement.format(events=EVENTS) for statement in FILTER_INDEXES)),
    # Time ranges also bound the id, which the primary key serves (see SCHEMA_VERSION). Key
    # usage keeps its index here: a row per key, as SQLite has, would be a row lock that every
    # replica's batch takes until its commit.
    (5, (f"DROP INDEX IF EXISTS {EVENTS}_received",)),
)


def _columns(alias: str = "") -> str:
    """The columns :func:`event_from_row` reads (qualified when joining), the JSONB as text."""
    return event_columns(alias, handler_state="{}::text")


# A batch: the new events in one statement (a dedupe key taken, in the table or earlier in the
# batch, inserts nothing), then the originals of those that were not inserted, then their
# duplicate rows. In one transaction each statement sees what committed before it started, so an
# original that a racing replica committed while our insert waited for it is found.
_BATCH_INSERT_SQL = f"""
INSERT INTO {EVENTS} (id, route, provider, event_type, dedupe_key, key_id, received_at, body,
                      status, next_attempt_at, updated_at, claimed_by, claimed_until)
SELECT id, route, provider, event_type, dedupe_key, key_id, received_at, body,
       'pending', received_at, received_at, claimed_by, claimed_until
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::float8[], %s::bytea[], %s::text[], %s::float8[])
     AS t(id, route, provider, event_type, dedupe_key, key_id, received_at, body, claimed_by,
          claimed_until)
ON CONFLICT (dedupe_key) DO NOTHING
RETURNING id
"""  # noqa: S608 - table names are constants

_ORIGINALS_SQL = f"SELECT dedupe_key, id FROM {EVENTS} WHERE dedupe_key = ANY(%s)"  # noqa: S608

# A duplicate keeps its metadata and the digest of its body, not the body: replays of one large
# callback must not fill the disk.
_BATCH_DUPLICATES_SQL = f"""
INSERT INTO {EVENTS} (id, route, provider, event_type, duplicate_of, key_id, received_at, body,
                      body_sha256, status, next_attempt_at, updated_at)
SELECT id, route, provider, event_type, duplicate_of, key_id, received_at, ''::bytea,
       body_sha256, 'duplicate', received_at, received_at
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
            %s::float8[], %s::text[])
     AS t(id, route, provider, event_type, duplicate_of, key_id, received_at, body_sha256)
"""  # noqa: S608

# The due rows are locked with SKIP LOCKED so concurrent claimers take disjoint sets without
# waiting; a row claimed and committed meanwhile is re-checked against the WHERE and dropped.
_CLAIM_SQL = f"""
WITH due AS MATERIALIZED (
    SELECT id FROM {EVENTS}
    WHERE status = 'pending' AND next_attempt_at <= %(now)s
      AND (claimed_until IS NULL OR claimed_until < %(now)s)
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE {EVENTS} AS e SET claimed_until = %(until)s, claimed_by = %(owner)s
FROM due WHERE e.id = due.id
RETURNING {_columns("e")}
"""  # noqa: S608

_FINISH_SQL = f"""
UPDATE {EVENTS} AS e SET status = t.status, attempts = t.attempts,
    next_attempt_at = t.next_attempt_at, handler_state = t.handler_state::jsonb,
    last_error = t.last_error, claimed_until = NULL, claimed_by = NULL, updated_at = %s
FROM unnest(%s::text[], %s::text[], %s::int[], %s::float8[], %s::text[], %s::text[], %s::text[])
     AS t(id, status, attempts, next_attempt_at, handler_state, last_error, owner)
WHERE e.id = t.id AND e.claimed_by = t.owner
RETURNING e.id
"""  # noqa: S608

# Each lease travels with its owner: only a claim still that owner's is extended.
_RENEW_SQL = f"""
UPDATE {EVENTS} AS e SET claimed_until = %s
FROM unnest(%s::text[], %s::text[]) AS l(id, owner)
WHERE e.id = l.id AND e.claimed_by = l.owner
RETURNING e.id
"""  # noqa: S608

_REQUEUE_SQL = f"""
UPDATE {EVENTS} SET status = 'pending', attempts = 0, next_attempt_at = %s,
    handler_state = %s::jsonb, last_error = NULL, claimed_until = NULL, claimed_by = NULL,
    updated_at = %s
WHERE id = %s
"""  # noqa: S608

_KEY_USAGE_SQL = f"""
SELECT route, key_id, MAX(received_at), COUNT(*) FILTER (WHERE received_at >= %s)
FROM {EVENTS} WHERE key_id IS NOT NULL
GROUP BY route, key_id ORDER BY route, key_id
"""  # noqa: S608


async def _release_refuted(conn: Connection, event_id: str, now: float) -> None:
    """A refuted event gives up its dedupe key: the same content sent again later is a new
    event, confirmed again (its duplicates so far carry that refuted content, and stay so)."""
    await conn.execute(
        f"UPDATE {EVENTS} SET dedupe_key = NULL, updated_at = %s "  # noqa: S608
        "WHERE id = %s AND status = 'refuted'",
        (now, event_id),
    )


class PostgresStore:
    """The inbox in PostgreSQL, through a small async connection pool.

    ``min_size`` keeps one connection warm; ``max_size`` bounds what one replica takes from the
    server's ``max_connections``. ``timeout`` bounds how long a request waits for a connection
    (or to connect) before it fails with :class:`StoreUnavailable`, so the receiver answers 503
    while the provider still waits, rather than hanging. ``write_timeout`` bounds each write of
    accepted callbacks in the server (``lock_timeout`` and ``statement_timeout`` for its
    transaction), so a table lock held elsewhere fails the write rather than holding the request
    and a pooled connection for as long as the lock lasts.
    """

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 5.0,
        write_timeout: float | None = None,
    ) -> None:
        self._url = url
        # BEGIN and the write's limits in one round trip (SET LOCAL takes no parameters, so
        # only an int of milliseconds is formatted in).
        self._begin_write = "BEGIN"
        if write_timeout is not None:
            ms = max(1, round(write_timeout * 1000))
            self._begin_write += (
                f"; SET LOCAL lock_timeout = {ms}; SET LOCAL statement_timeout = {ms}"
            )
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._secret: str | None = None
        self._pool_check: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(max_size)
        self._commits: GroupCommit[_Leased, Accepted] = GroupCommit(
            self._write_batch, max_batch=_MAX_BATCH, name="store-group-commit"
        )

    def __repr__(self) -> str:  # never show the URL: it may hold a password
        return "PostgresStore()"

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        await self._start(upgrade=False)

    async def upgrade(self) -> int:
        await self._start(upgrade=True)
        return SCHEMA_VERSION

    async def _start(self, *, upgrade: bool) -> None:
        """Check (or migrate) the schema on a connection of its own, then open the pool.

        The direct connection reports the real connection error (bad password, unknown
        database...), where a pool that cannot fill up would only report a timeout.
        """
        conninfo = self._conninfo()
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreUnavailable(self._describe(exc)) from exc
        try:
            async with conn:
                version = await (_migrate(conn) if upgrade else _schema_version(conn))
        except psycopg.Error as exc:
            raise StoreUnavailable(self._describe(exc)) from exc
        check_schema_version(version, store="the PostgreSQL store")
        if self._pool is None:
            self._pool = await self._open_pool(conninfo)

    def _conninfo(self) -> str:
        """The URL with a connect timeout added unless it sets one; remembers the password.

        libpq takes ``postgresql://`` and ``postgres://`` URLs alike. A parse error message may
        quote the URL, so it is not passed on.
        """
        try:
            params = conninfo_to_dict(self._url)
        except psycopg.Error:
            raise StoreUnavailable(
                "the PostgreSQL store URL is not valid "
                "(expected postgresql://user@host:port/database)"
            ) from None
        password = params.get("password")
        self._secret = str(password) if password else None
        if "connect_timeout" in params:
            return self._url
        return psycopg.conninfo.make_conninfo(
            self._url, connect_timeout=max(2, round(self._timeout))
        )

    async def _open_pool(self, conninfo: str) -> AsyncConnectionPool[Connection]:
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            conninfo,
            kwargs={"autocommit": True},
            configure=_ensure_durable_commits,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._timeout,
            open=False,
            name="avatar-callbacks-store",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except psycopg.Error as exc:
            await pool.close()
            raise StoreUnavailable(self._describe(exc)) from exc
        return pool

    async def recover(self) -> None:
        """Nothing to do: claims are leases that expire on their own.

        Releasing "our" claims at start is only safe when no other process can hold one, which is
        true for SQLite (one server per file) but not here: other replicas share the table, and
        an owner name (host, pid) is not proof of death, since containers reuse both. A claim of
        a crashed replica is taken over by any dispatcher once its lease has expired.
        """

    async def close(self) -> None:
        await self._commits.drain()  # what was accepted is committed before the pool goes
        pool, self._pool = self._pool, None
        if self._pool_check is not None:
            self._pool_check.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await self._pool_check
            self._pool_check = None
        if pool is not None:
            await pool.close()

    # -- connections and errors ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled autocommit connection; any database error becomes StoreUnavailable.

        Callers queue on a semaphore sized like the pool rather than in the pool itself: the
        pool's waiting queue costs a task per waiter, which is most of the client's CPU when
        many requests arrive at once. One deadline covers both waits.
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise StoreUnavailable("PostgreSQL store: no free connection in time") from None
        try:
            remaining = max(deadline - asyncio.get_running_loop().time(), 0.001)
            async with pool.connection(timeout=remaining) as conn:
                try:
                    yield conn
                except psycopg.errors.ReadOnlySqlTransaction:
                    # A session keeps the read-only default it started with (a database set
                    # read-only, or a standby after a failover): only a new one sees the change.
                    await conn.close()
                    raise
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):
                self._check_pool_soon(pool)
            raise StoreUnavailable(self._describe(exc)) from exc
        finally:
            self._slots.release()

    def _check_pool_soon(self, pool: AsyncConnectionPool[Connection]) -> None:
        """After a connection failed, test the idle ones in the background.

        When the server restarted, every pooled connection is dead; without this each of them
        would fail one request before the pool replaced it.
        """
        if self._pool_check is None or self._pool_check.done():
            self._pool_check = asyncio.create_task(_check_pool(pool), name="store-pool-check")

    def _describe(self, exc: BaseException) -> str:
        """A one-line reason for logs and the CLI, with the URL's password blanked out."""
        lines = str(exc).strip().splitlines()
        text = lines[0] if lines else ""
        if self._secret:
            text = text.replace(self._secret, "***")
        reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return f"PostgreSQL store: {reason}"

    # -- receiving -----------------------------------------------------------------------------

    async def accept(self, callback: InboundCallback, lease: Lease | None = None) -> Accepted:
        return await self._commits.submit((callback, lease))

    async def _write_batch(self, callbacks: list[_Leased]) -> list[Accepted | BaseException]:
        async with self._connection() as conn:
            try:
                async with self._write_transaction(conn):
                    return list(await _insert_batch(conn, callbacks))
            except psycopg.OperationalError:
                raise
            except psycopg.Error:
                if len(callbacks) == 1:
                    raise
            # Something in the batch is unstorable: one by one, so only that one fails.
            return [await self._write_one(conn, callback) for callback in callbacks]

    async def _write_one(self, conn: Connection, callback: _Leased) -> Accepted | BaseException:
        try:
            async with self._write_transaction(conn):
                return (await _insert_batch(conn, [callback]))[0]
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            return StoreUnavailable(self._describe(exc))

    @contextlib.asynccontextmanager
    async def _write_transaction(self, conn: Connection) -> AsyncIterator[None]:
        """A transaction for accepted callbacks, its waits bounded by the write timeout (the
        settings end with it). Begun by hand so the limits cost no round trip of their own."""
        await conn.execute(self._begin_write)
        try:
            yield
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")

    async def ping(self) -> None:
        async with self._connection() as conn:
            await conn.execute("SELECT 1")

    # -- dispatching ---------------------------------------------------------------------------

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_seconds: float
    ) -> list[StoredEvent]:
        params = {"now": now, "limit": limit, "until": now + lease_seconds, "owner": owner}
        async with self._connection() as conn:
            cur = await conn.execute(_CLAIM_SQL, params)
            rows = await cur.fetchall()
        return sorted((event_from_row(r) for r in rows), key=lambda e: e.id)

    async def finish_many(self, outcomes: Sequence[tuple[str, Outcome]], *, owner: str) -> int:
        return len(await self.finish([(event_id, owner, o) for event_id, o in outcomes]))

    async def finish(self, outcomes: Sequence[tuple[str, str, Outcome]]) -> set[str]:
        if not outcomes:
            return set()
        columns = (
            [event_id for event_id, _, _ in outcomes],
            [o.status for _, _, o in outcomes],
            [o.attempts for _, _, o in outcomes],
            [o.next_attempt_at for _, _, o in outcomes],
            [orjson.dumps(dict(o.handler_state)).decode() for _, _, o in outcomes],
            [o.last_error for _, _, o in outcomes],
            [owner for _, owner, _ in outcomes],
        )
        refuted = [event_id for event_id, _, o in outcomes if o.status == "refuted"]
        async with self._connection() as conn:
            now = time.time()
            if not refuted:  # the common round: one statement, no transaction round trips
                cur = await conn.execute(_FINISH_SQL, (now, *columns))
                return {row[0] for row in await cur.fetchall()}
            async with conn.transaction():
                cur = await conn.execute(_FINISH_SQL, (now, *columns))
                written = {row[0] for row in await cur.fetchall()}
                # Only a refutation this run still held gives up the key.
                for event_id in refuted:
                    if event_id in written:
                        await _release_refuted(conn, event_id, now)
                return written

    async def renew(self, leases: Sequence[tuple[str, str]], *, until: float) -> set[str]:
        if not leases:
            return set()
        ids = [event_id for event_id, _ in leases]
        owners = [owner for _, owner in leases]
        async with self._connection() as conn:
            cur = await conn.execute(_RENEW_SQL, (until, ids, owners))
            return {row[0] for row in await cur.fetchall()}

    # -- operating -----------------------------------------------------------------------------

    async def get(self, id_prefix: str) -> StoredEvent | None:
        pattern = _like_escape(id_prefix) + "%"
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT {_columns()} FROM {EVENTS} WHERE id LIKE %s LIMIT 2",  # noqa: S608
                (pattern,),
            )
            rows = await cur.fetchall()
        return event_from_row(rows[0]) if len(rows) == 1 else None

    async def requeue(
        self,
        ids: Sequence[str] = (),
        *,
        dead: bool = False,
        route: str | None = None,
        unhandled: bool = False,
    ) -> int:
        """Select and lock the events, reset their handler state in Python, write them back.

        One transaction, so a dispatcher cannot claim an event half re-queued.
        """
        selection = replay_where(ids, dead=dead, route=route, placeholder="%s", unhandled=unhandled)
        if selection is None:
            return 0
        where, params = selection
        sql = f"SELECT id, handler_state::text FROM {EVENTS}{where} FOR UPDATE"  # noqa: S608
        now = time.time()
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(sql, params)
            rows = await cur.fetchall()
            if rows:
                await cur.executemany(_REQUEUE_SQL, replay_updates(rows, now))
        return len(rows)

    async def purge(
        self, before: float, *, include_dead: bool = False, dry_run: bool = False
    ) -> int:
        where, params = purge_where(before, include_dead=include_dead, placeholder="%s")
        verb = "SELECT COUNT(*) FROM" if dry_run else "DELETE FROM"
        async with self._connection() as conn:
            cur = await conn.execute(f"{verb} {EVENTS}{where}", params)
            if dry_run:
                row = await cur.fetchone()
                return int(row[0]) if row is not None else 0
            return cur.rowcount

    async def key_usage(self, now: float) -> list[KeyUsage]:
        async with self._connection() as conn:
            cur = await conn.execute(_KEY_USAGE_SQL, (now - 86400,))
            rows = await cur.fetchall()
        return [KeyUsage(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def waiting_for_operator(self) -> dict[tuple[str, str], int]:
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT route, status, COUNT(*) FROM {EVENTS} "  # noqa: S608
                "WHERE status IN ('dead', 'unhandled') GROUP BY status, route"
            )
            rows = await cur.fetchall()
        return {(route, status): int(count) for route, status, count in rows}

    async def inbox_depth(self) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT COUNT(*) FROM {EVENTS} WHERE status = 'pending'"  # noqa: S608
            )
            row = await cur.fetchone()
        return int(row[0]) if row is not None else 0

    # ``list`` last: inside the class its name hides the builtin in later annotations.
    async def list_events(self, where: EventFilter) -> list[StoredEvent]:
        clauses, params = where.where_sql("%s", contains="position({} IN body) > 0")
        sql = f"SELECT {_columns()} FROM {EVENTS}{clauses} ORDER BY id DESC LIMIT %s"  # noqa: S608
        async with self._connection() as conn:
            cur = await conn.execute(sql, (*params, where.limit))
            return [event_from_row(r) for r in await cur.fetchall()]


async def _check_pool(pool: AsyncConnectionPool[Connection]) -> None:
    with contextlib.suppress(psycopg.Error):  # the next request reports it, if it persists
        await pool.check()


async def _ensure_durable_commits(conn: Connection) -> None:
    """Turn ``synchronous_commit`` back on if the server has it off.

    ``accept`` promises the callback is on disk when it returns; with ``off`` a server crash may
    lose the last commits. Only ``off`` is overridden: ``local``, ``remote_write`` and
    ``remote_apply`` (synchronous replication) are at least as durable and are kept.
    """
    await conn.execute(
        "SELECT set_config('synchronous_commit', 'on', false) "
        "WHERE current_setting('synchronous_commit') = 'off'"
    )


def _like_escape(text: str) -> str:
    """Match ``text`` literally in a LIKE pattern (backslash is LIKE's default escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _schema_version(conn: Connection) -> int | None:
    """The version in place, None without a schema (checked first: no error in the server log)."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSIONS,))
    row = await cur.fetchone()
    if row is None or not row[0]:
        return None
    cur = await conn.execute(f"SELECT MAX(version) FROM {VERSIONS}")  # noqa: S608
    row = await cur.fetchone()
    return None if row is None else row[0]


async def _migrate(conn: Connection) -> int | None:
    """Apply the missing migrations in one transaction, serialized by an advisory lock.

    The lock is held until commit, so a second replica upgrading at the same time waits, then
    finds the schema current; without it, concurrent ``CREATE TABLE IF NOT EXISTS`` can fail on
    the catalog's unique indexes.
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(COALESCE(current_schema(), '')))",
            (_UPGRADE_LOCK,),
        )
        current = await _schema_version(conn) or 0
        for version, steps in _MIGRATIONS:
            if version <= current:
                continue
            for step in steps:
                if isinstance(step, str):
                    await conn.execute(step)
                else:
                    await step(conn)
        if current == 0:
            await conn.execute(
                f"INSERT INTO {VERSIONS} (version) VALUES (%s)",  # noqa: S608
                (SCHEMA_VERSION,),
            )
        elif current < SCHEMA_VERSION:
            await conn.execute(f"UPDATE {VERSIONS} SET version = %s", (SCHEMA_VERSION,))  # noqa: S608
        return max(current, SCHEMA_VERSION)


async def _insert_batch(conn: Connection, leased: Sequence[_Leased]) -> list[Accepted]:
    """Insert new events and duplicate rows for ``leased`` (call inside a transaction)."""
    callbacks = [c for c, _ in leased]
    keys = [c.dedupe_key for c in callbacks]
    claims = (
        [None if lease is None else lease.owner for _, lease in leased],
        [None if lease is None else lease.until for _, lease in leased],
    )
    cur = await conn.execute(_BATCH_INSERT_SQL, _columns_of(callbacks, keys) + claims)
    inserted = {row[0] for row in await cur.fetchall()}
    rest = [c for c in callbacks if c.delivery_id not in inserted]
    if not rest:
        return [Accepted(c.delivery_id) for c in callbacks]
    cur = await conn.execute(_ORIGINALS_SQL, ([c.dedupe_key for c in rest],))
    originals: dict[str, str] = dict(await cur.fetchall())
    missing = [c for c in rest if c.dedupe_key not in originals]
    if missing:  # the original was purged in between: fail this batch, the callers retry
        raise psycopg.errors.SerializationFailure("a contended dedupe key changed hands")
    columns = _columns_of(rest, [originals[c.dedupe_key] for c in rest])
    await conn.execute(
        _BATCH_DUPLICATES_SQL, (*columns[:-1], [duplicate_digest(c.body) for c in rest])
    )
    return [
        Accepted(c.delivery_id)
        if c.delivery_id in inserted
        else Accepted(c.delivery_id, duplicate_of=originals[c.dedupe_key])
        for c in callbacks
    ]


def _columns_of(callbacks: Sequence[InboundCallback], fifth: list[str]) -> tuple[list[Any], ...]:
    """Column arrays for the unnest() inserts; ``fifth`` is the dedupe key or the original id."""
    return (
        [c.delivery_id for c in callbacks],
        [c.route for c in callbacks],
        [c.provider for c in callbacks],
        [c.event_type for c in callbacks],
        fifth,
        [c.key_id for c in callbacks],
        [c.received_at for c in callbacks],
        [c.body for c in callbacks],
    )
