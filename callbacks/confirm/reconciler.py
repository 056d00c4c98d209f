"""The reconciler: polls expected jobs whose callback has not come, so no result is lost.

Runs in the serving process. Each round it claims the expected jobs due for a poll (a lease, so
with several replicas each job is polled by one), asks the API, and:

- terminal state: the result becomes an event through the intake, with the body the platform's
  callback would have (see :func:`poll_body`), so that callback, arriving later or earlier, is
  its duplicate. The event is confirmed like any other before delivery: a poll is no exemption
  a forged body could claim;
- not yet, or the API cannot say: polled again with backoff;
- still not terminal at its deadline: ``overdue`` (logged, counted, ``callbacks jobs list
  --overdue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson
import structlog
from prometheus_client import Counter

from callbacks.config import Config, RouteConfig
from callbacks.confirm.confirmer import JobSource
from callbacks.confirm.details import JobDetails
from callbacks.confirm.errors import MetaStudioApiError
from callbacks.confirm.expected import ExpectedJob, ExpectedJobs
from callbacks.errors import CallbacksError, StoreUnavailable
from callbacks.store.base import Accepted, InboundCallback


class Intake(Protocol):
    """Where a polled result goes: :class:`callbacks.intake.Intake` (the receiver's own)."""

    async def accept(
        self, callback: InboundCallback, route: RouteConfig, raw: dict[str, Any]
    ) -> Accepted: ...


log = structlog.get_logger("avatar_callbacks.reconcile")

EXPECTED_JOBS = Counter(
    "avatar_callbacks_expected_jobs_total",
    "Expected jobs settled by the reconciler, by route and outcome (found, overdue).",
    ["route", "outcome"],
)
POLLABLE_KINDS = frozenset({"video", "photo_video", "business_card", "subtitle", "tts"})
DEFAULT_WITHIN = 24 * 3600.0


MAX_WITHIN = 366 * 86400.0


class ExpectRefused(CallbacksError):
    """A job that cannot be expected; ``reason`` is stable (the console's API answers it)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class NotPollable(ExpectRefused):
    """The route has no job query to poll (SenseTime, live events)."""

    def __init__(self, message: str, reason: str = "not_pollable") -> None:
        super().__init__(reason, message)


def check_pollable(route: RouteConfig) -> None:
    if route.provider != "metastudio" or route.kind not in POLLABLE_KINDS:
        raise NotPollable(
            f"route {route.name} ({route.describe}) has no job result to poll: expected jobs "
            "are MetaStudio video, photo_video, business_card, subtitle or tts jobs"
        )


async def expect_job(
    jobs: ExpectedJobs,
    route: RouteConfig,
    job_id: str,
    *,
    reconcile_after: float,
    within: float = DEFAULT_WITHIN,
    now: float | None = None,
) -> ExpectedJob:
    """Record that ``job_id``'s result is expected on ``route`` within ``within`` seconds."""
    check_pollable(route)
    if not job_id or len(job_id) > 128 or not job_id.isprintable():
        raise NotPollable("a job id is 1-128 printable characters", reason="bad_job_id")
    if not 0 < within <= MAX_WITHIN:
        raise ExpectRefused("bad_within", "within: a duration from 1s to 366d")
    now = time.time() if now is None else now
    return await jobs.expect(
        route.name, job_id, now=now, poll_after=now + reconcile_after, deadline=now + within
    )


async def expect_on_route(
    config: Config,
    jobs: ExpectedJobs,
    route_name: str,
    job_id: str,
    *,
    within: float = DEFAULT_WITHIN,
    now: float | None = None,
) -> ExpectedJob:
    """:func:`expect_job` for ``config``'s route named ``route_name``, with its
    ``reconcile_after``: what ``callbacks jobs expect`` and ``POST /api/jobs/expected`` do.
    Raises :class:`ExpectRefused` (a reason and one line) for what cannot be expected."""
    try:
        route = config.route(route_name)
    except KeyError as exc:
        raise ExpectRefused("unknown_route", str(exc.args[0])) from None
    if config.confirmation.api is None:
        raise ExpectRefused(
            "no_metastudio_api",
            "expected jobs are polled from the MetaStudio API: configure [metastudio_api] first",
        )
    after = config.confirmation.for_route(route.name).reconcile_after
    return await expect_job(jobs, route, job_id, reconcile_after=after, within=within, now=now)


def poll_body(route: RouteConfig, details: JobDetails) -> dict[str, Any]:
    """The callback body a terminal state found by polling stands for: for job results exactly
    the platform's (``job_id``, ``result``, ``asset_id``), so that its callback, should it still
    come, has the same content and is a duplicate. An async TTS callback also carries download
    URLs that a poll cannot reproduce: a late TTS callback is delivered as an event of its own."""
    state = details.state or ""
    if route.kind == "tts":
        status = {"SUCCEED": "FINISHED", "FAILED": "ERROR"}.get(state, state)
        return {"job_id": details.job_id, "status": status}
    body: dict[str, Any] = {"job_id": details.job_id, "result": state}
    if details.asset_id:
        body["asset_id"] = details.asset_id
    return body


class Reconciler:
    def __init__(
        self,
        jobs: ExpectedJobs,
        source: JobSource,
        intake: Intake,
        routes: Mapping[str, RouteConfig],
        *,
        poll_interval: float = 1.0,
        backoff_initial: float = 5.0,
        backoff_max: float = 300.0,
        lease_seconds: float = 60.0,
        concurrency: int = 8,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.jobs = jobs
        self.source = source
        self.intake = intake
        self.routes = routes
        self.poll_interval = poll_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.lease_seconds = lease_seconds
        self.concurrency = concurrency
        self.clock = clock
        self.rng = rng or random.Random()
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}:reconcile"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="avatar-callbacks-reconciler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.jobs.close()

    async def _run(self) -> None:
        while True:
            try:
                handled = await self.run_once()
            except StoreUnavailable as exc:
                log.warning("reconcile_store_unavailable", error=str(exc))
                handled = 0
            except Exception:
                log.exception("reconcile_round_failed")
                handled = 0
            if not handled:
                await asyncio.sleep(self.poll_interval)

    async def run_once(self) -> int:
        """Claim and poll one round of due expected jobs; how many were polled."""
        claimed = await self.jobs.claim(
            owner=self.owner,
            now=self.clock(),
            limit=self.concurrency * 4,
            lease_seconds=self.lease_seconds,
        )
        limit = asyncio.Semaphore(self.concurrency)

        async def one(job: ExpectedJob) -> None:
            async with limit:
                await self._poll(job)

        await asyncio.gather(*(one(job) for job in claimed))
        return len(claimed)

    async def _poll(self, job: ExpectedJob) -> None:
        route = self.routes.get(job.route)
        now = self.clock()
        if route is None or route.provider != "metastudio" or route.kind not in POLLABLE_KINDS:
            await self._settle(job, "overdue", now, "route_gone")
            return
        details: JobDetails | None = None
        problem: str | None = None
        try:
            details = await self.source.job(route.kind or "video", job.job_id, room_id=job.room_id)
        except MetaStudioApiError as exc:
            problem = exc.reason
        if details is not None and details.terminal:
            raw = poll_body(route, details)
            from callbacks.intake import inbound_callback

            callback = inbound_callback(route, raw, orjson.dumps(raw), key_id=None, received_at=now)
            accepted = await self.intake.accept(callback, route, raw)
            event_id = accepted.duplicate_of or accepted.delivery_id
            await self._settle(job, "found", now, details.state, event_id)
            log.info(
                "expected_job_found",
                route=job.route,
                job_id=job.job_id,
                state=details.state,
                delivery_id=event_id,
                duplicate=accepted.duplicate,
            )
            return
        seen = details.state if details is not None else (problem or "unknown_job")
        if now >= job.deadline:
            await self._settle(job, "overdue", now, seen)
            log.warning("expected_job_overdue", route=job.route, job_id=job.job_id, last=seen)
            return
        delay = min(self.backoff_max, self.backoff_initial * 2 ** min(job.polls, 32))
        next_at = min(now + delay * (0.5 + self.rng.random() / 2), job.deadline)
        await self.jobs.settle(
            job.route, job.job_id, owner=self.owner, state="waiting",
            next_poll_at=next_at, last_state=seen,
        )  # fmt: skip

    async def _settle(
        self,
        job: ExpectedJob,
        state: Any,
        now: float,
        seen: str | None,
        event_id: str | None = None,
    ) -> None:
        await self.jobs.settle(
            job.route, job.job_id, owner=self.owner, state=state, next_poll_at=now,
            last_state=seen, event_id=event_id,
        )  # fmt: skip
        EXPECTED_JOBS.labels(job.route, state).inc()
