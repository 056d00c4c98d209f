"""parse_json_object: one depth limit at parse time, and everything it accepts can be handled
by every later step (the dedupe digest, ``events show --json``), whatever the body's shape."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbacks import parse_config
from callbacks.dedupe import dedupe_key
from callbacks.errors import Rejected
from callbacks.receiver import MAX_JSON_DEPTH, parse_json_object

CONFIG = parse_config(
    {
        "routes": [
            {
                "name": "st",
                "path": "/st",
                "provider": "sensetime",
                "public_url": "https://hooks.example.com/st",
            }
        ]
    },
    source="callbacks.toml",
)
ROUTE = CONFIG.routes[0]


siblings: st.SearchStrategy[Any] = st.sampled_from([None, "[[{{", 1, {"x": []}, [[]]])


@st.composite
def nested_objects(draw: st.DrawFn) -> bytes:
    """A JSON object body nested up to past the limit through arrays and objects, with
    bracket-laden strings and shallow siblings along the way, so neither its text nor its
    shape gives the depth away."""
    levels = draw(st.integers(0, 400) | st.sampled_from([MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH - 1]))
    value: Any = draw(st.sampled_from([[], {}, "[{", 0]))
    for _ in range(levels):
        sibling = draw(siblings)
        if draw(st.booleans()):
            value = [value] if sibling is None else [sibling, value]
        else:
            value = {"k": value} if sibling is None else {"k": value, "s": sibling}
    return json.dumps({"deep": value}).encode()  # stdlib: no depth limit of its own here


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@settings(deadline=None, max_examples=300)
@given(body=nested_objects())
def test_accepted_iff_within_the_limit_and_every_later_step_handles_it(
    body: bytes,
) -> None:
    depth = _depth(orjson.loads(body))
    if depth > MAX_JSON_DEPTH:
        with pytest.raises(Rejected) as refused:
            parse_json_object(body)
        assert (refused.value.status, refused.value.reason) == (400, "body_too_deep")
        return
    raw = parse_json_object(body)
    assert raw == orjson.loads(body)
    dedupe_key(ROUTE, raw)
    orjson.dumps({"body": raw}, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1000, 1024])
def test_the_limit_holds_for_objects_and_arrays_alike(depth: int) -> None:
    arrays = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    objects = b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
    for body in (arrays, objects):
        with pytest.raises(Rejected, match="body_too_deep"):
            parse_json_object(body)


def test_brackets_in_strings_do_not_count() -> None:
    body = orjson.dumps({"text": "[" * 5000 + "{" * 5000})
    assert parse_json_object(body) == orjson.loads(body)
