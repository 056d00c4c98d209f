"""Expected jobs: results the receiver waits for, so that none is lost when its callback is.

``callbacks jobs expect ROUTE JOB_ID`` (or :meth:`ExpectedJobs.expect`) records one; the
:class:`~callbacks.confirm.reconciler.Reconciler` polls it once ``reconcile_after`` has passed
without its callback, until a terminal state or its ``within`` runs out (``overdue``).

The table lives next to the events, in the same database (``avatar_callbacks_expected_jobs``),
created on first use. Claims carry a lease, as events do, so with several replicas on PostgreSQL
each job is polled by one of them at a time (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from callbacks.errors import StoreUnavailable
from callbacks.event_view import iso
from callbacks.store.url import is_sqlite_url, sqlite_path

JobState = Literal["waiting", "found", "overdue"]
TABLE = "avatar_callbacks_expected_jobs"
_COLUMNS = (
    "route, job_id, room_id, expected_at, poll_after, deadline, state, polls, next_poll_at, "
    "last_state, event_id"
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    route TEXT NOT NULL,
    job_id TEXT NOT NULL,
    room_id TEXT,
    expected_at DOUBLE PRECISION NOT NULL,
    poll_after DOUBLE PRECISION NOT NULL,
    deadline DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    polls INTEGER NOT NULL DEFAULT 0,
    next_poll_at DOUBLE PRECISION NOT NULL,
    last_state TEXT,
    event_id TEXT,
    claimed_by TEXT,
    claimed_until DOUBLE PRECISION,
    PRIMARY KEY (route, job_id)
)"""


@dataclass(frozen=True)
class ExpectedJob:
    route: str
    job_id: str
    room_id: str | None
    expected_at: float
    poll_after: float
    """Not polled before this moment (``expected_at + reconcile_after``)."""
    deadline: float
    """Past this moment without a terminal state, the job is ``overdue``."""
    state: JobState
    polls: int
    next_poll_at: float
    last_state: str | None
    event_id: str | None


def job_summary(job: ExpectedJob) -> dict[str, object]:
    """One expected job as ``jobs list --json`` and ``GET /api/jobs/expected`` show it."""
    return {
        "route": job.route,
        "job_id": job.job_id,
        "state": job.state,
        "polls": job.polls,
        "last_state": job.last_state,
        "expected_at": iso(job.expected_at),
        "poll_after": iso(job.poll_after),
        "deadline": iso(job.deadline),
        "overdue": job.state == "overdue",
        "event_id": job.event_id,
    }


class ExpectedJobs(Protocol):
    async def expect(
        self,
        route: str,
        job_id: str,
        *,
        now: float,
        poll_after: float,
        deadline: float,
        room_id: str | None = None,
    ) -> ExpectedJob:
        """Record (or re-arm) that ``job_id``'s result is expected on ``route``."""

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_seconds: float
    ) -> list[ExpectedJob]:
        """Waiting jobs due for a poll, hidden from other claimers for the lease."""

    async def settle(
        self,
        route: str,
        job_id: str,
        *,
        owner: str,
        state: JobState,
        next_poll_at: float,
        last_state: str | None,
        event_id: str | None = None,
    ) -> None:
        """Write back one poll's outcome and release the claim."""

    async def list(self, *, overdue: bool = False) -> list[ExpectedJob]:
        """Every expected job, or only the overdue ones (past their deadline, not found)."""

    async def close(self) -> None: ...


def open_expected_jobs(url: str, *, base_dir: Path | None = None) -> ExpectedJobs:
    """The expected-jobs table in the store at ``url`` (SQLite file or PostgreSQL)."""
    if is_sqlite_url(url):
        return SQLiteExpectedJobs(sqlite_path(url, base_dir=base_dir))
    return PostgresExpectedJobs(url)


def _job(row: Sequence[Any]) -> ExpectedJob:
    return ExpectedJob(*row)


class _ExpectedJobsRules(abc.ABC):
    """The expected-jobs rules, written once in ``?`` placeholders; a backend supplies ``_run``
    (one statement, committed) and its own claim, the one statement the two write differently."""

    _claim_sql: str

    @abc.abstractmethod
    async def _run(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

    async def expect(
        self,
        route: str,
        job_id: str,
        *,
        now: float,
        poll_after: float,
        deadline: float,
        room_id: str | None = None,
    ) -> ExpectedJob:
        rows = await self._run(
            f"INSERT INTO {TABLE} (route, job_id, room_id, expected_at, poll_after, deadline, "  # noqa: S608
            "state, polls, next_poll_at) VALUES (?, ?, ?, ?, ?, ?, 'waiting', 0, ?) "
            "ON CONFLICT (route, job_id) DO UPDATE SET room_id = excluded.room_id, "
            "expected_at = excluded.expected_at, poll_after = excluded.poll_after, "
            "deadline = excluded.deadline, state = 'waiting', polls = 0, "
            f"next_poll_at = excluded.next_poll_at RETURNING {_COLUMNS}",
            (route, job_id, room_id, now, poll_after, deadline, poll_after),
        )
        return _job(rows[0])

    async def claim(
        self, *, owner: str, now: float, limit: int, lease_seconds: float
    ) -> list[ExpectedJob]:
        rows = await self._run(self._claim_sql, (owner, now + lease_seconds, now, now, limit))
        return [_job(r) for r in rows]

    async def settle(
        self,
        route: str,
        job_id: str,
        *,
        owner: str,
        state: JobState,
        next_poll_at: float,
        last_state: str | None,
        event_id: str | None = None,
    ) -> None:
        await self._run(
            f"UPDATE {TABLE} SET state = ?, polls = polls + 1, next_poll_at = ?, "  # noqa: S608
            "last_state = ?, event_id = COALESCE(?, event_id), claimed_by = NULL, "
            "claimed_until = NULL WHERE route = ? AND job_id = ? AND claimed_by = ?",
            (state, next_poll_at, last_state, event_id, route, job_id, owner),
        )

    async def list(self, *, overdue: bool = False) -> list[ExpectedJob]:
        where = " WHERE state = 'overdue'" if overdue else ""
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM {TABLE}{where} ORDER BY expected_at"  # noqa: S608
        )
        return [_job(r) for r in rows]


class SQLiteExpectedJobs(_ExpectedJobsRules):
    """One connection, used from a worker thread; SQLite serialises writers anyway."""

    _claim_sql = (
        f"UPDATE {TABLE} SET claimed_by = ?, claimed_until = ? WHERE rowid IN ("  # noqa: S608
        f"SELECT rowid FROM {TABLE} WHERE state = 'waiting' AND next_poll_at <= ? "
        "AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY next_poll_at LIMIT ?) "
        f"RETURNING {_COLUMNS}"
    )

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path, timeout=10, check_same_thread=False, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA.replace("DOUBLE PRECISION", "REAL"))
            self._conn = conn
        return self._conn

    async def _run(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        def run() -> list[Any]:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(sql, params).fetchall()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return rows

        async with self._lock:
            try:
                return await asyncio.to_thread(run)
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"expected jobs: {type(exc).__name__}") from None

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresExpectedJobs(_ExpectedJobsRules):
    """A connection per call: expected jobs are few and polled slowly."""

    _claim_sql = (
        f"UPDATE {TABLE} SET claimed_by = ?, claimed_until = ? "  # noqa: S608
        f"WHERE (route, job_id) IN (SELECT route, job_id FROM {TABLE} "
        "WHERE state = 'waiting' AND next_poll_at <= ? "
        "AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY next_poll_at LIMIT ? "
        f"FOR UPDATE SKIP LOCKED) RETURNING {_COLUMNS}"
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self._created = False

    async def _run(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        import psycopg

        try:
            async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                if not self._created:
                    # Two replicas creating it at once: one of them loses a catalogue race.
                    with contextlib.suppress(psycopg.errors.UniqueViolation):
                        await conn.execute(_SCHEMA)
                    self._created = True
                # The rules are written with ``?``; none of them holds a literal one.
                cur = await conn.execute(sql.replace("?", "%s"), params)
                return list(await cur.fetchall()) if cur.description else []
        except psycopg.Error as exc:
            # The class name only: psycopg's messages can carry the connection string.
            raise StoreUnavailable(f"expected jobs: {type(exc).__name__}") from None

    async def close(self) -> None:
        return None
