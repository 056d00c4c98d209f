"""``callbacks jobs ...``: results the receiver waits for (see callbacks/confirm/reconciler.py).

``jobs expect`` records that a job's result is expected; the serving process polls the MetaStudio
API for it once ``reconcile_after`` has passed without its callback. ``jobs list --overdue`` shows
the jobs that did not finish within their time.
"""

from __future__ import annotations

import asyncio

import click

from callbacks.cli._support import (
    DurationType,
    config_option,
    echo_json,
    fail,
    format_table,
    json_option,
    load_config_or_fail,
)
from callbacks.confirm.expected import ExpectedJob, job_summary, open_expected_jobs
from callbacks.confirm.reconciler import DEFAULT_WITHIN, ExpectRefused, expect_on_route
from callbacks.errors import StoreUnavailable
from callbacks.event_view import iso


@click.group("jobs")
def jobs_group() -> None:
    """Expected job results, polled from the MetaStudio API when their callback does not come.

    \b
    Example:
      callbacks jobs expect metastudio-video 26f06524-4f75-4b3a-a853-b649a21aaf66 --within 2h
      callbacks jobs list --overdue
    """


@jobs_group.command("expect")
@config_option
@click.argument("route_name", metavar="ROUTE")
@click.argument("job_id")
@click.option(
    "--within",
    type=DurationType(),
    default=int(DEFAULT_WITHIN),
    show_default="24h",
    help="Report the job overdue if it has no result by then (30m, 2h, 7d).",
)
def expect(config_path: str | None, route_name: str, job_id: str, within: int) -> None:
    """Record that JOB_ID's result is expected on ROUTE.

    If its callback has not come once the route's reconcile_after has passed, the serving
    process asks the MetaStudio API for the result and delivers it like a callback.

    \b
    Example:
      callbacks jobs expect metastudio-video 26f06524-4f75-4b3a-a853-b649a21aaf66 --within 2h
    """
    config = load_config_or_fail(config_path)
    jobs = open_expected_jobs(config.store.url, base_dir=config.base_dir)

    async def run() -> ExpectedJob:
        try:
            return await expect_on_route(config, jobs, route_name, job_id, within=within)
        finally:
            await jobs.close()

    try:
        job = asyncio.run(run())
    except ExpectRefused as exc:
        where = f"; routes are defined in {config.source}" if exc.reason == "unknown_route" else ""
        fail(f"{exc}{where}")
    except StoreUnavailable as exc:
        fail(str(exc))
    click.echo(
        f"expecting {job.job_id} on {job.route}: polled from {iso(job.poll_after)} "
        f"if no callback, overdue at {iso(job.deadline)}"
    )


@jobs_group.command("list")
@config_option
@click.option("--overdue", is_flag=True, help="Only jobs that did not finish within their time.")
@json_option
def list_jobs(config_path: str | None, overdue: bool, as_json: bool) -> None:
    """Expected jobs and what polling found.

    \b
    Example:
      callbacks jobs list --overdue --json
    """
    config = load_config_or_fail(config_path)
    jobs = open_expected_jobs(config.store.url, base_dir=config.base_dir)

    async def run() -> list[ExpectedJob]:
        try:
            return await jobs.list(overdue=overdue)
        finally:
            await jobs.close()

    try:
        found = asyncio.run(run())
    except StoreUnavailable as exc:
        fail(str(exc))
    if as_json:
        echo_json([job_summary(j) for j in found])
        return
    if not found:
        click.echo("no expected jobs match", err=True)
        return
    headers = ("ROUTE", "JOB ID", "STATE", "POLLS", "LAST SEEN", "DEADLINE", "EVENT")
    rows = [
        [j.route, j.job_id, j.state, str(j.polls), j.last_state or "-", iso(j.deadline),
         j.event_id or "-"]
        for j in found
    ]  # fmt: skip
    click.echo(format_table(headers, rows))


def register(main: click.Group) -> None:
    main.add_command(jobs_group)
