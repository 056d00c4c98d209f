"""verify.testing: the helpers users call in their own tests, one call each."""

from __future__ import annotations

import doctest
from urllib.parse import urlsplit

import orjson
import pytest

import verify.testing
from verify import (
    Carrier,
    SignatureMismatch,
    TimestampExpired,
    key_id,
    verify_metastudio_callback,
    verify_sensetime_callback,
)
from verify.testing import (
    FIXED_NOW,
    fixed_clock,
    signed_metastudio_headers,
    signed_metastudio_url,
    signed_sensetime_body,
)

ST_URL = "https://hooks.example.com/sensetime?tenant=acme"
MS_URL = "https://hooks.example.com/metastudio?tenant=acme"
ST_KEY = "Secret1Key"
MS_KEY = "my-metastudio-key"


def test_fixed_now_and_clock() -> None:
    assert FIXED_NOW == 1763856000
    assert fixed_clock()() == FIXED_NOW
    clock = fixed_clock(12.5)
    assert clock() == 12.5
    assert clock() == 12.5


def test_signed_sensetime_body_verifies() -> None:
    body = signed_sensetime_body(ST_URL, ST_KEY, {"taskId": 42, "status": 2})
    assert isinstance(body, bytes)
    document = orjson.loads(body)
    assert document["timestamp"] == FIXED_NOW
    assert type(document["timestamp"]) is int
    assert len(document["signature"]) == 32
    result = verify_sensetime_callback(ST_URL, body, [ST_KEY], clock=fixed_clock())
    assert result.key_id == key_id(ST_KEY)
    assert result.payload["taskId"] == 42


def test_signed_sensetime_body_defaults_and_options() -> None:
    payload = {"taskId": 1, "timestamp": "ignored"}
    body = signed_sensetime_body(ST_URL, ST_KEY, payload, timestamp=1_700_000_000)
    assert payload == {"taskId": 1, "timestamp": "ignored"}  # the caller's dict is not changed
    assert orjson.loads(body)["timestamp"] == 1_700_000_000
    with pytest.raises(TimestampExpired):
        verify_sensetime_callback(ST_URL, body, [ST_KEY], clock=fixed_clock())
    assert verify_sensetime_callback(ST_URL, body, [ST_KEY], clock=fixed_clock(1_700_000_000))
    empty = orjson.loads(signed_sensetime_body(ST_URL, ST_KEY))
    assert set(empty) == {"timestamp", "signature"}
    with pytest.raises(SignatureMismatch):
        verify_sensetime_callback(ST_URL + "/", body, [ST_KEY], clock=fixed_clock(1_700_000_000))


@pytest.mark.parametrize("carrier", [Carrier.JOB_QUERY, Carrier.LIVE_QUERY])
def test_signed_metastudio_url_verifies(carrier: Carrier) -> None:
    url = signed_metastudio_url(MS_URL, MS_KEY, carrier=carrier)
    assert url.startswith(MS_URL + "&" + carrier.secret_name + "=")
    result = verify_metastudio_callback(
        MS_URL, urlsplit(url).query, [MS_KEY], carrier=carrier, clock=fixed_clock()
    )
    assert (result.key_id, result.timestamp, result.carrier) == (key_id(MS_KEY), FIXED_NOW, carrier)


def test_signed_metastudio_url_timestamp_and_headers_carrier() -> None:
    url = signed_metastudio_url(MS_URL, MS_KEY, timestamp=0x66DF9308)
    assert url.endswith("&time_stamp=66df9308")
    with pytest.raises(ValueError, match="sign_headers"):
        signed_metastudio_url(MS_URL, MS_KEY, carrier=Carrier.HEADERS)


def test_signed_metastudio_headers_verify() -> None:
    headers = signed_metastudio_headers(MS_URL, MS_KEY, timestamp=FIXED_NOW - 5)
    assert headers["x-hw-mss-time"] == f"{FIXED_NOW - 5:x}"
    result = verify_metastudio_callback(
        MS_URL,
        b"tenant=acme",
        [MS_KEY],
        carrier=Carrier.HEADERS,
        headers=headers,
        clock=fixed_clock(),
    )
    assert result.timestamp == FIXED_NOW - 5


def test_every_helper_has_a_working_docstring_example() -> None:
    for name in verify.testing.__all__:
        obj = getattr(verify.testing, name)
        if callable(obj):
            assert ">>>" in (obj.__doc__ or ""), name
    outcome = doctest.testmod(verify.testing, raise_on_error=False)
    assert outcome.attempted >= 4
    assert outcome.failed == 0
