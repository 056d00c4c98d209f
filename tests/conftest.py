"""Shared fixtures: PostgreSQL discovery, and the environment every test starts from."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

POSTGRES_ENV = "CALLBACKS_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "CALLBACKS_REQUIRE_POSTGRES"


def _postgres_reachable(url: str) -> str | None:
    """None if a connection works, else why not (for the skip message)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'avatar-callbacks[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return f"cannot connect to {POSTGRES_ENV}: {type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL URL to test against; skips (or fails, in CI) when there is none."""
    url = os.environ.get(POSTGRES_ENV)
    problem = None if url else f"{POSTGRES_ENV} is not set"
    if url and problem is None:
        problem = _postgres_reachable(url)
    if problem is not None:
        if os.environ.get(REQUIRE_POSTGRES_ENV):
            pytest.fail(f"PostgreSQL required ({REQUIRE_POSTGRES_ENV} set) but {problem}")
        pytest.skip(f"PostgreSQL tests need a server: {problem}")
    assert url is not None
    return url


@pytest.fixture
def postgres_schema_url(postgres_url: str) -> Iterator[str]:
    """A URL whose connections use a fresh, private schema, dropped after the test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(autouse=True)
def _no_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's CALLBACKS_* variables must not leak into the tests."""
    for name in list(os.environ):
        if name.startswith("CALLBACKS_") and name not in (POSTGRES_ENV, REQUIRE_POSTGRES_ENV):
            monkeypatch.delenv(name)
