"""Every verifier, every argument a sender controls: junk raises a VerificationError, nothing else.

The per-verifier test files try junk of each verifier's own shape; this file throws the same
hostile material at all of them: percent-escapes of arbitrary bytes (``%ff`` is no UTF-8), NUL,
lone surrogates, non-ASCII digits, huge numbers and values of the wrong type.
"""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verify import (
    BadToken,
    Carrier,
    VerificationError,
    verify_callback_url_token,
    verify_metastudio_callback,
    verify_sensetime_callback,
    verify_token,
)
from verify.tokens import mint_token

NOW = 1_763_856_000
KEY = "JunkKey2026abcdefXYZ"
URL = "https://hooks.example.com/callbacks/x?tenant=acme"
ROUTE = "junk-route"

JUNK = settings(deadline=None, max_examples=300, suppress_health_check=list(HealthCheck))


def _now() -> float:
    return NOW


percent_escapes = st.binary(min_size=1, max_size=12).map(
    lambda raw: "".join(f"%{byte:02x}" for byte in raw)
)
hostile_text = st.one_of(
    st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=80),
    percent_escapes,
    st.sampled_from(["%ff", "%c3%28", "%ed%a0%80", "%00", "\x00", "%", "%%", "%g0", "٣٤", "Ⅻ"]),
    st.integers(-(10**40), 10**40).map(str),
    st.text(string.hexdigits, min_size=60, max_size=70),
    st.just("9" * 5000),
)
wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=20),
    st.from_type(object),
)
names = st.sampled_from(["token", "secret", "time_stamp", "hwSecret", "hwTime", "tenant", "x", ""])


@st.composite
def hostile_queries(draw: st.DrawFn) -> str | bytes:
    pairs = draw(st.lists(st.tuples(names, hostile_text), max_size=5))
    query = "&".join(f"{name}={value}" for name, value in pairs)
    if draw(st.booleans()):
        return query.encode("utf-8", "surrogateescape")
    return query


queries = hostile_queries() | st.binary(max_size=120) | hostile_text | wrong_types


@pytest.mark.parametrize("query", ["token=%ff", b"token=%ff", "token=%c3%28", b"token=%ed%a0%80"])
def test_invalid_utf8_percent_escape_in_a_token_is_a_bad_token(query: str | bytes) -> None:
    with pytest.raises(BadToken):
        verify_callback_url_token(query, ROUTE, [KEY], clock=_now)


@JUNK
@given(query=queries)
def test_token_query_junk(query: Any) -> None:
    with pytest.raises(VerificationError):
        verify_callback_url_token(query, ROUTE, [KEY], clock=_now)


@JUNK
@given(token=hostile_text | wrong_types, garble=percent_escapes)
def test_token_junk_and_garbled_genuine_tokens(token: Any, garble: str) -> None:
    with pytest.raises(VerificationError):
        verify_token(token, ROUTE, [KEY], clock=_now)
    genuine = mint_token(ROUTE, [KEY], clock=_now)
    at = len(genuine) // 2
    with pytest.raises(VerificationError):
        verify_callback_url_token(
            f"token={quote(genuine[:at])}{garble}{genuine[at:]}", ROUTE, [KEY], clock=_now
        )


@JUNK
@given(query=queries, headers=st.none() | wrong_types, carrier=st.sampled_from(Carrier))
def test_metastudio_query_junk(query: Any, headers: Any, carrier: Carrier) -> None:
    with pytest.raises(VerificationError):
        verify_metastudio_callback(URL, query, [KEY], carrier=carrier, headers=headers, clock=_now)


header_values = hostile_text | st.binary(max_size=70) | wrong_types
header_names = st.sampled_from(["x-hw-mss-secret", "X-HW-MSS-TIME", "x-hw-mss-time"]) | (
    hostile_text
)


@JUNK
@given(
    headers=st.dictionaries(header_names | st.binary(max_size=20), header_values, max_size=4),
    as_bytes=st.booleans(),
)
def test_metastudio_header_junk(headers: dict[Any, Any], as_bytes: bool) -> None:
    if as_bytes:  # raw ASGI header pairs arrive as latin-1 bytes
        headers = {
            (k.encode("utf-8", "surrogatepass") if isinstance(k, str) else k): v
            for k, v in headers.items()
        }
    with pytest.raises(VerificationError):
        verify_metastudio_callback(
            URL, "tenant=acme", [KEY], carrier=Carrier.HEADERS, headers=headers, clock=_now
        )


auth_values = hostile_text | wrong_types | st.integers(10**9, 10**10 - 1)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> Any:
    fields = {"timestamp": draw(auth_values), "signature": draw(auth_values)}
    shape = draw(st.sampled_from(["dict", "json", "json-text", "nested", "raw"]))
    if shape == "dict":
        return fields
    if shape == "raw":
        return draw(st.binary(max_size=200) | hostile_text | wrong_types)
    if shape == "nested":
        depth = draw(st.integers(200, 2000))
        return b'{"timestamp":' + b"[" * depth + b"]" * depth + b"}"
    text = json.dumps(fields, default=repr)  # stdlib: integers past 64 bits too
    return text.encode() if shape == "json" else text


@JUNK
@given(body=hostile_bodies())
def test_sensetime_body_junk(body: Any) -> None:
    with pytest.raises(VerificationError):
        verify_sensetime_callback(URL, body, [KEY], clock=_now)
