"""What a ``store.url`` looks like: the one place that knows, for the config and the factory."""

from __future__ import annotations

import os
from pathlib import Path

_SQLITE = "sqlite://"
_POSTGRES = ("postgresql://", "postgres://")  # libpq takes both


def is_sqlite_url(url: str) -> bool:
    """The embedded store: one server process, schema created at start."""
    return url.startswith(_SQLITE)


def is_postgres_url(url: str) -> bool:
    return url.startswith(_POSTGRES)


def check_store_url(url: str) -> None:
    """Raise ValueError, with an example, unless ``url`` names a store this release can open.

    Only the form is checked: whether the database is there is :meth:`Lifecycle.open`'s business.
    The message never quotes the URL, which may hold a password.
    """
    if is_sqlite_url(url):
        sqlite_path(url)
    elif not is_postgres_url(url):
        raise ValueError(
            "must start with sqlite:// or postgresql:// (e.g. sqlite:///data/callbacks.db)"
        )


def sqlite_path(url: str, *, base_dir: Path | None = None) -> Path:
    """``sqlite:///relative.db`` (under ``base_dir``, else the working directory) or
    ``sqlite:////absolute.db``."""
    rest = url.removeprefix(_SQLITE)
    if not rest.startswith("/") or rest == "/":
        raise ValueError("a SQLite store URL looks like sqlite:///callbacks.db")
    path = Path(rest[1:])  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
    if not path.is_absolute():
        path = (base_dir or Path(os.getcwd())) / path
    return path
