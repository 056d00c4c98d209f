"""What ``/readyz`` knows of the store's writes: a failure counts until a write succeeds, or
until it lapses (an unready replica gets no traffic, so no write could clear it)."""

from __future__ import annotations

from callbacks.intake import WriteHealth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_write_counts_until_a_write_succeeds() -> None:
    health = WriteHealth(Clock())
    assert not health.failing
    health.failed()
    assert health.failing
    health.succeeded()
    assert not health.failing


def test_a_failed_write_lapses_after_the_hold() -> None:
    clock = Clock()
    health = WriteHealth(clock)
    health.failed()
    clock.now += WriteHealth.hold - 0.001
    assert health.failing
    clock.now += 0.002
    assert not health.failing
    health.failed()  # the next write tells again
    assert health.failing
