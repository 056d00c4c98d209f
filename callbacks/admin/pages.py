"""The console's pages: server-rendered Jinja2 templates, plain links and forms (usable from the
keyboard, no build step); one small script polls ``/api/metrics`` for the live view."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from callbacks.admin.api import health_data, keys_data
from callbacks.admin.auth import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SESSION_SECONDS,
    SIGN_IN_COOKIE,
    Principal,
)
from callbacks.admin.context import console_of, event_id_param
from callbacks.admin.guard import count_failed_sign_in, page, page_action, read_form, throttled
from callbacks.admin.queries import (
    BadQuery,
    Query,
    attempts,
    event_detail,
    find_events,
    job_ids,
    pretty,
)
from callbacks.errors import KeyFileError
from callbacks.event_view import iso
from callbacks.store import EVENT_STATUSES, StoredEvent

_HERE = Path(__file__).parent
_templates = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["pretty"] = pretty
_templates.filters["ts"] = iso


def _jobs(event: StoredEvent) -> str:
    return ", ".join(job_ids(event)) or "-"


_templates.filters["jobs"] = _jobs


def render(
    request: Request,
    name: str,
    principal: Principal | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    html = _templates.get_template(name).render(
        principal=principal,
        csrf=principal.csrf if principal else None,
        csrf_field=CSRF_FIELD,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status)


def _safe_next(target: str | None) -> str:
    """Only a path on this console: never another site (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def sign_in_form(request: Request) -> Response:
    console = console_of(request)
    console.refresh_tokens()
    nonce, cookie = console.sessions.sign_in_nonce()
    response = render(
        request, "login.html", None, nonce=nonce, next=_safe_next(request.query_params.get("next"))
    )
    _set_cookie(request, response, SIGN_IN_COOKIE, cookie, 3600)
    return response


async def sign_in(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    blocked = throttled(request)
    if blocked is not None:
        return _sign_in_again(
            request, 429, form, "Too many wrong tokens from this address: wait a minute.", blocked
        )
    console.refresh_tokens()
    if not console.sessions.sign_in_nonce_matches(
        request.cookies.get(SIGN_IN_COOKIE), form.get("nonce")
    ):
        return HTMLResponse("sign-in form expired: reload it", status_code=403)
    role = console.tokens.role_for(form.get("token", ""))
    if role is None:
        count_failed_sign_in(request)
        return _sign_in_again(request, 401, form, "That token is not valid.")
    value, _ = console.sessions.issue(role)
    response = RedirectResponse(_safe_next(form.get("next")), status_code=303)
    _set_cookie(request, response, SESSION_COOKIE, value, SESSION_SECONDS)
    response.delete_cookie(SIGN_IN_COOKIE, path="/")
    return response


def _sign_in_again(
    request: Request,
    status: int,
    form: Mapping[str, str],
    error: str,
    refused: Response | None = None,
) -> Response:
    """The sign-in form again, with a fresh nonce and why the last try failed."""
    nonce, cookie = console_of(request).sessions.sign_in_nonce()
    again = render(
        request,
        "login.html",
        None,
        status=status,
        nonce=nonce,
        next=_safe_next(form.get("next")),
        error=error,
    )
    if refused is not None and "retry-after" in refused.headers:
        again.headers["Retry-After"] = refused.headers["retry-after"]
    _set_cookie(request, again, SIGN_IN_COOKIE, cookie, 3600)
    return again


async def sign_out(request: Request) -> Response:
    caller = page(request)
    form = await read_form(request)
    if isinstance(caller, Principal) and caller.csrf and form.get(CSRF_FIELD) != caller.csrf:
        return HTMLResponse("refused: csrf_failed", status_code=403)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def inbox(request: Request) -> Response:
    caller = page(request)
    if isinstance(caller, Response):
        return caller
    console = console_of(request)
    error = None
    try:
        query = Query.from_params(request.query_params, console.clock())
    except BadQuery as exc:
        query, error = Query(), str(exc)
    result = await find_events(await console.admin_store(), query)
    older = None
    if result.next_before:
        older = "/?" + urlencode(query.params(before=result.next_before))
    newest = "/?" + urlencode(query.params(before=None)) if query.before else None
    return render(
        request,
        "inbox.html",
        caller,
        status=400 if error else 200,
        events=result.events,
        query=query,
        form=request.query_params,
        statuses=EVENT_STATUSES,
        routes=[r.name for r in console.config.routes],
        older=older,
        newest=newest,
        error=error,
    )


async def event_page(request: Request) -> Response:
    caller = page(request)
    if isinstance(caller, Response):
        return caller
    console = console_of(request)
    store = await console.admin_store()
    event = await store.get(event_id_param(request))
    if event is None:
        return render(request, "error.html", caller, status=404, message="No such event.")
    return render(
        request,
        "event.html",
        caller,
        event=event,
        detail=await event_detail(store, event),
        attempts=attempts(event),
        replayed=request.query_params.get("replayed"),
    )


async def replay_confirm(request: Request) -> Response:
    caller = page(request)
    if isinstance(caller, Response):
        return caller
    store = await console_of(request).admin_store()
    event = await store.get(event_id_param(request))
    if event is None:
        return render(request, "error.html", caller, status=404, message="No such event.")
    return render(request, "replay.html", caller, event=event, attempts=attempts(event))


@page_action
async def replay(request: Request, principal: Principal, form: Any) -> Response:
    store = await console_of(request).admin_store()
    event = await store.get(event_id_param(request))
    if event is None or event.status == "duplicate":
        message = "No such event." if event is None else "A duplicate: replay its original."
        return render(request, "error.html", principal, status=409, message=message)
    await store.requeue([event.id])
    return RedirectResponse(f"/events/{event.id}?replayed=1", status_code=303)


async def keys_page(request: Request) -> Response:
    caller = page(request)
    if isinstance(caller, Response):
        return caller
    console = console_of(request)
    try:
        routes = await keys_data(console)
    except KeyFileError as exc:
        return render(request, "error.html", caller, status=503, message=str(exc))
    return render(request, "keys.html", caller, routes=routes)


async def live_page(request: Request) -> Response:
    caller = page(request)
    if isinstance(caller, Response):
        return caller
    console = console_of(request)
    return render(
        request,
        "live.html",
        caller,
        health=await health_data(console),
        routes=[r.name for r in console.config.routes],
    )


routes = [
    Route("/", inbox, methods=["GET"]),
    Route("/login", sign_in_form, methods=["GET"]),
    Route("/login", sign_in, methods=["POST"]),
    Route("/logout", sign_out, methods=["POST"]),
    Route("/events/{event_id}", event_page, methods=["GET"]),
    Route("/events/{event_id}/replay", replay_confirm, methods=["GET"]),
    Route("/events/{event_id}/replay", replay, methods=["POST"]),
    Route("/keys", keys_page, methods=["GET"]),
    Route("/live", live_page, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
]
