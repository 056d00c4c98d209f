"""JobDetails: the documented answers parsed, states normalised, junk never raising."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from callbacks.confirm.details import (
    JobDetails,
    normalise_state,
    parse_job_details,
    url_expiry,
)
from callbacks.confirm.kinds import KINDS
from callbacks.confirm.testing import job_body

SAMPLES = Path(__file__).parent / "samples"
FETCHED = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_documented_video_answer() -> None:
    raw = json.loads((SAMPLES / "video_success.json").read_text())
    d = parse_job_details("video", "26f06524-4f75-4b3a-a853-b649a21aaf66", raw, fetched_at=FETCHED)
    assert d.state == "SUCCEED"
    assert d.raw_state == "SUCCESS"
    assert d.terminal
    assert d.succeeded
    assert d.duration == 60.0
    assert d.asset_id == "942e65a5fd219a2e01fb08d881cfadb9"
    assert d.asset is not None
    assert d.asset.name == "One Day"
    assert d.asset.cover is not None
    assert d.asset.cover.expires_at == datetime.fromtimestamp(1671241457, UTC)
    assert d.asset.cover.expired(FETCHED)
    assert d.error is None
    assert d.start_time == datetime(2022, 1, 18, 16, 29, 36, tzinfo=UTC)
    assert d.update_time == datetime(2022, 11, 30, 7, 0, 9, tzinfo=UTC)
    assert d.raw is raw


def test_preview_url_expires_24_hours_after_fetching() -> None:
    raw = job_body("photo_video", "p1", asset_id="a1")
    d = parse_job_details("photo_video", "p1", raw, fetched_at=FETCHED)
    assert d.asset is not None
    assert d.asset.preview_video is not None
    assert d.asset.preview_video.expires_at == FETCHED + timedelta(hours=24)


def test_failed_job_error() -> None:
    raw = job_body("video", "j", state="FAILED", error=("MSS.00000123", "Script invalid"))
    d = parse_job_details("video", "j", raw)
    assert d.state == "FAILED"
    assert d.terminal
    assert not d.succeeded
    assert d.error is not None
    assert (d.error.code, d.error.message) == ("MSS.00000123", "Script invalid")
    assert d.asset is None


def test_business_card_job_is_under_job_info() -> None:
    d = parse_job_details("business_card", "c1", job_body("business_card", "c1", asset_id="a"))
    assert (d.job_id, d.state, d.asset_id) == ("c1", "SUCCEED", "a")


@pytest.mark.parametrize(
    ("state", "expected"),
    [("SUCCEED", "SUCCEED"), ("FAILED", "FAILED"), ("PROCESSING", "PROCESSING")],
)
def test_subtitle_generated_is_success_or_failure_by_its_files(state: str, expected: str) -> None:
    d = parse_job_details("subtitle", "s1", job_body("subtitle", "s1", state=state))
    assert d.state == expected
    assert d.terminal == (expected != "PROCESSING")


def test_tts_files_expire_in_an_hour() -> None:
    d = parse_job_details("tts", "t1", job_body("tts", "t1"), fetched_at=FETCHED)
    assert d.state == "SUCCEED"
    assert d.files["audio_file_url"].expires_at == FETCHED + timedelta(hours=1)
    failed = parse_job_details(
        "tts", "t1", job_body("tts", "t1", state="FAILED", error=("E1", "m"))
    )
    assert failed.error is not None
    assert failed.error.code == "E1"


def test_live_job_has_its_room() -> None:
    d = parse_job_details("live", "l1", job_body("live", "l1", state="PROCESSING", room_id="r9"))
    assert (d.room_id, d.state, d.terminal) == ("r9", "PROCESSING", False)


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("SUCCESS", "SUCCEED"),
        ("SUCCEED", "SUCCEED"),
        ("succeed", "SUCCEED"),
        ("FINISHED", "SUCCEED"),
        ("ERROR", "FAILED"),
        ("BLOCK", "BLOCKED"),
        ("WAITING", "WAITING"),
        ("NEW_STATE", "NEW_STATE"),
    ],
)
def test_state_spellings(text: str, state: str) -> None:
    assert normalise_state(text) == state


def test_url_expiry_is_only_a_plain_epoch() -> None:
    assert url_expiry("https://x/y?Expires=100") == datetime.fromtimestamp(100, UTC)
    for url in ("https://x/y", "https://x/y?Expires=-1", "https://x/y?Expires=1e9", "http://[::1"):
        assert url_expiry(url) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "job_id",
        "state",
        "job_state",
        "duration",
        "output_asset_config",
        "error_info",
        "job_info",
        "subtitle_file_info",
        "start_time",
        "end_time",
        "cover_url",
        "code",
        "message",
        "audio_file_url",
        "room_id",
        "asset_id",
        "cover_url",
        "preview_video_url",
        "Expires",
    ]
)
junk_bodies = st.dictionaries(field_names | st.text(max_size=6), json_values, max_size=8)


@given(st.sampled_from(KINDS), junk_bodies)
@example("subtitle", {"job_state": "GENERATED", "subtitle_file_info": 5})
@example("business_card", {"job_info": [1]})
@example("video", {"output_asset_config": {"cover_url": "http://x?Expires=999999999999"}})
def test_junk_never_raises(kind: str, body: dict[str, object]) -> None:
    d = parse_job_details(kind, "j", body)
    assert isinstance(d, JobDetails)
    assert d.raw is body


@given(st.sampled_from(KINDS), st.sampled_from(["SUCCEED", "SUCCESS", "FAILED", "PROCESSING"]))
def test_every_kind_round_trips_its_state(kind: str, state: str) -> None:
    d = parse_job_details(kind, "job-1", job_body(kind, "job-1", state=state, asset_id="a-1"))
    assert d.state == normalise_state(state)
    assert d.job_id == "job-1"
    if kind in ("video", "photo_video", "business_card") and d.succeeded:
        assert d.asset_id == "a-1"
