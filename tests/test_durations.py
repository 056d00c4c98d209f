"""``callbacks.durations``: the one duration parser of the CLI and the console API."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.durations import UNIT_SECONDS, parse_duration


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(sorted(UNIT_SECONDS)))
def test_a_number_and_a_unit_is_that_many_seconds(count: int, unit: str) -> None:
    assert parse_duration(f" {count}{unit} ") == count * UNIT_SECONDS[unit]


@given(st.text(max_size=12))
def test_any_text_is_a_duration_or_a_value_error_naming_the_forms(text: str) -> None:
    try:
        outcome = str(parse_duration(text) >= 0)
    except ValueError as exc:
        outcome = str(exc)
    assert outcome == "True" or "30m, 24h, 7d" in outcome


@pytest.mark.parametrize("text", ["", "m", "5", "-5m", "1.5h", "5 m", "5y", "5M"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
