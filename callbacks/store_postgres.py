"""PostgreSQL inbox: several receiver replicas share one database.

Same behaviour as :class:`callbacks.store_sqlite.SQLiteStore`, with these differences:

- Durability: every write is one transaction committed with ``synchronous_commit`` on (turned
  back on for our sessions if the server has it off). PostgreSQL already groups the WAL flushes
  of concurrent commits, so there is no batching in the application; instead each
  :meth:`PostgresStore.accept` is a single statement in autocommit mode: one round trip, one
  commit.
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
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from callbacks.store import (
    SCHEMA_VERSION,
    Accepted,
    EventFilter,
    InboundCallback,
    KeyUsage,
    Outcome,
    SchemaOutOfDate,
    StoredEvent,
    StoreUnavailable,
)
from callbacks.store_sqlite import reset_handler_state

Connection = psycopg.AsyncConnection[TupleRow]

EVENTS = "avatar_callbacks_events"
VERSIONS = "avatar_callbacks_schema_version"

# Two-key advisory lock: this constant namespaces it, the second key is the schema's name hash,
# so upgrades of different schemas in one database do not wait for each other.
_UPGRADE_LOCK = 0x41564342  # "AVCB"
_ACCEPT_ATTEMPTS = 3

# Migrations by the version they bring the schema to; each runs in the upgrade transaction.
# ``id`` uses the "C" collation: ids are hex and sort by arrival, and byte order makes the primary
# key index serve prefix look-ups (LIKE 'abc%') and newest-first listing whatever the database's
# default collation is.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
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
    ),
}


def _columns(alias: str = "") -> str:
    """The StoredEvent columns, in :func:`_row_to_event` order (qualified when joining)."""
    p = f"{alias}." if alias else ""
    return (
        f"{p}id, {p}route, {p}provider, {p}event_type, {p}key_id, {p}received_at, {p}body, "
        f"{p}status, {p}attempts, {p}next_attempt_at, {p}handler_state::text, {p}last_error, "
        f"{p}duplicate_of, {p}updated_at"
    )


# One statement, so one round trip and one commit. The first CTE inserts the event unless its
# dedupe key is taken; only if it did not, the second stores this delivery as a duplicate of the
# row holding the key. Both read the statement's snapshot: if the key was taken by a transaction
# that committed after the snapshot (two replicas racing), the insert waited for it and did
# nothing, but the look-up cannot see that row yet and both ids come back NULL: run it again.
_ACCEPT_SQL = f"""
WITH inserted AS (
    INSERT INTO {EVENTS} (id, route, provider, event_type, dedupe_key, key_id, received_at, body,
                          status, next_attempt_at, updated_at)
    VALUES (%(id)s, %(route)s, %(provider)s, %(event_type)s, %(dedupe_key)s, %(key_id)s,
            %(received_at)s, %(body)s, 'pending', %(received_at)s, %(received_at)s)
    ON CONFLICT (dedupe_key) DO NOTHING
    RETURNING id
), duplicate AS (
    INSERT INTO {EVENTS} (id, route, provider, event_type, duplicate_of, key_id, received_at, body,
                          status, next_attempt_at, updated_at)
    SELECT %(id)s, %(route)s, %(provider)s, %(event_type)s, original.id, %(key_id)s,
           %(received_at)s, %(body)s, 'duplicate', %(received_at)s, %(received_at)s
    FROM {EVENTS} AS original
    WHERE original.dedupe_key = %(dedupe_key)s AND NOT EXISTS (SELECT 1 FROM inserted)
    RETURNING duplicate_of
)
SELECT (SELECT id FROM inserted), (SELECT duplicate_of FROM duplicate)
"""  # noqa: S608 - table names are constants

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
UPDATE {EVENTS} SET status = %s, attempts = %s, next_attempt_at = %s, handler_state = %s::jsonb,
    last_error = %s, claimed_until = NULL, claimed_by = NULL, updated_at = %s
WHERE id = %s AND claimed_by = %s
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


def _row_to_event(row: Sequence[Any]) -> StoredEvent:
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


class PostgresStore:
    """The inbox in PostgreSQL, through a small async connection pool.

    ``min_size`` keeps one connection warm; ``max_size`` bounds what one replica takes from the
    server's ``max_connections``. ``timeout`` bounds how long a request waits for a connection
    (or to connect) before it fails with :class:`StoreUnavailable`, so the receiver answers 503
    while the provider still waits, rather than hanging.
    """

    def __init__(
        self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 5.0
    ) -> None:
        self._url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._secret: str | None = None
        self._pool_check: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(max_size)

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
        _check_version(version)
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
                yield conn
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

    async def accept(self, callback: InboundCallback) -> Accepted:
        params = {
            "id": callback.delivery_id,
            "route": callback.route,
            "provider": callback.provider,
            "event_type": callback.event_type,
            "dedupe_key": callback.dedupe_key,
            "key_id": callback.key_id,
            "received_at": callback.received_at,
            "body": callback.body,
        }
        async with self._connection() as conn:
            for _ in range(_ACCEPT_ATTEMPTS):
                cur = await conn.execute(_ACCEPT_SQL, params)
                row = await cur.fetchone()
                inserted, original = row if row is not None else (None, None)
                if inserted is not None:
                    return Accepted(callback.delivery_id)
                if original is not None:
                    return Accepted(callback.delivery_id, duplicate_of=original)
                # Lost a race for the dedupe key (see _ACCEPT_SQL): the holder has committed now.
        raise StoreUnavailable("PostgreSQL store: could not store a contended dedupe key")

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
        return sorted((_row_to_event(r) for r in rows), key=lambda e: e.id)

    async def finish(self, event_id: str, *, owner: str, outcome: Outcome) -> bool:
        params = (
            outcome.status,
            outcome.attempts,
            outcome.next_attempt_at,
            orjson.dumps(dict(outcome.handler_state)).decode(),
            outcome.last_error,
            time.time(),
            event_id,
            owner,
        )
        async with self._connection() as conn:
            cur = await conn.execute(_FINISH_SQL, params)
            return cur.rowcount == 1

    # -- operating -----------------------------------------------------------------------------

    async def get(self, id_prefix: str) -> StoredEvent | None:
        pattern = _like_escape(id_prefix) + "%"
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT {_columns()} FROM {EVENTS} WHERE id LIKE %s LIMIT 2",  # noqa: S608
                (pattern,),
            )
            rows = await cur.fetchall()
        return _row_to_event(rows[0]) if len(rows) == 1 else None

    async def requeue(
        self, ids: Sequence[str] = (), *, dead: bool = False, route: str | None = None
    ) -> int:
        """Select and lock the events, reset their handler state in Python, write them back.

        One transaction, so a dispatcher cannot claim an event half re-queued.
        """
        now = time.time()
        if dead:
            sql = f"SELECT id, handler_state::text FROM {EVENTS} WHERE status = 'dead'"  # noqa: S608
            params: tuple[Any, ...] = ()
            if route:
                sql += " AND route = %s"
                params = (route,)
        else:
            sql = (
                f"SELECT id, handler_state::text FROM {EVENTS} "  # noqa: S608
                "WHERE id = ANY(%s) AND status != 'duplicate'"
            )
            params = (list(ids),)
        async with self._connection() as conn, conn.transaction():
            cur = await conn.execute(sql + " FOR UPDATE", params)
            rows = await cur.fetchall()
            if rows:
                await cur.executemany(
                    _REQUEUE_SQL,
                    [(now, reset_handler_state(state), now, event_id) for event_id, state in rows],
                )
        return len(rows)

    async def purge(self, before: float) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(
                f"DELETE FROM {EVENTS} WHERE received_at < %s AND status != 'pending'",  # noqa: S608
                (before,),
            )
            return cur.rowcount

    async def key_usage(self, now: float) -> list[KeyUsage]:
        async with self._connection() as conn:
            cur = await conn.execute(_KEY_USAGE_SQL, (now - 86400,))
            rows = await cur.fetchall()
        return [KeyUsage(r[0], r[1], r[2], int(r[3])) for r in rows]

    async def inbox_depth(self) -> int:
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT COUNT(*) FROM {EVENTS} WHERE status = 'pending'"  # noqa: S608
            )
            row = await cur.fetchone()
        return int(row[0]) if row is not None else 0

    # ``list`` last: inside the class its name hides the builtin in later annotations.
    async def list_events(self, where: EventFilter) -> list[StoredEvent]:
        clauses, params = _filter_sql(where)
        sql = f"SELECT {_columns()} FROM {EVENTS}{clauses} ORDER BY id DESC LIMIT %s"  # noqa: S608
        async with self._connection() as conn:
            cur = await conn.execute(sql, (*params, where.limit))
            return [_row_to_event(r) for r in await cur.fetchall()]


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


def _filter_sql(where: EventFilter) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if where.route:
        clauses.append("route = %s")
        params.append(where.route)
    if where.status:
        clauses.append("status = %s")
        params.append(where.status)
    if where.since is not None:
        clauses.append("received_at >= %s")
        params.append(where.since)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


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
        for version in sorted(v for v in _MIGRATIONS if v > current):
            for statement in _MIGRATIONS[version]:
                await conn.execute(statement)
        if current == 0:
            await conn.execute(
                f"INSERT INTO {VERSIONS} (version) VALUES (%s)",  # noqa: S608
                (SCHEMA_VERSION,),
            )
        elif current < SCHEMA_VERSION:
            await conn.execute(f"UPDATE {VERSIONS} SET version = %s", (SCHEMA_VERSION,))  # noqa: S608
        return max(current, SCHEMA_VERSION)


def _check_version(version: int | None) -> None:
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaOutOfDate(
            f"the PostgreSQL store has schema version {version}, from a newer release; "
            f"this release needs {SCHEMA_VERSION}: run the newer release"
        )
    if version != SCHEMA_VERSION:
        raise SchemaOutOfDate(
            f"the PostgreSQL store has schema version {version or 'none'}, "
            f"this release needs {SCHEMA_VERSION}: run `callbacks db upgrade`"
        )
