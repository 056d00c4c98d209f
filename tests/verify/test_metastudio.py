"""verify.metastudio: vectors, URI rules, carriers, unsigned parameters and property tests."""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from starlette.datastructures import Headers

from tests.strategies import mutations
from verify import (
    Carrier,
    InvalidKey,
    Key,
    KeyRing,
    MalformedSignature,
    MalformedTimestamp,
    MetaStudioVerification,
    MissingSignature,
    NoKeys,
    SignatureMismatch,
    TimestampExpired,
    TimestampInFuture,
    UnsignedParameters,
    VerificationError,
    key_id,
    verify_metastudio_callback,
)
from verify.metastudio import (
    MAX_KEY_LENGTH,
    canonical_uri,
    format_timestamp,
    generate_key,
    parse_timestamp,
    sign,
    sign_headers,
    sign_url,
    validate_key,
)

VECTORS = json.loads(Path(__file__).with_name("vectors.json").read_text("utf-8"))["metastudio"]

URL = "https://hooks.example.com/callbacks/metastudio?tenant=acme&env=prod"
NOW = 1_763_856_000
KEY = "k3y-Metastudio-01"
OLD_KEY = "old-Metastudio-00"
WIDE = 2**65  # wider than any 16-hex-digit timestamp

FAST = settings(deadline=None, max_examples=100)
QUERY_CARRIERS = [Carrier.JOB_QUERY, Carrier.LIVE_QUERY]


def clock_at(now: float) -> Callable[[], float]:
    return lambda: now


def carrier_of(vector: Mapping[str, Any]) -> Carrier:
    names = tuple(vector["param_names"])
    return next(c for c in QUERY_CARRIERS if (c.secret_name, c.time_name) == names)


def raw_query(url: str) -> str:
    """The query exactly as written (urlsplit would drop tabs and newlines)."""
    return url.partition("#")[0].partition("?")[2]


def signed_query(url: str, key: str, ts: int = NOW, carrier: Carrier = Carrier.JOB_QUERY) -> str:
    return raw_query(sign_url(url, key, ts, carrier=carrier))


def verify_query(url: str, query: str | bytes, keys: Any, **kwargs: Any) -> MetaStudioVerification:
    kwargs.setdefault("clock", clock_at(NOW))
    return verify_metastudio_callback(url, query, keys, **kwargs)


# --------------------------------------------------------------------------- vectors


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_uri_message_and_secret(vector: dict[str, Any]) -> None:
    url, time_stamp, key = vector["callback_url"], vector["time_stamp"], vector["key"]
    assert canonical_uri(url) == vector["uri"]
    assert canonical_uri(url) + time_stamp == vector["message"]
    assert sign(url, time_stamp, key) == vector["secret"]
    assert format_timestamp(parse_timestamp(time_stamp)) == time_stamp


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_received_url(vector: dict[str, Any]) -> None:
    ts = parse_timestamp(vector["time_stamp"])
    carrier = carrier_of(vector)
    received = sign_url(vector["callback_url"], vector["key"], ts, carrier=carrier)
    assert received == vector["received_url"]
    assert [pair.partition("=")[0] for pair in raw_query(received).split("&")][-2:] == (
        vector["param_names"]
    )


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_vector_verifies(vector: dict[str, Any], as_bytes: bool) -> None:
    ts = parse_timestamp(vector["time_stamp"])
    text = raw_query(vector["received_url"])
    query: str | bytes = text.encode() if as_bytes else text
    carrier = carrier_of(vector)
    result = verify_metastudio_callback(
        vector["callback_url"], query, [vector["key"]], carrier=carrier, clock=clock_at(ts)
    )
    assert result == MetaStudioVerification(key_id(vector["key"]), ts, carrier)


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_vector_verifies_with_headers(vector: dict[str, Any]) -> None:
    """MSS_A_HEAD sends the same two values in headers; the query is the configured one."""
    url, key = vector["callback_url"], vector["key"]
    ts = parse_timestamp(vector["time_stamp"])
    headers = sign_headers(url, key, ts)
    assert headers == {"x-hw-mss-secret": vector["secret"], "x-hw-mss-time": vector["time_stamp"]}
    result = verify_metastudio_callback(
        url,
        raw_query(url),
        [key],
        carrier=Carrier.HEADERS,
        headers=headers,
        clock=clock_at(ts),
    )
    assert result.carrier is Carrier.HEADERS
    assert result.key_id == key_id(key)


def test_vector_uppercase_secret_and_time_are_accepted() -> None:
    vector = VECTORS[0]
    ts = parse_timestamp(vector["time_stamp"])
    upper_secret = vector["secret"].upper()
    query = raw_query(vector["received_url"]).replace(vector["secret"], upper_secret)
    result = verify_metastudio_callback(
        vector["callback_url"], query, [vector["key"]], clock=clock_at(ts)
    )
    assert result.timestamp == ts
    # The time is signed exactly as sent, so an uppercase time needs a signature over it.
    upper_time = vector["time_stamp"].upper()
    secret = sign(vector["callback_url"], upper_time, vector["key"])
    query = f"live_id=111&limit=10&offset=0&secret={secret}&time_stamp={upper_time}"
    assert (
        verify_metastudio_callback(
            vector["callback_url"], query, [vector["key"]], clock=clock_at(ts)
        ).timestamp
        == ts
    )


# --------------------------------------------------------------------------- canonical URI


@pytest.mark.parametrize(
    ("url", "uri"),
    [
        ("https://h.example.com:443/a", "h.example.com/a"),
        ("http://h.example.com:80/a", "h.example.com/a"),
        ("https://h.example.com:80/a", "h.example.com:80/a"),
        ("http://h.example.com:443/a", "h.example.com:443/a"),
        ("https://h.example.com:/a", "h.example.com/a"),
        ("HTTPS://h.example.com:443/a", "h.example.com/a"),
        ("https://H.Example.COM/A", "H.Example.COM/A"),
        ("https://h/a/%E5%9B%9E?n=%20x&m=a+b", "h/a/%E5%9B%9E?m=a+b&n=%20x"),
        ("https://h/a?x=1#frag", "h/a?x=1"),
        ("https://h/a#frag?x=1", "h/a"),
        ("https://h", "h"),
        ("https://h?b=2&a=1", "h?a=1&b=2"),  # decision: an empty path stays empty
        ("https://h/", "h/"),
        ("https://h/a?", "h/a"),
        ("https://h/a?&b=2&&a=1&", "h/a?a=1&b=2"),
        ("https://h/a?flag&a=1", "h/a?a=1&flag"),
        ("https://h/a?a=2&a=1&a=3", "h/a?a=2&a=1&a=3"),
        ("https://h/a?a=x=y&a=", "h/a?a=x=y&a="),
        ("https://h/a?B=1&a=2", "h/a?B=1&a=2"),  # byte order: uppercase sorts first
        ("http://[::1]:8080/p?b=1&a=2", "[::1]:8080/p?a=2&b=1"),
        ("http://[::1]:80/p", "[::1]/p"),
        ("https://h/a?ü=1&z=2", "h/a?z=2&ü=1"),
    ],
)
def test_canonical_uri(url: str, uri: str) -> None:
    assert canonical_uri(url) == uri


@pytest.mark.parametrize(
    "url",
    [
        "",
        "h.example.com/a",
        "//h.example.com/a",
        "ftp://h.example.com/a",
        "https:///a",
        "https://user:pw@h/a",
        "https://h:port/a",
        "https://h:\u0661\u0662/a",
        "https://[::1/a",
        "https://[::1]x/a",
        "https://\ud800/a",
    ],
)
def test_canonical_uri_refuses_urls_it_cannot_sign(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        canonical_uri(url)


def test_sign_url_separators_and_fragment() -> None:
    secret = sign("https://h/a?x=1", "1", "k")
    assert sign_url("https://h/a?x=1", "k", 1) == f"https://h/a?x=1&secret={secret}&time_stamp=1"
    assert sign_url("https://h/a?x=1&", "k", 1).endswith("x=1&secret=" + secret + "&time_stamp=1")
    assert (
        sign_url("https://h/a?", "k", 1)
        == f"https://h/a?secret={sign('https://h/a', '1', 'k')}&time_stamp=1"
    )
    assert "#" not in sign_url("https://h/a#frag", "k", 1)


def test_sign_url_refuses_the_headers_carrier() -> None:
    with pytest.raises(ValueError, match="sign_headers"):
        sign_url(URL, KEY, NOW, carrier=Carrier.HEADERS)


@pytest.mark.parametrize("time_stamp", ["", "0x1", "-1", "g", " 1", "1" * 17, 1, None])
def test_sign_refuses_a_bad_time_stamp(time_stamp: Any) -> None:
    with pytest.raises(ValueError, match="hex digits"):
        sign(URL, time_stamp, KEY)


# --------------------------------------------------------------------------- carriers


def test_carrier_names() -> None:
    assert (Carrier.JOB_QUERY.secret_name, Carrier.JOB_QUERY.time_name) == ("secret", "time_stamp")
    assert (Carrier.LIVE_QUERY.secret_name, Carrier.LIVE_QUERY.time_name) == ("hwSecret", "hwTime")
    assert (Carrier.HEADERS.secret_name, Carrier.HEADERS.time_name) == (
        "x-hw-mss-secret",
        "x-hw-mss-time",
    )
    assert len(Carrier) == 3


@pytest.mark.parametrize("carrier", QUERY_CARRIERS)
def test_query_carriers_round_trip(carrier: Carrier) -> None:
    query = signed_query(URL, KEY, carrier=carrier)
    assert query.startswith("tenant=acme&env=prod&" + carrier.secret_name + "=")
    assert verify_query(URL, query, [KEY], carrier=carrier).carrier is carrier
    other = next(c for c in QUERY_CARRIERS if c is not carrier)
    with pytest.raises(VerificationError):
        verify_query(URL, query, [KEY], carrier=other)


@pytest.mark.parametrize(
    "make",
    [
        dict,
        lambda h: {k.upper(): v for k, v in h.items()},
        lambda h: {k.title(): v for k, v in h.items()},
        lambda h: Headers(headers=h),
        lambda h: Headers(raw=[(k.encode(), v.encode()) for k, v in h.items()]),
        lambda h: {k.encode(): v.encode() for k, v in h.items()},
    ],
    ids=["dict", "upper", "title", "starlette", "starlette-raw", "bytes"],
)
def test_headers_any_case_any_mapping(make: Callable[[dict[str, str]], Any]) -> None:
    headers = make(sign_headers(URL, KEY, NOW))
    result = verify_query(
        URL, "tenant=acme&env=prod", [KEY], carrier=Carrier.HEADERS, headers=headers
    )
    assert result.key_id == key_id(KEY)


def test_headers_repeated_are_ambiguous() -> None:
    headers = sign_headers(URL, KEY, NOW)
    secret, time_stamp = headers["x-hw-mss-secret"], headers["x-hw-mss-time"]
    query = "tenant=acme&env=prod"
    kwargs: dict[str, Any] = {"carrier": Carrier.HEADERS}
    both = {"x-hw-mss-secret": secret, "X-HW-MSS-SECRET": secret, "x-hw-mss-time": time_stamp}
    with pytest.raises(MalformedSignature):
        verify_query(URL, query, [KEY], headers=both, **kwargs)
    raw = [(b"x-hw-mss-secret", secret.encode()), (b"x-hw-mss-time", time_stamp.encode())]
    twice = Headers(raw=[*raw, (b"x-hw-mss-time", time_stamp.encode())])
    with pytest.raises(MalformedTimestamp):
        verify_query(URL, query, [KEY], headers=twice, **kwargs)


@pytest.mark.parametrize(
    "headers", [None, {}, {"x-hw-mss-secret": "0" * 64}, {"x-hw-mss-time": "1"}, "junk", 5]
)
def test_headers_missing(headers: Any) -> None:
    with pytest.raises(MissingSignature):
        verify_query(URL, "tenant=acme&env=prod", [KEY], carrier=Carrier.HEADERS, headers=headers)


def test_headers_carrier_still_refuses_unsigned_query_parameters() -> None:
    headers = sign_headers(URL, KEY, NOW)
    for query in ["tenant=acme&env=prod&admin=1", "tenant=acme", "tenant=acme&env=prod&secret=x"]:
        with pytest.raises(UnsignedParameters):
            verify_query(URL, query, [KEY], carrier=Carrier.HEADERS, headers=headers)


# --------------------------------------------------------------------------- received query


def test_parameter_order_in_the_received_query_does_not_matter() -> None:
    query = signed_query(URL, KEY)
    pairs = query.split("&")
    assert verify_query(URL, "&".join(reversed(pairs)), [KEY]).key_id == key_id(KEY)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda q: q + "&admin=1", "'admin'"),
        (lambda q: "admin=1&" + q, "'admin'"),
        (lambda q: q.replace("tenant=acme&", ""), "'tenant'"),
        (lambda q: q.replace("tenant=acme", "tenant=evil"), "'tenant'"),
        (lambda q: q.replace("tenant=acme", "tenant=acme&tenant=acme"), "'tenant'"),
        (lambda q: q.replace("tenant=acme", "tenan%74=acme"), "'tenan%74'"),
        (lambda q: q.replace("secret=", "secre%74="), "'secre%74'"),
    ],
)
def test_unsigned_parameters(change: Callable[[str], str], named: str) -> None:
    query = change(signed_query(URL, KEY))
    if "secre%74" in query:
        query += "&secret=" + "0" * 64
    with pytest.raises(UnsignedParameters) as caught:
        verify_query(URL, query, [KEY])
    assert named in str(caught.value)
    assert "evil" not in str(caught.value)
    assert "acme" not in str(caught.value)


def test_unsigned_parameter_messages_are_bounded_and_safe() -> None:
    extra = "&".join(f"p{i}\ud800{'x' * 100}=v" for i in range(20))
    query = signed_query(URL, KEY) + "&" + extra
    with pytest.raises(UnsignedParameters) as caught:
        verify_query(URL, query, [KEY])
    message = str(caught.value)
    assert message.isascii()
    assert "and 15 more" in message
    assert len(message) < 600


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", MissingSignature),
        ("tenant=acme&env=prod", MissingSignature),
        ("tenant=acme&env=prod&secret=" + "0" * 64, MissingSignature),
        ("tenant=acme&env=prod&time_stamp=1", MissingSignature),
        ("tenant=acme&env=prod&Secret=" + "0" * 64 + "&time_stamp=1", MissingSignature),
        ("secret=" + "0" * 64 + "&time_stamp=1&time_stamp=1", MalformedTimestamp),
        ("secret=" + "0" * 64 + "&secret=" + "0" * 64 + "&time_stamp=1", MalformedSignature),
        ("secret=" + "0" * 64 + "&time_stamp=", MalformedTimestamp),
        ("secret=" + "0" * 64 + "&time_stamp", MalformedTimestamp),
        ("secret=" + "0" * 64 + "&time_stamp=0x1", MalformedTimestamp),
        ("secret=" + "0" * 64 + "&time_stamp=" + "1" * 17, MalformedTimestamp),
        ("secret=" + "0" * 64 + "&time_stamp=%36%36", MalformedTimestamp),
        ("secret=&time_stamp=1", MalformedSignature),
        ("secret=" + "0" * 63 + "&time_stamp=1", MalformedSignature),
        ("secret=" + "0" * 65 + "&time_stamp=1", MalformedSignature),
        ("secret=" + "g" * 64 + "&time_stamp=1", MalformedSignature),
        ("secret=" + "00 " * 21 + "0&time_stamp=1", MalformedSignature),
        ("secret=" + "\uff10" * 64 + "&time_stamp=1", MalformedSignature),
    ],
)
def test_malformed_and_missing(query: str, error: type[VerificationError]) -> None:
    with pytest.raises(error):
        verify_query(URL, query, [KEY], clock=clock_at(1))


@pytest.mark.parametrize("query", [b"\xff\xfe", b"tenant=\xe9&env=prod", "tenant=\udce9"])
def test_undecodable_query_is_a_verification_error(query: str | bytes) -> None:
    signed = signed_query(URL, KEY)
    raw = query if isinstance(query, bytes) else query.encode("utf-8", "surrogatepass")
    with pytest.raises(UnsignedParameters):
        verify_query(URL, raw + b"&" + signed.split("&", 2)[2].encode(), [KEY])
    with pytest.raises(VerificationError):
        verify_query(URL, query, [KEY])


def test_non_ascii_configured_query_round_trips() -> None:
    url = "https://hooks.example.com/cb?name=回调&x=%20"
    query = signed_query(url, KEY)
    assert verify_query(url, query.encode("utf-8"), [KEY]).key_id == key_id(KEY)


def test_checks_run_in_the_documented_order() -> None:
    """presence, time form, secret form, unsigned parameters, window, keys, comparison."""
    zeros = "0" * 64
    old = format_timestamp(NOW - 301)
    now = format_timestamp(NOW)
    cases: list[tuple[str, list[str], type[VerificationError]]] = [
        ("admin=1&time_stamp=junk", [], MissingSignature),
        ("admin=1&secret=junk&time_stamp=junk", [], MalformedTimestamp),
        (f"admin=1&secret=junk&time_stamp={old}", [], MalformedSignature),
        (f"admin=1&secret={zeros}&time_stamp={old}", [], UnsignedParameters),
        (f"tenant=acme&env=prod&secret={zeros}&time_stamp={old}", [], TimestampExpired),
        (f"tenant=acme&env=prod&secret={zeros}&time_stamp={now}", [], NoKeys),
        (f"tenant=acme&env=prod&secret={zeros}&time_stamp={now}", [KEY], SignatureMismatch),
    ]
    for query, keys, error in cases:
        with pytest.raises(error):
            verify_query(URL, query, keys)


def test_result_is_immutable() -> None:
    result = verify_query(URL, signed_query(URL, KEY), [KEY])
    assert result._fields == ("key_id", "timestamp", "carrier")
    with pytest.raises(AttributeError):
        result.timestamp = 0  # type: ignore[misc]


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("1", 1), ("66df9308", 0x66DF9308), ("66DF9308", 0x66DF9308), ("f" * 16, 2**64 - 1)],
)
def test_parse_timestamp_accepts(text: str, value: int) -> None:
    assert parse_timestamp(text) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "1" * 17,
        "0x1",
        "0X1",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1\n",
        "1_0",
        "g",
        "1.0",
        "\u0661",
        "\uff41",
        "\ud800",
        1,
        0x66DF9308,
        True,
        None,
        b"66df9308",
        ["66df9308"],
    ],
)
def test_parse_timestamp_rejects(value: object) -> None:
    with pytest.raises(MalformedTimestamp):
        parse_timestamp(value)


@FAST
@given(st.integers(0, 2**64 - 1), st.booleans())
def test_timestamp_round_trip(seconds: int, upper: bool) -> None:
    text = format_timestamp(seconds)
    assert text == text.lower()
    assert text == f"{seconds:x}"
    assert parse_timestamp(text.upper() if upper else text) == seconds


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.0, "1", None])
def test_format_timestamp_refuses(bad: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - two distinct messages
        format_timestamp(bad)


@FAST
@given(st.text(max_size=20))
def test_parse_timestamp_only_plain_hex(text: str) -> None:
    try:
        value = parse_timestamp(text)
    except MalformedTimestamp:
        assert not (1 <= len(text) <= 16 and all(c in string.hexdigits for c in text))
        return
    assert int(text, 16) == value
    assert set(text) <= set(string.hexdigits)


# --------------------------------------------------------------------------- window


@pytest.mark.parametrize(
    ("offset", "error"),
    [(-301, TimestampExpired), (-300, None), (300, None), (301, TimestampInFuture)],
)
def test_default_window_bounds(offset: int, error: type[Exception] | None) -> None:
    query = signed_query(URL, KEY, NOW + offset)
    if error is None:
        assert verify_query(URL, query, [KEY]).timestamp == NOW + offset
    else:
        with pytest.raises(error):
            verify_query(URL, query, [KEY])


@FAST
@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_custom_window_bounds(max_age: int, skew: int) -> None:
    window = {"max_age": max_age, "max_future_skew": skew}
    verify_query(URL, signed_query(URL, KEY, NOW - max_age), [KEY], **window)
    verify_query(URL, signed_query(URL, KEY, NOW + skew), [KEY], **window)
    with pytest.raises(TimestampExpired):
        verify_query(URL, signed_query(URL, KEY, NOW - max_age - 1), [KEY], **window)
    with pytest.raises(TimestampInFuture):
        verify_query(URL, signed_query(URL, KEY, NOW + skew + 1), [KEY], **window)


# --------------------------------------------------------------------------- rotation


def test_rotation() -> None:
    ring = KeyRing([KEY, Key(OLD_KEY, id="old", not_after=NOW)])
    assert verify_query(URL, signed_query(URL, KEY), ring).key_id == key_id(KEY)
    assert verify_query(URL, signed_query(URL, OLD_KEY), ring).key_id == "old"
    with pytest.raises(SignatureMismatch):
        verify_query(URL, signed_query(URL, OLD_KEY), [KEY])
    late = signed_query(URL, OLD_KEY, NOW + 1)
    with pytest.raises(SignatureMismatch):
        verify_query(URL, late, ring, clock=clock_at(NOW + 1))
    with pytest.raises(NoKeys):
        verify_query(URL, late, [Key(OLD_KEY, not_after=NOW)], clock=clock_at(NOW + 1))


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize("key", ["", "k", "x" * 32, "GCTbw44s6MPLh4GqgDpnfuFHgy25Enly"])
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["x" * 33, None, b"key", 5, "k\ud800"])
def test_validate_key_rejects(key: Any) -> None:
    with pytest.raises(InvalidKey) as caught:
        validate_key(key)
    assert "xxxxxxxx" not in str(caught.value)
    with pytest.raises(InvalidKey):
        sign(URL, "1", key)


def test_generate_key() -> None:
    assert MAX_KEY_LENGTH == 32
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert len(key) == 32
        assert set(key) <= set(string.ascii_letters + string.digits)
        assert validate_key(key) == key
    assert len(generate_key(1)) == 1
    for bad in (0, 33, True, "32"):
        with pytest.raises(ValueError, match="length"):
            generate_key(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- properties

_RESERVED = {"secret", "time_stamp", "hwSecret", "hwTime"}
_name_chars = st.sampled_from(string.ascii_letters + string.digits + "-_.~%+*[]") | st.characters(
    exclude_characters="&#=", exclude_categories=["Cs"]
)
_value_chars = _name_chars | st.just("=")
_path_chars = st.sampled_from(string.ascii_letters + string.digits + "-_.~%/") | st.characters(
    exclude_characters="?#", exclude_categories=["Cs"]
)


_host_chars = st.sampled_from(string.ascii_letters + string.digits + ".-")


@st.composite
def callback_urls(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["http", "https", "HTTPS"]))
    host = draw(st.text(_host_chars, min_size=1, max_size=20))
    port = draw(st.none() | st.integers(0, 65535).map(str) | st.just(""))
    path = draw(st.text(_path_chars, max_size=30).map(lambda p: "/" + p) | st.just(""))
    names = st.text(_name_chars, min_size=1, max_size=8).filter(lambda n: n not in _RESERVED)
    pairs = draw(
        st.lists(
            st.tuples(names, st.none() | st.text(_value_chars, max_size=8)),
            max_size=5,
        )
    )
    url = f"{scheme}://{host}" + (f":{port}" if port is not None else "") + path
    if pairs:
        url += "?" + "&".join(n if v is None else f"{n}={v}" for n, v in pairs)
    return url


hmac_keys = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=MAX_KEY_LENGTH
)
hex_timestamps = st.integers(0, 2**40)
any_char = st.characters()


@FAST
@given(url=callback_urls(), key=hmac_keys, ts=hex_timestamps, carrier=st.sampled_from(Carrier))
def test_round_trip(url: str, key: str, ts: int, carrier: Carrier) -> None:
    if carrier is Carrier.HEADERS:
        query = raw_query(url)
        headers: dict[str, str] | None = sign_headers(url, key, ts)
    else:
        query = signed_query(url, key, ts, carrier)
        headers = None
    result = verify_metastudio_callback(
        url, query.encode(), [key], carrier=carrier, headers=headers, clock=clock_at(ts)
    )
    assert (result.key_id, result.timestamp, result.carrier) == (key_id(key), ts, carrier)


@FAST
@given(url=callback_urls(), key=hmac_keys, ts=hex_timestamps, data=st.data())
def test_any_change_to_the_configured_url_is_rejected_unless_equivalent(
    url: str, key: str, ts: int, data: st.DataObject
) -> None:
    other = data.draw(mutations(url, any_char))
    try:
        other_uri = canonical_uri(other)
    except ValueError:
        assume(False)  # not a usable configuration: refused when configuring
        return
    received = signed_query(url, key, ts)
    same_uri = other_uri == canonical_uri(url)
    same_pairs = sorted(p for p in raw_query(other).split("&") if p) == sorted(
        p for p in raw_query(url).split("&") if p
    )
    if same_uri and same_pairs:
        # Equivalent by design: the scheme, a default port or the fragment is not signed.
        verify_metastudio_callback(other, received, [key], clock=clock_at(ts))
        return
    with pytest.raises((SignatureMismatch, UnsignedParameters)):
        verify_metastudio_callback(other, received, [key], clock=clock_at(ts))


@FAST
@given(url=callback_urls(), key=hmac_keys, ts=hex_timestamps, data=st.data())
def test_any_change_to_the_key_is_rejected(
    url: str, key: str, ts: int, data: st.DataObject
) -> None:
    # HMAC pads short keys with zero bytes, so "k" and "k\0" are one key: NUL is left out.
    other = data.draw(
        mutations(key, st.characters(exclude_characters="\x00", exclude_categories=["Cs"]))
    )
    with pytest.raises(SignatureMismatch):
        verify_metastudio_callback(url, signed_query(url, key, ts), [other], clock=clock_at(ts))


@FAST
@given(url=callback_urls(), key=hmac_keys, ts=hex_timestamps, data=st.data())
def test_any_change_to_the_time_is_rejected(
    url: str, key: str, ts: int, data: st.DataObject
) -> None:
    time_stamp = format_timestamp(ts)
    secret = sign(url, time_stamp, key)
    # Any change counts, case included: the time is signed exactly as sent.
    other = data.draw(mutations(time_stamp, any_char | st.sampled_from(string.hexdigits)))
    query = "&".join([*filter(None, raw_query(url).split("&")), f"secret={secret}"])
    query += "&time_stamp=" + other
    wide: dict[str, Any] = {"clock": clock_at(ts), "max_age": WIDE, "max_future_skew": WIDE}
    with pytest.raises(VerificationError):
        verify_metastudio_callback(url, query, [key], **wide)


@FAST
@given(url=callback_urls(), key=hmac_keys, ts=hex_timestamps, data=st.data())
def test_any_change_to_the_secret_is_rejected(
    url: str, key: str, ts: int, data: st.DataObject
) -> None:
    time_stamp = format_timestamp(ts)
    secret = sign(url, time_stamp, key)
    other = data.draw(mutations(secret, any_char | st.sampled_from(string.hexdigits)))
    query = "&".join(
        [
            *filter(None, raw_query(url).split("&")),
            f"secret={other}",
            f"time_stamp={time_stamp}",
        ]
    )
    if other.lower() == secret:
        # Deliberately accepted: the same hex value in another case.
        verify_metastudio_callback(url, query, [key], clock=clock_at(ts))
        return
    with pytest.raises(VerificationError):
        verify_metastudio_callback(url, query, [key], clock=clock_at(ts))


junk_text = st.text(st.characters(categories=["Cs"]) | st.characters(), max_size=80)
junk_queries = st.one_of(
    st.binary(max_size=200),
    junk_text,
    st.lists(
        st.sampled_from(
            ["secret", "time_stamp", "tenant", "env", "hwSecret", "hwTime", "x"]
        ).flatmap(
            lambda n: (st.just("") | junk_text | st.text(string.hexdigits, max_size=70)).map(
                lambda v: f"{n}={v}"
            )
        ),
        max_size=6,
    ).map("&".join),
    st.from_type(object),
)
junk_headers = (
    st.none()
    | st.from_type(object)
    | st.dictionaries(
        st.sampled_from(["x-hw-mss-secret", "X-HW-MSS-TIME", "x-hw-mss-time"]) | junk_text,
        junk_text | st.binary(max_size=70) | st.from_type(object),
        max_size=4,
    )
)


@settings(deadline=None, max_examples=300)
@given(query=junk_queries, headers=junk_headers, carrier=st.sampled_from(Carrier))
def test_junk_raises_only_verification_errors(query: Any, headers: Any, carrier: Carrier) -> None:
    with pytest.raises(VerificationError):
        verify_metastudio_callback(
            URL, query, [KEY], carrier=carrier, headers=headers, clock=clock_at(NOW)
        )


def test_errors_never_contain_keys_or_secrets() -> None:
    key = generate_key(31)  # room for the one-character-off forgery below
    good = signed_query(URL, key)
    secret = sign(URL, format_timestamp(NOW), key)
    forged = sign(URL, format_timestamp(NOW), key + "x")
    cases = [
        (good, [key + "x"], NOW),
        (good.replace(secret, forged), [key], NOW),
        (good.replace(secret, secret + "0"), [key], NOW),
        (good + "&admin=" + secret, [key], NOW),
        (good, [key], NOW + 10_000),
        (good, [Key(key, not_after=0)], NOW),
    ]
    for query, keys, now in cases:
        with pytest.raises(VerificationError) as caught:
            verify_query(URL, query, keys, clock=clock_at(now))
        shown = " ".join([str(caught.value), repr(caught.value), *map(str, caught.value.args)])
        for hidden in (key, secret, forged):
            assert hidden.lower() not in shown.lower()
