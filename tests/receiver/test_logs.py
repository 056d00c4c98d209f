"""Log helpers: secrets are masked whatever a caller passes, and rejections are sampled."""

from __future__ import annotations

import errno
import io
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from callbacks import metrics
from callbacks.logs import RejectionSampler, UtcTimestamper, configure_logging, redact_secrets


def test_redact_masks_fields_named_like_secrets() -> None:
    event = {"event": "x", "key": "k", "signature": "s", "token": "t", "body": "b", "route": "r"}
    out = redact_secrets(None, "info", dict(event))
    assert out["route"] == "r"
    assert all(out[name] == "***" for name in ("key", "signature", "token", "body"))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rejections_past_the_burst_are_counted_then_summarised() -> None:
    clock = FakeClock()
    sampler = RejectionSampler(burst=3, clock=clock)
    admitted = [sampler.admit("st", "signature_mismatch") for _ in range(10)]
    assert admitted == [True] * 3 + [False] * 7
    assert sampler.admit("st", "timestamp_expired") is True  # its own budget
    assert sampler.summaries() == {}  # the second is not over yet
    clock.now += 1
    assert sampler.summaries() == {("st", "signature_mismatch"): 7}
    assert sampler.summaries() == {}  # reported once
    assert sampler.admit("st", "signature_mismatch") is True


class FullDisk(io.RawIOBase):
    """A stream whose every write fails as a full disk's does."""

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("logging_restored")
def test_a_log_line_that_cannot_be_written_is_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.TextIOWrapper(io.BufferedWriter(FullDisk(), buffer_size=1), write_through=True)
    monkeypatch.setattr(sys, "stdout", stream)
    dropped = metrics.LOG_LINES_DROPPED._value.get()
    for fmt in ("json", "console"):
        configure_logging(fmt)
        structlog.get_logger("t").error("callback_failed", route="st")
        logging.getLogger("uvicorn.error").error("from the stdlib side")
    assert metrics.LOG_LINES_DROPPED._value.get() >= dropped + 4


@given(
    instants=st.lists(
        st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False), min_size=1, max_size=8
    )
)
def test_the_timestamp_is_the_instant_in_utc_to_the_microsecond(instants: list[float]) -> None:
    """Whatever the order of instants (the second's prefix is cached), each line's timestamp
    is what datetime writes for it, its fraction truncated to the microsecond."""
    clock = iter(sorted(instants) + instants)
    stamper = UtcTimestamper(clock=lambda: next(clock))
    for now in sorted(instants) + instants:
        stamp = stamper(None, "info", {})["timestamp"]
        second = int(now)
        expected = datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "")
        assert stamp == f"{expected}.{int((now - second) * 1_000_000):06d}Z"
        parsed = datetime.fromisoformat(stamp)
        assert parsed.tzinfo is not None
        assert abs(parsed.timestamp() - now) < 1e-5
