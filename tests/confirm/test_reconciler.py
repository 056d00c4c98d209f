"""The reconciler's pieces: what is pollable, the polled body, claims of expected jobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from callbacks.confirm.details import parse_job_details
from callbacks.confirm.expected import SQLiteExpectedJobs
from callbacks.confirm.reconciler import NotPollable, check_pollable, expect_job, poll_body
from callbacks.confirm.testing import job_body
from callbacks.dedupe import dedupe_key
from tests.confirm.events import route

NOW = 1_800_000_000.0


@pytest.mark.parametrize("kind", ["video", "photo_video", "business_card", "subtitle", "tts"])
def test_job_kinds_are_pollable(kind: str) -> None:
    check_pollable(route(kind))


@pytest.mark.parametrize("kind", [None, "live"])
def test_sensetime_and_live_are_not(kind: str | None) -> None:
    with pytest.raises(NotPollable, match="no job result to poll"):
        check_pollable(route(kind))


@pytest.mark.parametrize(
    ("kind", "state", "body"),
    [
        ("video", "SUCCESS", {"job_id": "j", "result": "SUCCEED", "asset_id": "a"}),
        ("video", "FAILED", {"job_id": "j", "result": "FAILED"}),
        ("tts", "SUCCEED", {"job_id": "j", "status": "FINISHED"}),
        ("tts", "FAILED", {"job_id": "j", "status": "ERROR"}),
    ],
)
def test_a_polled_result_has_the_callbacks_dedupe_key(
    kind: str, state: str, body: dict[str, str]
) -> None:
    details = parse_job_details(kind, "j", job_body(kind, "j", state=state, asset_id="a"))
    polled = poll_body(route(kind), details)
    assert polled == body
    # The platform's own callback for the job is then a duplicate of the polled event.
    assert dedupe_key(route(kind), polled) == dedupe_key(route(kind), body)


def test_claims_are_exclusive_until_settled_or_lapsed(tmp_path: Path) -> None:
    async def scenario() -> None:
        jobs = SQLiteExpectedJobs(tmp_path / "db.sqlite")
        try:
            job = await expect_job(jobs, route("video"), "j1", reconcile_after=10, now=NOW)
            assert (job.state, job.poll_after, job.deadline) == ("waiting", NOW + 10, NOW + 86400)
            assert await jobs.claim(owner="a", now=NOW + 5, limit=10, lease_seconds=30) == []
            [mine] = await jobs.claim(owner="a", now=NOW + 10, limit=10, lease_seconds=30)
            assert await jobs.claim(owner="b", now=NOW + 11, limit=10, lease_seconds=30) == []
            [lapsed] = await jobs.claim(owner="b", now=NOW + 41, limit=10, lease_seconds=30)
            assert lapsed.job_id == mine.job_id
            # The first owner lost its claim: its outcome is not written.
            await jobs.settle(
                "ms", "j1", owner="a", state="found", next_poll_at=NOW, last_state="x"
            )
            await jobs.settle(
                "ms", "j1", owner="b", state="overdue", next_poll_at=NOW, last_state="PROCESSING"
            )
            [overdue] = await jobs.list(overdue=True)
            assert (overdue.state, overdue.polls, overdue.last_state) == (
                "overdue",
                1,
                "PROCESSING",
            )
        finally:
            await jobs.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("job_id", ["", "x" * 129, "a\nb"])
def test_expect_refuses_odd_job_ids(tmp_path: Path, job_id: str) -> None:
    async def scenario() -> None:
        jobs = SQLiteExpectedJobs(tmp_path / "db.sqlite")
        try:
            await expect_job(jobs, route("video"), job_id, reconcile_after=1)
        finally:
            await jobs.close()

    with pytest.raises(NotPollable, match="printable"):
        asyncio.run(scenario())
