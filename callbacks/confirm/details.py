"""What the MetaStudio API says about a job, typed and normalised across the kinds.

The query APIs differ per kind (a business card nests its job under ``job_info``, a subtitle
file reports ``GENERATED`` and per-file states, async TTS has ``code``/``message`` and file URLs),
and the platform writes success as both ``SUCCEED`` and ``SUCCESS``. :class:`JobDetails` is the
one shape handlers read; ``raw`` keeps the whole answer. Parsing is lenient like the events:
unknown fields pass through in ``raw``, unknown states as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

SUCCEEDED: Final = "SUCCEED"
FAILED: Final = "FAILED"
CANCELED: Final = "CANCELED"
BLOCKED: Final = "BLOCKED"
WAITING: Final = "WAITING"
PROCESSING: Final = "PROCESSING"
TERMINAL_STATES: Final = frozenset({SUCCEEDED, FAILED, CANCELED, BLOCKED})

_STATE_ALIASES: Final = {
    "SUCCESS": SUCCEEDED,
    "SUCCEEDED": SUCCEEDED,
    "FINISHED": SUCCEEDED,
    "GENERATE_SUCCEED": SUCCEEDED,
    "ERROR": FAILED,
    "GENERATE_FAILED": FAILED,
    "CANCELLED": CANCELED,
    "BLOCK": BLOCKED,
    "GENERATING": PROCESSING,
}
# Documented validity of URLs that carry no expiry of their own.
_PREVIEW_VALIDITY: Final = timedelta(hours=24)
_TTS_FILE_VALIDITY: Final = timedelta(hours=1)


def normalise_state(value: object) -> str | None:
    """One spelling per state: ``SUCCESS`` and ``SUCCEED`` are both :data:`SUCCEEDED`."""
    if not isinstance(value, str) or not value:
        return None
    upper = value.strip().upper()
    return _STATE_ALIASES.get(upper, upper)


@dataclass(frozen=True)
class Link:
    """A download URL and when it stops working, if the API says (``Expires=`` or documented)."""

    url: str = field(repr=False)
    expires_at: datetime | None = None

    def expired(self, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        return (now or datetime.now(UTC)) >= self.expires_at


@dataclass(frozen=True)
class OutputAsset:
    asset_id: str | None = None
    name: str | None = None
    cover: Link | None = None
    preview_video: Link | None = None


@dataclass(frozen=True)
class JobError:
    code: str | None
    message: str | None


@dataclass(frozen=True)
class JobDetails:
    """One job as the platform reports it. ``state`` is normalised; ``raw_state`` as sent."""

    kind: str
    job_id: str
    state: str | None
    raw_state: str | None
    fetched_at: datetime
    duration: float | None = None
    asset: OutputAsset | None = None
    error: JobError | None = None
    files: Mapping[str, Link] = field(default_factory=dict)
    """Other downloadable outputs by field name (TTS audio, subtitle files)."""
    room_id: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    create_time: datetime | None = None
    update_time: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED

    @property
    def asset_id(self) -> str | None:
        return self.asset.asset_id if self.asset else None


def parse_job_details(
    kind: str,
    job_id: str,
    raw: Mapping[str, Any],
    *,
    fetched_at: datetime | None = None,
) -> JobDetails:
    """The :class:`JobDetails` for one query answer of ``kind`` (a key of ``QUERY_PATHS``)."""
    fetched_at = fetched_at or datetime.now(UTC)
    if kind == "business_card":
        return _business_card(job_id, raw, fetched_at)
    if kind == "subtitle":
        return _subtitle(job_id, raw, fetched_at)
    if kind == "tts":
        return _tts(job_id, raw, fetched_at)
    return _job(kind, job_id, raw, raw, fetched_at)


def _job(
    kind: str,
    job_id: str,
    job: Mapping[str, Any],
    raw: Mapping[str, Any],
    fetched_at: datetime,
) -> JobDetails:
    raw_state = _text(job.get("state"))
    return JobDetails(
        kind=kind,
        job_id=_text(job.get("job_id")) or job_id,
        state=normalise_state(raw_state),
        raw_state=raw_state,
        fetched_at=fetched_at,
        duration=_number(job.get("duration")),
        asset=_asset(job.get("output_asset_config"), fetched_at),
        error=_error(job.get("error_info")),
        files=_links({"cover_url": job.get("cover_url")}, fetched_at, None),
        room_id=_text(job.get("room_id")),
        start_time=_time(job.get("start_time")),
        end_time=_time(job.get("end_time")),
        create_time=_time(job.get("create_time")),
        update_time=_time(job.get("lastupdate_time")),
        raw=raw,
    )


def _business_card(job_id: str, raw: Mapping[str, Any], fetched_at: datetime) -> JobDetails:
    info = raw.get("job_info")
    return _job("business_card", job_id, info if isinstance(info, dict) else {}, raw, fetched_at)


def _subtitle(job_id: str, raw: Mapping[str, Any], fetched_at: datetime) -> JobDetails:
    raw_state = _text(raw.get("job_state"))
    listed = raw.get("subtitle_file_info")
    files = [f for f in listed if isinstance(f, dict)] if isinstance(listed, list) else []
    state = normalise_state(raw_state)
    error = None
    if raw_state is not None and raw_state.upper() == "GENERATED":
        failed = [f for f in files if normalise_state(f.get("subtitle_file_state")) == FAILED]
        state = FAILED if failed else SUCCEEDED
        error = _error(failed[0].get("error_info")) if failed else None
    links = {
        f"subtitle_file_{f.get('sequence_no', i)}": f.get("subtitle_file_download_url")
        for i, f in enumerate(files)
    }
    return JobDetails(
        kind="subtitle",
        job_id=job_id,
        state=state,
        raw_state=raw_state,
        fetched_at=fetched_at,
        error=error,
        files=_links(links, fetched_at, None),
        raw=raw,
    )


def _tts(job_id: str, raw: Mapping[str, Any], fetched_at: datetime) -> JobDetails:
    raw_state = _text(raw.get("state"))
    state = normalise_state(raw_state)
    code, message = _text(raw.get("code")), _text(raw.get("message"))
    error = JobError(code, message) if state == FAILED and (code or message) else None
    names = ("audio_file_url", "audio_info_file_url", "audio_srt_file_url", "audio_action_file_url")
    return JobDetails(
        kind="tts",
        job_id=job_id,
        state=state,
        raw_state=raw_state,
        fetched_at=fetched_at,
        error=error,
        files=_links({n: raw.get(n) for n in names}, fetched_at, _TTS_FILE_VALIDITY),
        raw=raw,
    )


def _asset(value: object, fetched_at: datetime) -> OutputAsset | None:
    if not isinstance(value, dict):
        return None
    return OutputAsset(
        asset_id=_text(value.get("asset_id")),
        name=_text(value.get("asset_name")),
        cover=_link(value.get("cover_url"), fetched_at, None),
        preview_video=_link(value.get("preview_video_url"), fetched_at, _PREVIEW_VALIDITY),
    )


def _error(value: object) -> JobError | None:
    if not isinstance(value, dict):
        return None
    code, message = _text(value.get("error_code")), _text(value.get("error_msg"))
    return JobError(code, message) if code or message else None


def _links(
    values: Mapping[str, object], fetched_at: datetime, validity: timedelta | None
) -> dict[str, Link]:
    out: dict[str, Link] = {}
    for name, value in values.items():
        link = _link(value, fetched_at, validity)
        if link is not None:
            out[name] = link
    return out


def _link(value: object, fetched_at: datetime, validity: timedelta | None) -> Link | None:
    if not isinstance(value, str) or not value:
        return None
    return Link(value, url_expiry(value) or (fetched_at + validity if validity else None))


def url_expiry(url: str) -> datetime | None:
    """The moment a signed object-storage URL stops working (its ``Expires=`` epoch seconds)."""
    try:
        values = parse_qs(urlsplit(url).query).get("Expires")
    except ValueError:
        return None
    if not values or not values[0].isascii() or not values[0].isdigit() or len(values[0]) > 12:
        return None
    try:
        return datetime.fromtimestamp(int(values[0]), UTC)
    except (ValueError, OverflowError, OSError):  # past year 9999
        return None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
