"""The durable inbox every accepted callback goes into before the receiver answers 200.

- :mod:`callbacks.store.base`: the records, the roles (lifecycle, inbox, work queue, admin), the
  schema version and the rules both backends share. Start there.
- :mod:`callbacks.store.sqlite`: the default, one machine (one or several worker processes on one
  file). :mod:`callbacks.store.postgres`: several replicas. SQL and connections only.
- :func:`open_store`: the backend for a ``store.url``, the only place that names both.
"""

from __future__ import annotations

from pathlib import Path

from callbacks.errors import StoreUnavailable
from callbacks.store.base import (
    EVENT_STATUSES,
    SCHEMA_VERSION,
    Accepted,
    Admin,
    EventFilter,
    EventStatus,
    InboundCallback,
    Inbox,
    KeyUsage,
    Lease,
    Lifecycle,
    Outcome,
    ServingStore,
    Store,
    StoredEvent,
    WorkQueue,
    new_delivery_id,
)
from callbacks.store.url import check_store_url, is_sqlite_url, sqlite_path

__all__ = [
    "EVENT_STATUSES",
    "SCHEMA_VERSION",
    "Accepted",
    "Admin",
    "EventFilter",
    "EventStatus",
    "InboundCallback",
    "Inbox",
    "KeyUsage",
    "Lease",
    "Lifecycle",
    "Outcome",
    "ServingStore",
    "Store",
    "StoredEvent",
    "WorkQueue",
    "check_store_url",
    "is_sqlite_url",
    "new_delivery_id",
    "open_store",
    "sqlite_path",
]


def open_store(
    url: str, *, base_dir: Path | None = None, write_timeout: float | None = None
) -> Store:
    """The backend for a ``store.url``: ``sqlite:///relative.db``, ``sqlite:////abs.db``,
    ``postgresql://...``. Raises ValueError for any other form (see :func:`check_store_url`).

    ``write_timeout`` bounds how long one write waits for a lock held elsewhere (SQLite's busy
    wait; PostgreSQL's ``lock_timeout`` and ``statement_timeout`` for accepted callbacks).
    """
    check_store_url(url)
    if is_sqlite_url(url):
        from callbacks.store.sqlite import SQLiteStore

        path = sqlite_path(url, base_dir=base_dir)
        if write_timeout is None:
            return SQLiteStore(path)
        return SQLiteStore(path, write_timeout=write_timeout)
    try:
        from callbacks.store.postgres import PostgresStore
    except ImportError as exc:  # psycopg is an optional extra
        raise StoreUnavailable(
            "the PostgreSQL store needs the postgres extra: "
            "pip install 'avatar-callbacks[postgres]'"
        ) from exc
    return PostgresStore(url, write_timeout=write_timeout)
