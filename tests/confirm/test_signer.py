"""Our AK/SK signature is the official SDK's, byte for byte (the SDK is a test-only dependency)."""

from __future__ import annotations

import string
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbacks.confirm.signer import canonical_uri, sign_request

sdk_credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
sdk_request = pytest.importorskip("huaweicloudsdkcore.sdk_request")

_segment_chars = string.ascii_letters + string.digits + "-_.~ %/+=&?:@!$'()*,;中文é"
segments = st.text(alphabet=_segment_chars, min_size=0, max_size=12)
paths = st.lists(segments, min_size=1, max_size=5).map(lambda parts: "/" + "/".join(parts))
query_keys = st.text(
    alphabet=string.ascii_letters + string.digits + "_-.~ &=", min_size=1, max_size=8
)
query_values = st.text(alphabet=_segment_chars, max_size=12)
header_names = st.text(
    alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=12
)
header_values = st.text(alphabet=string.printable.strip() + " ", max_size=24)
secrets = st.text(alphabet=string.ascii_letters + string.digits + "+/=", min_size=1, max_size=40)
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)
_RESERVED = {"host", "x-sdk-date", "authorization", "x-project-id", "content-type"}


@st.composite
def requests(draw: st.DrawFn) -> dict[str, object]:
    headers: dict[str, str] = {}
    for name in draw(st.lists(header_names, max_size=4, unique_by=str.lower)):
        if name.lower() not in _RESERVED:
            headers[name] = draw(header_values)
    query: list[tuple[str, object]] = [
        (k, v) for k, v in draw(st.lists(st.tuples(query_keys, query_values), max_size=4))
    ]
    bool_keys = draw(st.lists(query_keys, max_size=2, unique=True))
    query += [(k, draw(st.booleans())) for k in bool_keys if all(k != q for q, _ in query)]
    return {
        "method": draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "get"])),
        "host": draw(
            st.sampled_from(["metastudio.cn-north-4.myhuaweicloud.com", "127.0.0.1:8123"])
        ),
        "path": draw(paths),
        "query": query,
        "headers": headers,
        "body": draw(st.one_of(st.just(b""), st.binary(max_size=64))),
        "project_id": draw(st.text(alphabet=string.hexdigits, min_size=1, max_size=32)),
        "content_type": draw(
            st.sampled_from([None, "application/json", "application/json;charset=UTF-8"])
        ),
    }


def sdk_authorization(
    req: dict[str, object], ak: str, sk: str, date: str
) -> tuple[str, dict[str, str]]:
    headers = dict(req["headers"])  # type: ignore[call-overload]
    headers["X-Sdk-Date"] = date
    if req["content_type"]:
        headers["Content-Type"] = req["content_type"]
    request = sdk_request.SdkRequest(
        method=req["method"],
        schema="https",
        host=req["host"],
        resource_path=req["path"],
        query_params=list(req["query"]),  # type: ignore[call-overload]
        header_params=headers,
        body=req["body"] or None,
    )
    signed = sdk_credentials.BasicCredentials(ak, sk, req["project_id"]).sign_request(request)
    return signed.header_params["Authorization"], signed.header_params


@settings(max_examples=400, deadline=None)
@given(requests(), secrets, secrets, moments)
def test_signature_is_the_sdks_byte_for_byte(
    req: dict[str, object], ak: str, sk: str, when: datetime
) -> None:
    date = when.strftime("%Y%m%dT%H%M%SZ")
    expected, sdk_headers = sdk_authorization(req, ak, sk, date)
    headers = dict(req["headers"])  # type: ignore[call-overload]
    headers["X-Project-Id"] = str(req["project_id"])
    if req["content_type"]:
        headers["Content-Type"] = str(req["content_type"])
    ours = sign_request(
        ak=ak,
        sk=sk,
        method=str(req["method"]),
        host=str(req["host"]),
        path=str(req["path"]),
        query=req["query"],  # type: ignore[arg-type]
        headers=headers,
        body=req["body"],  # type: ignore[arg-type]
        when=when,
    )
    assert ours.headers["Authorization"] == expected
    assert ours.headers["X-Sdk-Date"] == sdk_headers["X-Sdk-Date"]


@given(requests(), secrets, secrets, moments)
def test_any_change_to_a_signed_part_changes_the_signature(
    req: dict[str, object], ak: str, sk: str, when: datetime
) -> None:
    base = {
        "ak": ak,
        "sk": sk,
        "method": "GET",
        "host": str(req["host"]),
        "path": str(req["path"]),
        "headers": {"X-Project-Id": str(req["project_id"])},
        "when": when,
    }
    signature = sign_request(**base).signature  # type: ignore[arg-type]
    for field, changed in (
        ("sk", sk + "x"),
        ("method", "POST"),
        ("host", "other.example.com"),
        ("path", str(req["path"]) + "x"),
        ("headers", {"X-Project-Id": str(req["project_id"]) + "0"}),
    ):
        assert sign_request(**(base | {field: changed})).signature != signature  # type: ignore[arg-type]


def test_canonical_uri_encodes_each_segment_and_ends_with_a_slash() -> None:
    assert canonical_uri("/v1/p/2d-digital-human-videos/a%2Fb c") == (
        "/v1/p/2d-digital-human-videos/a/b%20c/"
    )
    assert canonical_uri("/v1/") == "/v1/"


def test_documented_shape_of_the_authorization_header() -> None:
    signed = sign_request(
        ak="AKEXAMPLE",
        sk="SKEXAMPLE",
        method="GET",
        host="metastudio.cn-north-4.myhuaweicloud.com",
        path="/v1/0d697589d98091f12f92c0073501cd79/2d-digital-human-videos/26f06524",
        headers={"X-Project-Id": "0d697589d98091f12f92c0073501cd79"},
        when=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert signed.headers["X-Sdk-Date"] == "20260102T030405Z"
    assert signed.headers["Authorization"].startswith(
        "SDK-HMAC-SHA256 Access=AKEXAMPLE, SignedHeaders=host;x-project-id;x-sdk-date, Signature="
    )
