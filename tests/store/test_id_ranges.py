"""Time ranges bound the id too: an id begins with its arrival millisecond (new_delivery_id).

The stores add ``id >= first_id_from(since)`` and ``id < id_bound_before(until)`` to
``received_at`` conditions so the primary key serves them. Those bounds must never leave out an
event the ``received_at`` condition keeps, whatever the moments (and give none when there is
no sound one).
"""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from callbacks.store.base import first_id_from, id_bound_before, new_delivery_id

# Moments as the ids can hold them (48 bits of milliseconds), and far outside.
moments = st.floats(min_value=0, max_value=(16**12 - 1) / 1000, allow_nan=False)
any_moment = moments | st.floats(allow_nan=True) | st.sampled_from([-1.0, math.inf, -math.inf])


@given(received_at=moments, since=any_moment)
@example(received_at=10.0005, since=10.0007)  # one millisecond, either side of the bound
@example(received_at=0.0, since=0.0)
def test_an_event_received_at_or_after_since_is_not_cut_by_the_id_bound(
    received_at: float, since: float
) -> None:
    bound = first_id_from(since)
    if received_at >= since and bound is not None:
        assert new_delivery_id(received_at) >= bound


@given(received_at=moments, until=any_moment)
@example(received_at=10.0007, until=10.0009)
@example(received_at=(16**12 - 2) / 1000, until=(16**12 - 1) / 1000)
def test_an_event_received_before_until_is_not_cut_by_the_id_bound(
    received_at: float, until: float
) -> None:
    bound = id_bound_before(until)
    if received_at < until and bound is not None:
        assert new_delivery_id(received_at) < bound


@given(moment=moments)
@example(moment=(16**12 - 1) / 1000)  # the last millisecond the ids can hold
def test_the_bounds_are_tight_to_the_millisecond(moment: float) -> None:
    """Not a full scan in disguise: an event a millisecond outside the range is outside it."""
    ms = int(moment * 1000)
    floor, ceiling = first_id_from(moment), id_bound_before(moment)
    assert floor is not None
    if ms >= 1:
        assert new_delivery_id((ms - 1) / 1000) < floor
    if ceiling is not None:
        assert new_delivery_id((ms + 1) / 1000 + 0.0001) >= ceiling


def test_no_bound_for_moments_the_ids_cannot_hold() -> None:
    for moment in (-0.001, math.nan, math.inf, -math.inf, 16**12 / 1000, 1e300):
        assert first_id_from(moment) is None
        assert id_bound_before(moment) is None
