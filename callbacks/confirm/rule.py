"""The confirmation rule: does the platform's state agree with a callback? Pure functions.

``required`` semantics: the same job, in a terminal state matching the callback's ``result``
(jobs) or ``status`` (async TTS), with the same ``asset_id`` where both have one. An unknown job
(404) or any disagreement refutes the callback; a job not yet terminal, or an API that cannot be
asked right now, means "ask again later" — never a refutation, never a delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from callbacks.confirm.details import JobDetails, normalise_state
from callbacks.confirm.errors import (
    ApiConfigurationError,
    ApiUnavailable,
    JobQueryRejected,
    MetaStudioApiError,
)
from callbacks.confirm.settings import ConfirmMode
from callbacks.events import Event, MetaStudioJobResult, MetaStudioLiveEvent, MetaStudioTtsResult

Outcome = Literal["confirmed", "refuted", "retry_later"]


@dataclass(frozen=True)
class Confirmation:
    """A confirmer's answer. ``reason`` is stable (logs, metrics, ``events list``)."""

    outcome: Outcome
    reason: str
    details: JobDetails | None = None

    @classmethod
    def confirmed(cls, details: JobDetails | None, reason: str = "platform_agrees") -> Confirmation:
        return cls("confirmed", reason, details)

    @classmethod
    def refuted(cls, reason: str, details: JobDetails | None = None) -> Confirmation:
        return cls("refuted", reason, details)

    @classmethod
    def retry_later(cls, reason: str, details: JobDetails | None = None) -> Confirmation:
        return cls("retry_later", reason, details)


@dataclass(frozen=True)
class JobQuery:
    """Which job to ask the API about for an event."""

    kind: str
    job_id: str
    room_id: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What the receiver does with an event, given its route's mode and the confirmation."""

    action: Literal["deliver", "refute", "wait"]
    details: JobDetails | None
    reason: str


def job_query(event: Event) -> JobQuery | None:
    """The query that answers for ``event``; ``None`` when the event names no job to ask about."""
    if isinstance(event, MetaStudioJobResult) and event.job_id:
        return JobQuery(event.kind, event.job_id)
    if isinstance(event, MetaStudioTtsResult) and event.job_id:
        return JobQuery("tts", event.job_id)
    if isinstance(event, MetaStudioLiveEvent) and event.job_id and event.room_id:
        return JobQuery("live", event.job_id, event.room_id)
    return None


def decide(event: Event, details: JobDetails | None) -> Confirmation:
    """Confirm or refute ``event`` against the platform's answer (``None``: the API said 404)."""
    query = job_query(event)
    if query is None:
        return Confirmation.refuted("no_job_to_confirm")
    if details is None:
        return Confirmation.refuted("unknown_job")
    if details.job_id != query.job_id:
        return Confirmation.refuted("job_mismatch", details)
    if isinstance(event, MetaStudioLiveEvent):
        # A live event's content has no query: the job existing in that room is all we can check.
        if details.room_id is not None and details.room_id != query.room_id:
            return Confirmation.refuted("room_mismatch", details)
        return Confirmation.confirmed(details, "job_exists")
    claimed = _claimed_state(event)
    if claimed is None:
        return Confirmation.refuted("no_result_in_callback", details)
    if claimed not in ("SUCCEED", "FAILED"):
        # A progress report (TTS WAITING): true if the job exists, whatever state it is in now.
        return Confirmation.confirmed(details, "job_exists")
    if not details.terminal:
        return Confirmation.retry_later("not_terminal_yet", details)
    if details.state != claimed:
        return Confirmation.refuted("state_mismatch", details)
    claimed_asset = event.asset_id if isinstance(event, MetaStudioJobResult) else None
    if claimed_asset and details.asset_id and claimed_asset != details.asset_id:
        return Confirmation.refuted("asset_mismatch", details)
    return Confirmation.confirmed(details)


def after_error(error: MetaStudioApiError) -> Confirmation:
    """The confirmation when the API could not answer: only a refused job id refutes."""
    if isinstance(error, JobQueryRejected):
        return Confirmation.refuted("job_rejected_by_api")
    if isinstance(error, ApiConfigurationError):
        return Confirmation.retry_later("api_misconfigured")
    if isinstance(error, ApiUnavailable):
        return Confirmation.retry_later("api_unavailable")
    return Confirmation.retry_later("api_error")


def verdict(mode: ConfirmMode, confirmation: Confirmation | None) -> Verdict:
    """``off`` delivers as is; ``enrich`` delivers with details and never refutes; ``required``
    delivers only what is confirmed. Both wait while the API cannot answer."""
    if mode == "off" or confirmation is None:
        return Verdict("deliver", None, "not_confirmed")
    if confirmation.outcome == "retry_later":
        return Verdict("wait", confirmation.details, confirmation.reason)
    if confirmation.outcome == "refuted" and mode == "required":
        return Verdict("refute", confirmation.details, confirmation.reason)
    return Verdict("deliver", confirmation.details, confirmation.reason)


def _claimed_state(event: Event) -> str | None:
    if isinstance(event, MetaStudioJobResult):
        return normalise_state(event.result)
    if isinstance(event, MetaStudioTtsResult):
        return normalise_state(event.status)
    return None
