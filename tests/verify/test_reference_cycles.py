"""A rejection leaves nothing for the garbage collector: the verifiers face floods of forgeries.

A rejected callback must be freed as soon as its error is handled. An error kept in a local of
the frame it is raised from is a reference cycle (error, traceback, frame) that holds the whole
call chain until the collector runs; itsdangerous does that on every bad signature, and a forged
flood then ran the collector every few dozen requests. Each case is counted with the collector
off, as the objects a collection finds afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verify import (
    Carrier,
    VerificationError,
    verify_callback_url_token,
    verify_metastudio_callback,
    verify_sensetime_callback,
    verify_token,
)
from verify.testing import signed_metastudio_headers, signed_metastudio_url, signed_sensetime_body
from verify.tokens import mint_token

NOW = 1_763_856_000
KEY = "CycleKey2026abcdefXYZ"
OTHER = "OtherKey2026abcdefXYZ"
URL = "https://hooks.example.com/callbacks/x?tenant=acme"
ROUTE = "cycle-route"
REPEATS = 20


def _now() -> float:
    return NOW


def _later() -> float:
    return NOW + 10 * 86_400


def _garbage_after(reject: Callable[[], Any]) -> int:
    """Objects in reference cycles after ``REPEATS`` rejections by ``reject``."""
    gc.collect()
    gc.disable()
    try:
        for _ in range(REPEATS):
            try:
                reject()
            except VerificationError:
                pass
            else:
                raise AssertionError("the case was not rejected")
        return gc.collect()
    finally:
        gc.enable()


def _query(url: str) -> str:
    return urlsplit(url).query


def _cases() -> Iterator[tuple[str, Callable[[], Any]]]:
    body = signed_sensetime_body(URL, OTHER, {"taskId": 1}, timestamp=NOW)
    yield "sensetime wrong key", lambda: verify_sensetime_callback(URL, body, [KEY], clock=_now)
    yield "sensetime stale", lambda: verify_sensetime_callback(URL, body, [OTHER], clock=_later)
    yield "sensetime junk", lambda: verify_sensetime_callback(URL, b"{]", [KEY], clock=_now)
    query = _query(signed_metastudio_url(URL, OTHER, timestamp=NOW))
    yield (
        "metastudio query, wrong key",
        lambda: verify_metastudio_callback(URL, query, [KEY], clock=_now),
    )
    headers = signed_metastudio_headers(URL, OTHER, timestamp=NOW)
    yield (
        "metastudio headers, wrong key",
        lambda: verify_metastudio_callback(
            URL, "tenant=acme", [KEY], carrier=Carrier.HEADERS, headers=headers, clock=_now
        ),
    )
    token = mint_token(ROUTE, [OTHER], clock=_now)
    yield "token, wrong key", lambda: verify_token(token, ROUTE, [KEY], clock=_now)
    yield "token, two wrong keys", lambda: verify_token(token, ROUTE, [KEY, KEY[::-1]], clock=_now)
    yield "token, expired", lambda: verify_token(token, ROUTE, [OTHER], clock=_later)
    yield "token, other route", lambda: verify_token(token, "another", [OTHER], clock=_now)
    yield (
        "token in a query, wrong key",
        lambda: verify_callback_url_token(f"token={token}", ROUTE, [KEY], clock=_now),
    )


CASES = dict(_cases())


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_rejection_leaves_no_reference_cycle(case: str) -> None:
    assert _garbage_after(CASES[case]) == 0


@settings(deadline=None, max_examples=40, suppress_health_check=list(HealthCheck))
@given(at=st.integers(0, 200), char=st.sampled_from("AZaz09-_."))
def test_a_garbled_token_leaves_no_reference_cycle(at: int, char: str) -> None:
    token = mint_token(ROUTE, [KEY], clock=_now)
    at %= len(token)
    garbled = token[:at] + char + token[at + 1 :]
    if garbled == token:
        return
    assert _garbage_after(lambda: verify_token(garbled, ROUTE, [KEY], clock=_now)) == 0
