"""verify.sensetime: vectors, strict parsing, window, key rotation and property tests."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import mutations
from verify import (
    InvalidKey,
    Key,
    KeyRing,
    MalformedPayload,
    MalformedSignature,
    MalformedTimestamp,
    MissingSignature,
    NoKeys,
    SenseTimeVerification,
    SignatureMismatch,
    TimestampExpired,
    TimestampInFuture,
    VerificationError,
    key_id,
    verify_sensetime_callback,
)
from verify.sensetime import (
    MAX_AUTH_KEY_LENGTH,
    canonical_string,
    generate_auth_key,
    parse_timestamp,
    sign,
    validate_auth_key,
)

VECTORS = json.loads(Path(__file__).with_name("vectors.json").read_text("utf-8"))["sensetime"]

URL = "https://hooks.example.com/sensetime/callback?tenant=acme&env=prod"
NOW = 1_763_856_000
OLD_KEY = "OldKey1Aabcdefgh"
NEW_KEY = "NewKey2Bijklmnop"
WIDE = 10**11  # a window wide enough that every 10-digit timestamp is inside it

FAST = settings(deadline=None, max_examples=100)


def clock_at(now: float) -> Callable[[], float]:
    return lambda: now


def body_for(url: str, key: str, timestamp: int = NOW, **extra: Any) -> dict[str, Any]:
    return {**extra, "timestamp": timestamp, "signature": sign(url, timestamp, key)}


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_canonical_and_signature(vector: dict[str, Any]) -> None:
    url, ts, key = vector["callback_url"], vector["timestamp"], vector["auth_key"]
    assert canonical_string(url, ts, key) == vector["canonical"]
    assert sign(url, ts, key) == vector["signature"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
@pytest.mark.parametrize("form", ["bytes", "str", "mapping", "string-timestamp", "upper-hex"])
def test_vector_verifies(vector: dict[str, Any], form: str) -> None:
    url, ts, key = vector["callback_url"], vector["timestamp"], vector["auth_key"]
    document = {"taskId": 7, "timestamp": ts, "signature": vector["signature"]}
    body: bytes | str | Mapping[str, Any] = document
    if form == "bytes":
        body = orjson.dumps(document)
    elif form == "str":
        body = json.dumps(document)
    elif form == "string-timestamp":
        body = {**document, "timestamp": str(ts)}
    elif form == "upper-hex":
        body = {**document, "signature": vector["signature"].upper()}

    result = verify_sensetime_callback(url, body, [key], clock=clock_at(ts))

    assert result == SenseTimeVerification(key_id(key), ts, result.payload)
    assert result.key_id == key_id(key)
    assert result.timestamp == ts
    assert result.payload["taskId"] == 7
    assert result.payload["signature"].lower() == vector["signature"]


def test_published_example_prefix() -> None:
    """The platform's page prints the first 17 hex digits of the documented example."""
    assert sign("https://www.example.com/your/callback", 1693206851, "abc123").startswith(
        "863151b586912152a"
    )


# --------------------------------------------------------------------------- sign helpers


@pytest.mark.parametrize("bad", [999_999_999, 10_000_000_000, True, 1.7e9, "1700000000", None])
def test_sign_refuses_a_timestamp_that_is_not_a_10_digit_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="10-digit"):
        sign(URL, bad, NEW_KEY)
    with pytest.raises(ValueError, match="10-digit"):
        canonical_string(URL, bad, NEW_KEY)


def test_sign_is_lowercase_hex() -> None:
    signature = sign(URL, NOW, NEW_KEY)
    assert len(signature) == 32
    assert set(signature) <= set("0123456789abcdef")


# --------------------------------------------------------------------------- timestamp parsing


@pytest.mark.parametrize(
    "value",
    [1_000_000_000, 1_693_206_851, 9_999_999_999, "1000000000", "1693206851", "9999999999"],
)
def test_parse_timestamp_accepts(value: object) -> None:
    assert parse_timestamp(value) == int(value)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        1693206851.0,
        1.5,
        float("nan"),
        999_999_999,
        10_000_000_000,
        -1_693_206_851,
        0,
        "",
        "169320685",
        "16932068510",
        "+693206851",
        "-693206851",
        "+1693206851",
        " 1693206851",
        "1693206851 ",
        "1693206851\n",
        "1_693206851",
        "1.69320685",
        "1.6932e+09",
        "1e9",
        "0x64ec4a43",
        "0693206851",  # decision: a leading zero means a 9-digit value, see parse_timestamp
        # Arabic-Indic digits: str.isdigit() says yes, the protocol says no.
        "".join(chr(0x0660 + int(d)) for d in "1693206851"),
        "".join(chr(0xFF10 + int(d)) for d in "1693206851"),  # fullwidth digits
        "\ud8001693206851"[:10],
        b"1693206851",
        [1693206851],
        {"timestamp": 1693206851},
    ],
)
def test_parse_timestamp_rejects(value: object) -> None:
    with pytest.raises(MalformedTimestamp):
        parse_timestamp(value)


@FAST
@given(st.integers(10**9, 10**10 - 1))
def test_parse_timestamp_round_trips(ts: int) -> None:
    assert parse_timestamp(ts) == ts
    assert parse_timestamp(str(ts)) == ts


@FAST
@given(st.text(max_size=12) | st.integers() | st.floats() | st.booleans() | st.none())
def test_parse_timestamp_accepts_exactly_one_spelling(value: object) -> None:
    try:
        ts = parse_timestamp(value)
    except MalformedTimestamp:
        return
    assert type(value) in (int, str)
    assert str(ts) == str(value)
    assert len(str(ts)) == 10


# --------------------------------------------------------------------------- payload and fields


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b"[1, 2]",
        b"1",
        b"null",
        b'"text"',
        b"\xff\xfe{}",
        "\ud800",
        b"[" * 5000 + b"]" * 5000,
        b'{"timestamp": 1e999}',
        None,
        123,
        [("timestamp", NOW)],
    ],
)
def test_malformed_payload(body: Any) -> None:
    with pytest.raises(MalformedPayload):
        verify_sensetime_callback(URL, body, [NEW_KEY], clock=clock_at(NOW))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"timestamp": NOW},
        {"signature": "0" * 32},
        {"Signature": "0" * 32, "Timestamp": NOW},
        {"taskId": 1},
    ],
)
def test_missing_signature_or_timestamp(body: dict[str, Any]) -> None:
    with pytest.raises(MissingSignature):
        verify_sensetime_callback(URL, body, [NEW_KEY], clock=clock_at(NOW))


@pytest.mark.parametrize(
    "signature",
    [
        None,
        123,
        True,
        b"0" * 32,
        "",
        "0" * 31,
        "0" * 33,
        "g" * 32,
        "0x" + "0" * 30,
        " " + "0" * 31,
        "00 " + "0" * 29,
        "0" * 30 + "\n0",
        "\uff10" * 32,  # fullwidth zeros
        "\ud800" * 32,
        ["0" * 32],
    ],
)
def test_malformed_signature(signature: object) -> None:
    body = {"timestamp": NOW, "signature": signature}
    with pytest.raises(MalformedSignature):
        verify_sensetime_callback(URL, body, [NEW_KEY], clock=clock_at(NOW))


def test_checks_run_in_the_documented_order() -> None:
    """payload, presence, timestamp form, signature form, window, then keys and comparison."""
    clock = clock_at(NOW)
    zeros = "0" * 32
    cases: list[tuple[Any, list[str], type[VerificationError]]] = [
        (b"[]", [], MalformedPayload),
        ({"timestamp": "junk"}, [], MissingSignature),
        ({"timestamp": "junk", "signature": "junk"}, [], MalformedTimestamp),
        ({"timestamp": NOW - 10**6, "signature": "junk"}, [], MalformedSignature),
        ({"timestamp": NOW - 301, "signature": zeros}, [], TimestampExpired),
        ({"timestamp": NOW + 301, "signature": zeros}, [], TimestampInFuture),
        ({"timestamp": NOW, "signature": zeros}, [], NoKeys),
        ({"timestamp": NOW, "signature": zeros}, [NEW_KEY], SignatureMismatch),
    ]
    for body, keys, error in cases:
        with pytest.raises(error):
            verify_sensetime_callback(URL, body, keys, clock=clock)


def test_payload_is_the_parsed_object_with_its_auth_fields() -> None:
    raw = orjson.dumps(body_for(URL, NEW_KEY, taskId=123, userData="ü", nested={"a": [1]}))
    result = verify_sensetime_callback(URL, raw, NEW_KEY, clock=clock_at(NOW))
    assert result.payload == orjson.loads(raw)


def test_mapping_body_is_used_as_given_and_not_modified() -> None:
    body = body_for(URL, NEW_KEY, taskId=1)
    snapshot = dict(body)
    result = verify_sensetime_callback(URL, MappingProxyType(body), [NEW_KEY], clock=clock_at(NOW))
    assert result.payload == snapshot
    assert body == snapshot


def test_result_is_immutable_and_hides_the_payload_in_its_repr() -> None:
    result = verify_sensetime_callback(URL, body_for(URL, NEW_KEY), [NEW_KEY], clock=clock_at(NOW))
    assert result._fields == ("key_id", "timestamp", "payload")
    with pytest.raises(AttributeError):
        result.key_id = "other"  # type: ignore[misc]
    assert repr(result) == f"SenseTimeVerification(key_id={key_id(NEW_KEY)!r}, timestamp={NOW})"
    assert result.payload["signature"] not in repr(result)


@pytest.mark.parametrize(
    "keys",
    [NEW_KEY, [NEW_KEY], (OLD_KEY, NEW_KEY), [Key(NEW_KEY)], KeyRing([OLD_KEY, NEW_KEY])],
    ids=["str", "list", "tuple", "keys", "ring"],
)
def test_key_forms(keys: Any) -> None:
    result = verify_sensetime_callback(URL, body_for(URL, NEW_KEY), keys, clock=clock_at(NOW))
    assert result.key_id == key_id(NEW_KEY)


def test_the_url_is_signed_verbatim() -> None:
    """No normalisation: a trailing slash, case, port or escape changes the signature."""
    body = body_for(URL, NEW_KEY)
    for other in [
        URL + "/",
        URL.replace("https", "HTTPS"),
        URL.replace("hooks.example.com", "hooks.example.com:443"),
        URL.replace("tenant=acme&env=prod", "env=prod&tenant=acme"),
        URL.replace("callback", "%63allback"),
    ]:
        with pytest.raises(SignatureMismatch):
            verify_sensetime_callback(other, body, [NEW_KEY], clock=clock_at(NOW))


# --------------------------------------------------------------------------- window


@pytest.mark.parametrize(
    ("offset", "error"),
    [
        (-301, TimestampExpired),
        (-300, None),
        (0, None),
        (300, None),
        (301, TimestampInFuture),
    ],
)
def test_default_window_bounds_are_inclusive(offset: int, error: type[Exception] | None) -> None:
    body = body_for(URL, NEW_KEY, NOW + offset)
    if error is None:
        assert verify_sensetime_callback(URL, body, [NEW_KEY], clock=clock_at(NOW)).timestamp
    else:
        with pytest.raises(error):
            verify_sensetime_callback(URL, body, [NEW_KEY], clock=clock_at(NOW))


def test_fractional_clock_is_truncated() -> None:
    body = body_for(URL, NEW_KEY, NOW - 300)
    verify_sensetime_callback(URL, body, [NEW_KEY], clock=clock_at(NOW + 0.999))
    with pytest.raises(TimestampExpired):
        verify_sensetime_callback(URL, body, [NEW_KEY], clock=clock_at(NOW + 1.0))


@FAST
@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_custom_window_bounds_are_exact(max_age: int, max_future_skew: int) -> None:
    now = 5_000_000_000
    window: dict[str, Any] = {
        "clock": clock_at(now),
        "max_age": max_age,
        "max_future_skew": max_future_skew,
    }
    for ts in (now - max_age, now + max_future_skew):
        verify_sensetime_callback(URL, body_for(URL, NEW_KEY, ts), [NEW_KEY], **window)
    with pytest.raises(TimestampExpired) as expired:
        verify_sensetime_callback(URL, body_for(URL, NEW_KEY, now - max_age - 1), NEW_KEY, **window)
    assert expired.value.max_age == max_age
    with pytest.raises(TimestampInFuture):
        verify_sensetime_callback(
            URL, body_for(URL, NEW_KEY, now + max_future_skew + 1), NEW_KEY, **window
        )


# --------------------------------------------------------------------------- rotation


def test_rotation_both_keys_verify_and_the_match_is_named() -> None:
    ring = KeyRing([NEW_KEY, OLD_KEY])
    for key in (OLD_KEY, NEW_KEY):
        result = verify_sensetime_callback(URL, body_for(URL, key), ring, clock=clock_at(NOW))
        assert result.key_id == key_id(key)


def test_rotation_a_removed_key_no_longer_verifies() -> None:
    with pytest.raises(SignatureMismatch):
        verify_sensetime_callback(URL, body_for(URL, OLD_KEY), [NEW_KEY], clock=clock_at(NOW))


def test_rotation_a_key_past_not_after_no_longer_verifies() -> None:
    ring = KeyRing([Key(NEW_KEY), Key(OLD_KEY, id="old", not_after=NOW)])
    result = verify_sensetime_callback(URL, body_for(URL, OLD_KEY), ring, clock=clock_at(NOW))
    assert result.key_id == "old"
    late = clock_at(NOW + 1)
    with pytest.raises(SignatureMismatch):
        verify_sensetime_callback(URL, body_for(URL, OLD_KEY, NOW + 1), ring, clock=late)
    assert verify_sensetime_callback(URL, body_for(URL, NEW_KEY), ring, clock=late).key_id


def test_no_verifying_key() -> None:
    body = body_for(URL, OLD_KEY)
    expired = KeyRing([Key(OLD_KEY, not_after=NOW - 1)])
    rings: list[KeyRing | list[str]] = [KeyRing([]), expired, []]
    for ring in rings:
        with pytest.raises(NoKeys):
            verify_sensetime_callback(URL, body, ring, clock=clock_at(NOW))


@FAST
@given(
    keys=st.lists(st.text(min_size=1, max_size=32), min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_rotation_any_ring_names_the_signing_key(keys: list[str], data: st.DataObject) -> None:
    signer = data.draw(st.sampled_from(keys))
    result = verify_sensetime_callback(URL, body_for(URL, signer), keys, clock=clock_at(NOW))
    assert result.key_id == key_id(signer)
    others = [k for k in keys if k != signer]
    if others:
        with pytest.raises(SignatureMismatch):
            verify_sensetime_callback(URL, body_for(URL, signer), others, clock=clock_at(NOW))


# --------------------------------------------------------------------------- properties

urls = st.text(max_size=120)
auth_keys = st.text(max_size=40)
timestamps = st.integers(10**9, 10**10 - 1)
any_char = st.characters()
# What a configured URL can hold: a config file cannot carry a lone surrogate.
url_char = st.characters(codec="utf-8")


@FAST
@given(url=urls, key=auth_keys, ts=timestamps, as_bytes=st.booleans())
def test_round_trip(url: str, key: str, ts: int, as_bytes: bool) -> None:
    body: Any = body_for(url, key, ts)
    if as_bytes:
        body = orjson.dumps(body)
    result = verify_sensetime_callback(url, body, [key], clock=clock_at(ts))
    assert (result.key_id, result.timestamp) == (key_id(key), ts)


@FAST
@given(url=urls, key=auth_keys, ts=timestamps, data=st.data())
def test_any_change_to_the_url_is_rejected(
    url: str, key: str, ts: int, data: st.DataObject
) -> None:
    other = data.draw(mutations(url, url_char))
    with pytest.raises(SignatureMismatch):
        verify_sensetime_callback(other, body_for(url, key, ts), [key], clock=clock_at(ts))


def test_a_callback_url_with_a_lone_surrogate_is_a_configuration_error() -> None:
    body = body_for("https://a.example/cb", "Key1", NOW)
    with pytest.raises(ValueError, match="UTF-8") as caught:
        verify_sensetime_callback("https://a.example/cb\ud800", body, ["Key1"], clock=clock_at(NOW))
    assert not isinstance(caught.value, UnicodeEncodeError)  # ours, saying what is wrong
    assert "Key1" not in str(caught.value)


@FAST
@given(url=urls, key=auth_keys, ts=timestamps, data=st.data())
def test_any_change_to_the_key_is_rejected(
    url: str, key: str, ts: int, data: st.DataObject
) -> None:
    other = data.draw(mutations(key, any_char))
    with pytest.raises(SignatureMismatch):
        verify_sensetime_callback(url, body_for(url, key, ts), [other], clock=clock_at(ts))


@FAST
@given(url=urls, key=auth_keys, ts=timestamps, data=st.data())
def test_any_change_to_the_timestamp_is_rejected(
    url: str, key: str, ts: int, data: st.DataObject
) -> None:
    body = body_for(url, key, ts)
    body["timestamp"] = data.draw(mutations(str(ts), any_char | st.sampled_from(string.digits)))
    wide: dict[str, Any] = {"clock": clock_at(ts), "max_age": WIDE, "max_future_skew": WIDE}
    with pytest.raises((MalformedTimestamp, SignatureMismatch)):
        verify_sensetime_callback(url, body, [key], **wide)


@FAST
@given(url=urls, key=auth_keys, ts=timestamps, data=st.data())
def test_any_change_to_the_signature_is_rejected(
    url: str, key: str, ts: int, data: st.DataObject
) -> None:
    body = body_for(url, key, ts)
    original = body["signature"]
    body["signature"] = data.draw(
        mutations(original, any_char | st.sampled_from("0123456789abcdefABCDEF"))
    )
    if body["signature"].lower() == original:
        # Deliberately accepted: the same hex value in another case is the same signature.
        verify_sensetime_callback(url, body, [key], clock=clock_at(ts))
        return
    with pytest.raises((MalformedSignature, SignatureMismatch)):
        verify_sensetime_callback(url, body, [key], clock=clock_at(ts))


surrogate_text = st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=40)
json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.just(NOW)
    | st.just(str(NOW)),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
junk_values = json_like | surrogate_text | st.binary(max_size=40) | st.from_type(object)
junk_bodies = st.one_of(
    st.binary(max_size=200),
    surrogate_text,
    json_like,
    json_like.map(lambda v: json.dumps(v)),
    json_like.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"timestamp": junk_values, "signature": junk_values}),
    st.fixed_dictionaries({"timestamp": junk_values, "signature": junk_values}).map(
        lambda d: json.dumps(d, default=repr)
    ),
    st.from_type(object),
    st.from_type(dict[str, int | str | None]),
)


@settings(deadline=None, max_examples=300)
@given(body=junk_bodies)
def test_junk_raises_only_verification_errors(body: Any) -> None:
    with pytest.raises(VerificationError):
        verify_sensetime_callback(URL, body, [NEW_KEY], clock=clock_at(NOW))


# --------------------------------------------------------------------------- secrecy of errors


def _failures(key: str) -> list[tuple[VerificationError, str]]:
    good = sign(URL, NOW, key)
    forged = sign(URL, NOW, key + "x")
    cases: list[tuple[dict[str, Any], list[Any], int]] = [
        (body_for(URL, key), [key + "x"], NOW),  # mismatch: expected != received
        ({"timestamp": NOW, "signature": forged}, [key], NOW),
        ({"timestamp": NOW, "signature": good + "0"}, [key], NOW),
        ({"timestamp": NOW, "signature": good[:-1] + "z"}, [key], NOW),
        (body_for(URL, key), [key], NOW + 10_000),
        (body_for(URL, key), [key], NOW - 10_000),
        (body_for(URL, key), [Key(key, not_after=0)], NOW),
        ({"timestamp": "x" + good, "signature": good}, [key], NOW),
        ({"signature": good}, [key], NOW),
    ]
    errors = []
    for body, keys, now in cases:
        with pytest.raises(VerificationError) as caught:
            verify_sensetime_callback(URL, body, keys, clock=clock_at(now))
        errors.append((caught.value, str(body.get("signature", ""))))
    return errors


@pytest.mark.parametrize("key", [NEW_KEY, generate_auth_key(), "Aa1" + "z" * 29])
def test_errors_never_contain_keys_or_signatures(key: str) -> None:
    secrets_ = {key, key + "x", sign(URL, NOW, key), sign(URL, NOW, key + "x")}
    for error, received in _failures(key):
        shown = " ".join([str(error), repr(error), *map(str, error.args)])
        for secret in {*secrets_, received}:
            if len(secret) >= 8:
                assert secret.lower() not in shown.lower(), (type(error), shown)


# --------------------------------------------------------------------------- AuthKey rules


@pytest.mark.parametrize("key", ["Aa1", "abc123XYZ", "Aa1" + "x" * 29, "xY9-_.!"])
def test_validate_auth_key_accepts(key: str) -> None:
    assert validate_auth_key(key) == key


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "1 to 32"),
        ("Aa1" + "x" * 30, "1 to 32"),
        ("abc123", "uppercase"),
        ("ABC123", "lowercase"),
        ("abcXYZ", "digit"),
        ("ÄäA1", "lowercase"),  # non-ASCII letters do not count
        ("Aa\u0661", "digit"),  # an Arabic-Indic digit does not count
        ("Aa1\ud800", "UTF-8"),
        (123, "str"),
        (None, "str"),
    ],
)
def test_validate_auth_key_rejects_naming_the_rule(key: Any, rule: str) -> None:
    with pytest.raises(InvalidKey, match=rule) as caught:
        validate_auth_key(key)
    assert isinstance(caught.value, ValueError)
    if isinstance(key, str) and key:
        assert key not in str(caught.value)


@FAST
@given(st.integers(3, MAX_AUTH_KEY_LENGTH))
def test_generate_auth_key_always_satisfies_the_rules(length: int) -> None:
    key = generate_auth_key(length)
    assert len(key) == length
    assert set(key) <= set(string.ascii_letters + string.digits)
    assert validate_auth_key(key) == key


def test_generate_auth_key_defaults_and_randomness() -> None:
    assert MAX_AUTH_KEY_LENGTH == 32
    keys = {generate_auth_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(len(k) == 32 for k in keys)


@pytest.mark.parametrize("length", [-1, 0, 1, 2, 33, 100, True, 3.0, "32"])
def test_generate_auth_key_rejects_bad_lengths(length: Any) -> None:
    with pytest.raises(ValueError, match="length"):
        generate_auth_key(length)
