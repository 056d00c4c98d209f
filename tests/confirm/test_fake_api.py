"""The fake API refuses what the platform would: it is only useful if it can say no."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbacks.confirm.kinds import query_path
from callbacks.confirm.signer import sign_request
from callbacks.confirm.testing import FakeMetaStudio

AK, SK = "FAKE-AK", "FAKE-SK"


@pytest.fixture
def api() -> Iterator[FakeMetaStudio]:
    with FakeMetaStudio(ak=AK, sk=SK, token="tok") as fake:
        fake.set_job("video", "j1")
        yield fake


def get(api: FakeMetaStudio, path: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(api.endpoint + path, headers=headers, timeout=5)


def signed(api: FakeMetaStudio, path: str, **kw: object) -> dict[str, str]:
    host = api.endpoint.removeprefix("http://")
    headers = {"X-Project-Id": str(kw.pop("project", api.project_id))}
    options: dict[str, object] = {"ak": AK, "sk": SK, "method": "GET", "host": host} | kw
    result = sign_request(path=path, headers=headers, **options)  # type: ignore[arg-type]
    return headers | result.headers


def test_a_signed_request_is_answered(api: FakeMetaStudio) -> None:
    path = query_path("video", api.project_id, "j1")
    answer = get(api, path, signed(api, path))
    assert answer.status_code == 200
    assert answer.json()["job_id"] == "j1"
    assert answer.headers["X-Request-Id"]


@pytest.mark.parametrize(
    "change",
    ["unsigned", "other_path", "wrong_sk", "wrong_ak", "old_date", "other_project", "bad_token"],
)
def test_anything_wrong_is_401(api: FakeMetaStudio, change: str) -> None:
    path = query_path("video", api.project_id, "j1")
    variants: dict[str, Callable[[], dict[str, str]]] = {
        "unsigned": lambda: {},
        "other_path": lambda: signed(api, query_path("video", api.project_id, "j2")),
        "wrong_sk": lambda: signed(api, path, sk="other"),
        "wrong_ak": lambda: signed(api, path, ak="other"),
        "old_date": lambda: signed(api, path, when=datetime.now(UTC) - timedelta(hours=1)),
        "other_project": lambda: signed(api, path, project="someone-else"),
        "bad_token": lambda: {"X-Auth-Token": "nope"},
    }
    headers = variants[change]()
    answer = get(api, path, headers)
    assert answer.status_code == 401
    assert answer.json() == {"error_code": "MSS.00000001", "error_msg": "Unauthorized"}


def test_told_faults_then_recovery(api: FakeMetaStudio) -> None:
    path = query_path("video", api.project_id, "j1")
    api.fail_next(429, times=1)
    api.fail_next(500, times=1, job_id="j1")
    statuses = [get(api, path, signed(api, path)).status_code for _ in range(3)]
    assert statuses == [429, 500, 200]
    api.forget("video", "j1")
    assert get(api, path, signed(api, path)).json()["error_code"] == "MSS.00000002"


# What an HTTP client can send: no leading or trailing blanks, never empty.
_header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=80
).map(lambda text: text.strip() or "x")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    authorization=_header_text | st.builds(
        lambda a, h, s: f"SDK-HMAC-SHA256 Access={a}, SignedHeaders={h}, Signature={s}",
        _header_text, st.sampled_from(["host;x-sdk-date", "host", "x;y", ""]),
        st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    ),
    date=_header_text | st.just("20260101T000000Z"),
)  # fmt: skip
def test_junk_authorization_is_401_never_an_error(
    api: FakeMetaStudio, authorization: str, date: str
) -> None:
    path = query_path("video", api.project_id, "j1")
    headers = {"Authorization": authorization, "X-Sdk-Date": date, "X-Project-Id": api.project_id}
    assert get(api, path, headers).status_code == 401
