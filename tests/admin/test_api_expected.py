"""``/api/jobs/expected``: `callbacks jobs expect` and `jobs list` over the console's HTTP API.

A real `callbacks serve` with its console, confirming against the fake MetaStudio API: a job
expected through the API and never called back is delivered by polling, one that never finishes
is reported overdue, and every refusal is a 4xx with the reason the CLI's rule gives.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbacks.confirm.credentials import AkSk, with_key_file_credentials
from callbacks.confirm.testing import FakeMetaStudio
from callbacks.keyfile import update_key_file
from tests.admin.console_support import (
    ADMIN_TOKEN,
    READ_ONLY_TOKEN,
    Console,
    csrf_of,
    sign_in,
    start_console,
)
from tests.e2e.dispatch_support import run_cli
from tests.support import Setup, wait_for

pytestmark = pytest.mark.slow

AK, SK = "CONSOLE-AK-5be2", "CONSOLE-SK-secret-a93f07c1"


@pytest.fixture(scope="module")
def api() -> Iterator[FakeMetaStudio]:
    with FakeMetaStudio(ak=AK, sk=SK) as fake:
        yield fake


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, api: FakeMetaStudio) -> Iterator[Console]:
    def confirm_with_the_fake(setup: Setup) -> None:
        config = tomllib.loads(setup.config_path.read_text())
        config["metastudio_api"] = {
            "endpoint": api.endpoint,
            "project_id": api.project_id,
            "timeout": 2.0,
            "retry_attempts": 1,
        }
        for route in config["routes"]:
            route["reconcile_after"] = 0.2
        setup.config_path.write_text(tomli_w.dumps(config))
        update_key_file(setup.keys_path, lambda k: with_key_file_credentials(k, AkSk(AK, SK)))

    running = start_console(tmp_path_factory.mktemp("expect"), configure=confirm_with_the_fake)
    try:
        yield running
    finally:
        running.stop()


def expect(client: httpx.Client, body: Any, **headers: str) -> httpx.Response:
    return client.post("/api/jobs/expected", json=body, headers=headers)


def listed(console: Console, *, overdue: bool = False) -> dict[str, dict[str, Any]]:
    with console.api(READ_ONLY_TOKEN) as reader:
        answer = reader.get("/api/jobs/expected", params={"overdue": str(overdue).lower()})
    assert answer.status_code == 200, answer.text
    return {j["job_id"]: j for j in answer.json()["jobs"]}


def test_an_expected_job_without_a_callback_is_delivered_by_polling(
    console: Console, api: FakeMetaStudio
) -> None:
    api.set_job("video", "job-polled", asset_id="asset-polled")
    with console.api() as admin:
        answer = expect(admin, {"route": "ms-video", "job_id": "job-polled", "within": "1h"})
    assert answer.status_code == 200, answer.text
    job = answer.json()["job"]
    assert (job["route"], job["state"], job["overdue"]) == ("ms-video", "waiting", False)
    assert wait_for(lambda: listed(console)["job-polled"]["state"] == "found")
    event_id = listed(console)["job-polled"]["event_id"]
    assert console.wait_status(event_id, "delivered")
    # The CLI reads the same table: what the API recorded, `jobs list` shows.
    out = run_cli(console.setup, "jobs", "list", "--json")
    assert "job-polled" in {j["job_id"] for j in json.loads(out.stdout)}


def test_a_job_that_never_finishes_is_listed_overdue(console: Console, api: FakeMetaStudio) -> None:
    api.set_job("video", "job-stuck", state="RUNNING")
    with console.api() as admin:
        answer = expect(admin, {"route": "ms-video", "job_id": "job-stuck", "within": 1})
    assert answer.status_code == 200, answer.text
    assert wait_for(lambda: "job-stuck" in listed(console, overdue=True))
    stuck = listed(console, overdue=True)["job-stuck"]
    assert (stuck["state"], stuck["overdue"], stuck["last_state"]) == ("overdue", True, "RUNNING")
    assert "job-polled" not in listed(console, overdue=True)


def test_the_read_only_token_lists_but_cannot_expect(console: Console) -> None:
    with console.api(READ_ONLY_TOKEN) as reader:
        assert reader.get("/api/jobs/expected").status_code == 200
        answer = expect(reader, {"route": "ms-video", "job_id": "job-reader"})
    assert answer.status_code == 403
    assert answer.json()["reason"] == "read_only"
    assert "job-reader" not in listed(console)


def test_a_session_needs_its_csrf_token_to_expect(console: Console) -> None:
    body = {"route": "ms-video", "job_id": "job-session"}
    with httpx.Client(base_url=console.url) as browser:
        assert sign_in(browser, ADMIN_TOKEN).status_code == 303
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            answer = expect(browser, body, **headers)
            assert answer.status_code == 403
            assert answer.json()["reason"] == "csrf_failed"
        assert "job-session" not in listed(console)
        token = csrf_of(browser.get("/").text)
        assert expect(browser, body, **{"X-CSRF-Token": token}).status_code == 200
    assert "job-session" in listed(console)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "malformed_json"),
        (b"[1]", "json_not_an_object"),
        (b"{}", "bad_expect"),
        (b'{"route": "ms-video"}', "bad_expect"),
        (b'{"route": "ms-video", "job_id": 7}', "bad_expect"),
        (b'{"route": "ms-video", "job_id": "j", "when": "2h"}', "bad_expect"),
        (b'{"route": "nowhere", "job_id": "j"}', "unknown_route"),
        (b'{"route": "st", "job_id": "j"}', "not_pollable"),
        (b'{"route": "ms-live", "job_id": "j"}', "not_pollable"),
        (b'{"route": "ms-video", "job_id": ""}', "bad_job_id"),
        (b'{"route": "ms-video", "job_id": "' + b"j" * 129 + b'"}', "bad_job_id"),
        (b'{"route": "ms-video", "job_id": "j", "within": "soon"}', "bad_within"),
        (b'{"route": "ms-video", "job_id": "j", "within": "0"}', "bad_within"),
        (b'{"route": "ms-video", "job_id": "j", "within": -5}', "bad_within"),
        (b'{"route": "ms-video", "job_id": "j", "within": true}', "bad_within"),
        (b'{"route": "ms-video", "job_id": "j", "within": "9999999d"}', "bad_within"),
        (b'{"route": "ms-video", "job_id": "j", "within": [1]}', "bad_within"),
    ],
)
def test_bad_input_is_a_400_with_its_reason(console: Console, body: bytes, reason: str) -> None:
    with console.api() as admin:
        answer = admin.post("/api/jobs/expected", content=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["reason"] == reason
    assert answer.json()["ok"] is False
    assert "j" not in listed(console)


def test_the_refusals_are_the_clis(console: Console) -> None:
    """One rule: the CLI refuses what the API refuses, with the same words."""
    with console.api() as admin:
        answer = expect(admin, {"route": "st", "job_id": "j"})
    out = run_cli(console.setup, "jobs", "expect", "st", "j")
    assert out.returncode == 1
    assert answer.json()["message"] in out.stderr


def test_a_bad_overdue_filter_is_a_400(console: Console) -> None:
    with console.api(READ_ONLY_TOKEN) as reader:
        answer = reader.get("/api/jobs/expected", params={"overdue": "maybe"})
    assert answer.status_code == 400
    assert answer.json()["reason"] == "bad_filter"


def test_without_the_metastudio_api_expecting_is_a_409(tmp_path: Path) -> None:
    plain = start_console(tmp_path)
    try:
        with plain.api() as admin:
            answer = expect(admin, {"route": "ms-video", "job_id": "j"})
            listing = admin.get("/api/jobs/expected")
    finally:
        plain.stop()
    assert answer.status_code == 409
    assert answer.json()["reason"] == "no_metastudio_api"
    assert listing.json() == {"jobs": []}


def test_the_log_holds_no_credential(console: Console) -> None:
    log = console.server.output()
    assert SK not in log
    assert AK not in log


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
expect_bodies = st.fixed_dictionaries(
    {},
    optional={
        "route": st.sampled_from(["ms-video", "st", "ms-live", "nowhere"]) | json_values,
        "job_id": st.text(max_size=140) | json_values,
        "within": st.text(max_size=10) | st.integers() | st.floats() | json_values,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(expect_bodies, json_values))
def test_no_body_gets_an_answer_other_than_200_or_a_4xx_with_a_reason(
    console: Console, body: Any
) -> None:
    with console.api() as admin:
        answer = admin.post("/api/jobs/expected", content=json.dumps(body, allow_nan=True))
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert answer.json()["reason"]
    else:
        assert answer.json()["job"]["route"] == "ms-video"
