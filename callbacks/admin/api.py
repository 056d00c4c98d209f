"""The console's JSON API under ``/api/`` (described by :mod:`callbacks.admin.openapi`): events,
replay and purge, expected jobs (``callbacks jobs expect`` and ``jobs list``), keys, health."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from callbacks.admin import openapi
from callbacks.admin.auth import Principal
from callbacks.admin.context import Console, console_of, event_id_param
from callbacks.admin.guard import FORM_LIMIT, answer, api, refusal
from callbacks.admin.queries import (
    BadQuery,
    Query,
    event_detail,
    find_events,
    keys_view,
    parse_moment,
    summary,
)
from callbacks.admin.stats import metric_numbers
from callbacks.confirm.expected import ExpectedJobs, job_summary, open_expected_jobs
from callbacks.confirm.reconciler import DEFAULT_WITHIN, ExpectRefused, expect_on_route
from callbacks.durations import parse_duration
from callbacks.errors import KeyFileError, StoreUnavailable

# A replay by filter re-queues at most this many events per request; the answer says whether
# more matched, so a script can call again.
MAX_REPLAY = 10_000


class BadRequest(Exception):
    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message


async def _json_body(request: Request) -> Mapping[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise BadRequest("body_too_large", f"at most {FORM_LIMIT} bytes")
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("malformed_json", "the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("json_not_an_object", "the body must be a JSON object")
    return data


def _bad(exc: BadQuery | BadRequest) -> Response:
    message = exc.message if isinstance(exc, BadRequest) else str(exc)
    return refusal(400, exc.reason, message=message)


@api()
async def list_events(request: Request, principal: Principal) -> Response:
    console = console_of(request)
    try:
        query = Query.from_params(request.query_params, console.clock())
    except BadQuery as exc:
        return _bad(exc)
    page = await find_events(await console.admin_store(), query)
    return answer(
        200, {"events": [summary(e) for e in page.events], "next_before": page.next_before}
    )


@api()
async def show_event(request: Request, principal: Principal) -> Response:
    console = console_of(request)
    store = await console.admin_store()
    event = await store.get(event_id_param(request))
    if event is None:
        return refusal(404, "not_found")
    return answer(200, await event_detail(store, event))


@api(act=True)
async def replay_event(request: Request, principal: Principal) -> Response:
    console = console_of(request)
    store = await console.admin_store()
    event = await store.get(event_id_param(request))
    if event is None:
        return refusal(404, "not_found")
    if event.status == "duplicate":
        return refusal(409, "duplicate_not_replayable", original=event.duplicate_of)
    count = await store.requeue([event.id])
    return answer(200, {"ok": True, "requeued": count, "ids": [event.id]})


@api(act=True)
async def replay_many(request: Request, principal: Principal) -> Response:
    """``{"ids": [...]}``, ``{"dead": true, "route": "..."}`` or ``{"filter": {...}}``."""
    console = console_of(request)
    try:
        body = await _json_body(request)
        chosen = [k for k in ("ids", "dead", "filter") if k in body]
        if len(chosen) != 1:
            raise BadRequest("bad_replay", "give exactly one of ids, dead or filter")
        store = await console.admin_store()
        if "dead" in body:
            route = body.get("route")
            if body["dead"] is not True or not (route is None or isinstance(route, str)):
                raise BadRequest("bad_replay", "dead: true, with an optional route string")
            count = await store.requeue(dead=True, route=route)
            return answer(200, {"ok": True, "requeued": count, "more": False})
        if "ids" in body:
            ids = body["ids"]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise BadRequest("bad_replay", "ids: a list of event ids")
            if len(ids) > MAX_REPLAY:
                raise BadRequest("bad_replay", f"ids: at most {MAX_REPLAY}")
            count = await store.requeue(ids)
            return answer(200, {"ok": True, "requeued": count, "more": False})
        raw_filter = body["filter"]
        if not isinstance(raw_filter, dict) or not all(
            isinstance(v, str) for v in raw_filter.values()
        ):
            raise BadRequest("bad_replay", "filter: an object of strings, as list's parameters")
        query = Query.from_params({**raw_filter, "limit": "500"}, console.clock())
    except (BadQuery, BadRequest) as exc:
        return _bad(exc)
    ids_found: list[str] = []
    more = True
    while more and len(ids_found) < MAX_REPLAY:
        page = await find_events(store, query)
        ids_found += [e.id for e in page.events if e.status != "duplicate"]
        more = page.next_before is not None
        query = replace(query, before=page.next_before)
    count = await store.requeue(ids_found[:MAX_REPLAY]) if ids_found else 0
    return answer(200, {"ok": True, "requeued": count, "more": more})


@api(act=True)
async def purge(request: Request, principal: Principal) -> Response:
    """``{"before": "30d"}``: delete settled events older than that (pending ones stay)."""
    console = console_of(request)
    try:
        body = await _json_body(request)
        before_text = body.get("before")
        if not isinstance(before_text, str) or not before_text:
            raise BadRequest("bad_purge", "before: an age (30d) or a time (2026-01-01)")
        before = parse_moment(before_text, console.clock(), "before")
    except (BadQuery, BadRequest) as exc:
        return _bad(exc)
    assert before is not None
    store = await console.admin_store()
    count = await store.purge(before)
    return answer(200, {"ok": True, "purged": count})


def _expected_jobs(console: Console) -> ExpectedJobs:
    config = console.config
    return open_expected_jobs(config.store.url, base_dir=config.base_dir)


def _within(value: object) -> float:
    """Seconds (a number), or a duration as ``callbacks jobs expect --within`` takes it."""
    problem = BadRequest("bad_within", "within: seconds, or a duration such as 30m, 2h or 7d")
    if isinstance(value, bool):
        raise problem
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str) or len(value) > 16:
        raise problem
    try:
        return float(parse_duration(value))
    except ValueError:
        raise problem from None


@api(act=True)
async def expect_job(request: Request, principal: Principal) -> Response:
    """``{"route": ..., "job_id": ..., "within": "2h"}``: as ``callbacks jobs expect``."""
    console = console_of(request)
    try:
        body = await _json_body(request)
        route, job_id = body.get("route"), body.get("job_id")
        if not isinstance(route, str) or not isinstance(job_id, str):
            raise BadRequest("bad_expect", "route and job_id: strings")
        if set(body) - {"route", "job_id", "within"}:
            raise BadRequest("bad_expect", "only route, job_id and within")
        within = _within(body.get("within", DEFAULT_WITHIN))
    except BadRequest as exc:
        return _bad(exc)
    jobs = _expected_jobs(console)
    try:
        job = await expect_on_route(
            console.config, jobs, route, job_id, within=within, now=console.clock()
        )
    except ExpectRefused as exc:
        status = 409 if exc.reason == "no_metastudio_api" else 400
        return refusal(status, exc.reason, message=str(exc))
    finally:
        await jobs.close()
    return answer(200, {"ok": True, "job": job_summary(job)})


@api()
async def expected_jobs(request: Request, principal: Principal) -> Response:
    """Every expected job, or with ``?overdue=true`` only the overdue ones."""
    flag = request.query_params.get("overdue", "false")
    if flag not in ("true", "false", "1", "0"):
        return refusal(400, "bad_filter", message="overdue: true or false")
    jobs = _expected_jobs(console_of(request))
    try:
        found = await jobs.list(overdue=flag in ("true", "1"))
    finally:
        await jobs.close()
    return answer(200, {"jobs": [job_summary(j) for j in found]})


async def keys_data(console: Console) -> list[dict[str, Any]]:
    keyfile = console.keyfile()
    store = await console.admin_store()
    usage = await store.key_usage(console.clock())
    return keys_view(console.config, keyfile, usage, console.clock())


@api()
async def keys(request: Request, principal: Principal) -> Response:
    console = console_of(request)
    try:
        routes = await keys_data(console)
    except KeyFileError as exc:
        return refusal(503, "key_file_unreadable", message=str(exc))
    return answer(200, {"routes": routes})


async def health_data(console: Console) -> dict[str, Any]:
    reasons: list[str] = []
    depth = None
    try:
        store = await console.admin_store()
        await store.ping()
        depth = await store.inbox_depth()
    except StoreUnavailable:
        reasons.append("store_unavailable")
    try:
        keyfile = console.keyfile()
        now = console.clock()
        keyless = [
            r.name
            for r in console.config.routes
            if not r.allow_unsigned and not keyfile.ring(r.name).verifying_keys(now)
        ]
    except KeyFileError:
        reasons.append("key_file_unreadable")
        keyless = []
    if keyless:
        reasons.append("no_verifying_key")
    return {
        "status": "unavailable" if reasons else "ok",
        "reasons": reasons,
        "routes_without_keys": keyless,
        "inbox_depth": depth,
        "routes": [r.name for r in console.config.routes],
    }


@api()
async def health(request: Request, principal: Principal) -> Response:
    data = await health_data(console_of(request))
    return answer(200 if data["status"] == "ok" else 503, data)


@api()
async def metrics(request: Request, principal: Principal) -> Response:
    console = console_of(request)
    numbers = metric_numbers()
    try:
        store = await console.admin_store()
        numbers["inbox_depth"] = await store.inbox_depth()
    except StoreUnavailable:
        numbers["inbox_depth"] = None
    return answer(200, numbers)


@api()
async def schema(request: Request, principal: Principal) -> Response:
    return answer(200, openapi.schema())


routes = [
    Route("/api/events", list_events, methods=["GET"]),
    Route("/api/events/{event_id}", show_event, methods=["GET"]),
    Route("/api/events/{event_id}/replay", replay_event, methods=["POST"]),
    Route("/api/replay", replay_many, methods=["POST"]),
    Route("/api/purge", purge, methods=["POST"]),
    Route("/api/jobs/expected", expected_jobs, methods=["GET"]),
    Route("/api/jobs/expected", expect_job, methods=["POST"]),
    Route("/api/keys", keys, methods=["GET"]),
    Route("/api/health", health, methods=["GET"]),
    Route("/api/metrics", metrics, methods=["GET"]),
    Route("/api/openapi.json", schema, methods=["GET"]),
]
