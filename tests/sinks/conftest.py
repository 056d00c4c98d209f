"""The ``engine`` fixture: every sink test runs once per engine, each with a fresh destination."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sinks.engines import ENGINES, Engine, make, require


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield from _fresh(request.param)


@pytest.fixture(params=[e for e in ENGINES if e != "http"])
def broker(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The engines reached over one long-lived connection (not HTTP)."""
    yield from _fresh(request.param)


def _fresh(kind: str) -> Iterator[Engine]:
    require(kind)
    created = make(kind)
    created.create()
    try:
        yield created
    finally:
        created.delete()
