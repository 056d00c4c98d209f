"""Log helpers: secrets are masked whatever a caller passes, and rejections are sampled."""

from __future__ import annotations

from callbacks.logs import RejectionSampler, redact_secrets


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
