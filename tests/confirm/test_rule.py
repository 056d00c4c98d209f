"""The confirmation rule, case by case and as properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.confirm.details import JobDetails, parse_job_details
from callbacks.confirm.errors import (
    ApiConfigurationError,
    ApiUnavailable,
    JobQueryRejected,
    MetaStudioApiError,
)
from callbacks.confirm.rule import Confirmation, after_error, decide, job_query, verdict
from callbacks.confirm.testing import job_body
from tests.confirm.events import event, job_result, live_event

JOB_KINDS = ("video", "photo_video", "business_card", "subtitle")


def details(kind: str = "video", job_id: str = "job-1", state: str = "SUCCEED",
            asset_id: str = "asset-1", room_id: str = "room-1") -> JobDetails:  # fmt: skip
    raw = job_body(kind, job_id, state=state, asset_id=asset_id, room_id=room_id)
    return parse_job_details(kind, job_id, raw)


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_genuine_result_is_confirmed(kind: str) -> None:
    asset = None if kind == "subtitle" else "asset-1"
    c = decide(job_result(kind, asset_id=asset), details(kind))
    assert c.outcome == "confirmed"
    assert c.details is not None


def test_success_spellings_agree() -> None:
    assert decide(job_result(result="SUCCESS"), details(state="SUCCEED")).outcome == "confirmed"
    assert decide(job_result(result="SUCCEED"), details(state="SUCCESS")).outcome == "confirmed"


@pytest.mark.parametrize(
    ("callback", "answer", "reason"),
    [
        (job_result(), None, "unknown_job"),
        (job_result(asset_id="ATTACKER"), details(), "asset_mismatch"),
        (job_result(result="SUCCEED"), details(state="FAILED"), "state_mismatch"),
        (job_result(result="FAILED"), details(state="SUCCEED"), "state_mismatch"),
        (job_result(result="FAILED"), details(state="CANCELED"), "state_mismatch"),
        (job_result(job_id="job-2"), details(), "job_mismatch"),
        (event("video", result="SUCCEED"), details(), "no_job_to_confirm"),
        (event("video", job_id="job-1"), details(), "no_result_in_callback"),
        (live_event(room_id="room-2"), details("live"), "room_mismatch"),
        (live_event(), None, "unknown_job"),
        (event(None, taskId=1, status="SUCCESS"), details(), "no_job_to_confirm"),
    ],
)
def test_refuted(callback: object, answer: JobDetails | None, reason: str) -> None:
    c = decide(callback, answer)  # type: ignore[arg-type]
    assert (c.outcome, c.reason) == ("refuted", reason)


def test_a_job_not_finished_yet_is_asked_again() -> None:
    c = decide(job_result(), details(state="PROCESSING"))
    assert (c.outcome, c.reason) == ("retry_later", "not_terminal_yet")


def test_a_callback_without_asset_id_needs_no_asset_match() -> None:
    assert decide(job_result(asset_id=None), details()).outcome == "confirmed"


@pytest.mark.parametrize(
    ("status", "state", "outcome"),
    [
        ("FINISHED", "SUCCEED", "confirmed"),
        ("ERROR", "FAILED", "confirmed"),
        ("FINISHED", "FAILED", "refuted"),
        ("ERROR", "SUCCEED", "refuted"),
        ("FINISHED", "PROCESSING", "retry_later"),
        ("WAITING", "PROCESSING", "confirmed"),
    ],
)
def test_tts_status_against_the_job_state(status: str, state: str, outcome: str) -> None:
    c = decide(event("tts", job_id="job-1", status=status), details("tts", state=state))
    assert c.outcome == outcome


def test_live_event_is_confirmed_by_its_job_in_its_room() -> None:
    c = decide(live_event(), details("live", state="PROCESSING"))
    assert (c.outcome, c.reason) == ("confirmed", "job_exists")
    q = job_query(live_event())
    assert q is not None
    assert (q.kind, q.job_id, q.room_id) == ("live", "job-1", "room-1")


@pytest.mark.parametrize(
    ("error", "outcome", "reason"),
    [
        (ApiUnavailable("http_503"), "retry_later", "api_unavailable"),
        (ApiConfigurationError("http_401"), "retry_later", "api_misconfigured"),
        (JobQueryRejected("http_400", status=400), "refuted", "job_rejected_by_api"),
        (MetaStudioApiError("odd"), "retry_later", "api_error"),
    ],
)
def test_api_failures(error: MetaStudioApiError, outcome: str, reason: str) -> None:
    c = after_error(error)
    assert (c.outcome, c.reason) == (outcome, reason)


@pytest.mark.parametrize(
    ("mode", "confirmation", "action"),
    [
        ("off", Confirmation.refuted("unknown_job"), "deliver"),
        ("enrich", Confirmation.refuted("asset_mismatch"), "deliver"),
        ("enrich", Confirmation.retry_later("api_unavailable"), "wait"),
        ("required", Confirmation.refuted("asset_mismatch"), "refute"),
        ("required", Confirmation.retry_later("api_unavailable"), "wait"),
        ("required", Confirmation.confirmed(None), "deliver"),
    ],
)
def test_verdict_by_mode(mode: str, confirmation: Confirmation, action: str) -> None:
    assert verdict(mode, confirmation).action == action  # type: ignore[arg-type]


ids = st.text(alphabet="abcdef0123456789-", min_size=1, max_size=8)
results = st.sampled_from(["SUCCEED", "SUCCESS", "FAILED"])
states = st.sampled_from(["SUCCEED", "SUCCESS", "FAILED", "CANCELED", "PROCESSING", "WAITING"])


@given(st.sampled_from(JOB_KINDS[:3]), ids, ids, results, states, ids, st.none() | ids)
def test_confirmed_exactly_when_job_state_and_asset_agree(
    kind: str, job: str, answered_job: str, result: str, state: str, asset: str,
    claimed_asset: str | None,
) -> None:  # fmt: skip
    raw = job_body(kind, answered_job, state=state, asset_id=asset)
    answer = parse_job_details(kind, job, raw)
    c = decide(job_result(kind, job, result, claimed_asset), answer)
    norm = {"SUCCESS": "SUCCEED"}
    terminal = state not in ("PROCESSING", "WAITING")
    agrees = (
        job == answered_job
        and terminal
        and norm.get(result, result) == norm.get(state, state)
        and (claimed_asset is None or answer.asset_id is None or claimed_asset == asset)
    )
    assert (c.outcome == "confirmed") == agrees
    if job == answered_job and not terminal:
        assert c.outcome == "retry_later"
    if c.outcome != "confirmed" and job == answered_job and terminal:
        assert c.outcome == "refuted"


@given(ids, ids)
def test_every_single_change_of_a_confirmed_callback_is_refuted(job: str, asset: str) -> None:
    answer = details("video", job, "SUCCEED", asset)
    assert decide(job_result("video", job, "SUCCEED", asset), answer).outcome == "confirmed"
    for changed in (
        job_result("video", job + "x", "SUCCEED", asset),
        job_result("video", job, "FAILED", asset),
        job_result("video", job, "SUCCEED", asset + "x"),
    ):
        assert decide(changed, answer).outcome == "refuted"
