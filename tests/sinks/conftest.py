"""The ``engine`` fixture: every sink test runs once per engine, each with a fresh destination."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sinks.engines import ENGINES, Engine, make, require


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    require(request.param)
    created = make(request.param)
    created.create()
    try:
        yield created
    finally:
        created.delete()
