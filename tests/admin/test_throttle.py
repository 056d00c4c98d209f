"""Failed sign-ins per address: the rule, on an explicit clock."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from callbacks.admin.throttle import FailedSignIns


def test_blocked_at_the_limit_until_the_oldest_failure_ages_out() -> None:
    limit = FailedSignIns(limit=3, window=60)
    for at in (0.0, 10.0, 20.0):
        assert limit.retry_after("a", at) == 0
        limit.failed("a", at)
    assert limit.retry_after("a", 30.0) == 30.0  # the failure at 0 ages out at 60
    assert limit.retry_after("b", 30.0) == 0  # another address is not affected
    assert limit.retry_after("a", 60.0) == 0
    limit.failed("a", 60.0)
    assert limit.retry_after("a", 61.0) == 9.0  # 10, 20, 60: blocked until 70


@given(st.lists(st.floats(min_value=0, max_value=1e6), max_size=60), st.integers(1, 8))
@example(times=[60.0, 4.584788994899931e-130], limit_count=1)  # 1e-130 + 60 rounds to 60
def test_never_blocks_an_address_with_fewer_recent_failures_than_the_limit(
    times: list[float], limit_count: int
) -> None:
    limit = FailedSignIns(limit=limit_count, window=60)
    done: list[float] = []
    for at in sorted(times):
        recent = [t for t in done if t > at - 60]
        wait = limit.retry_after("a", at)
        if len(recent) < limit_count:
            assert wait == 0
        else:
            assert 0 < wait <= 60
        if wait == 0:  # a blocked address is refused before it can fail again
            limit.failed("a", at)
            done.append(at)


def test_memory_is_bounded_by_forgetting_the_longest_quiet_address() -> None:
    limit = FailedSignIns(limit=1, window=60, max_clients=100)
    for n in range(1000):
        limit.failed(f"10.0.{n // 256}.{n % 256}", 1.0)
    assert limit.retry_after("10.0.3.231", 2.0) > 0  # the last one is remembered
    assert limit.retry_after("10.0.0.0", 2.0) == 0  # the first one was forgotten
    assert len(limit._failures) == 100
