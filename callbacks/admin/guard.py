"""Every console endpoint is guarded: signed in to look, the admin role and (for a browser
session) the CSRF token to act. Refusals are short JSON with a stable reason, or for a page a
redirect to the sign-in form."""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from callbacks import metrics
from callbacks.admin.auth import CSRF_FIELD, CSRF_HEADER, Principal, csrf_ok
from callbacks.admin.context import client_address, console_of

Endpoint = Callable[[Request, Principal], Awaitable[Response]]
FORM_LIMIT = 64 * 1024


def answer(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def refusal(status: int, reason: str, **details: Any) -> Response:
    response = answer(status, {"ok": False, "reason": reason, **details})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="avatar-callbacks console"'
    return response


def too_many_failures(wait: float) -> Response:
    seconds = max(1, math.ceil(wait))
    metrics.CONSOLE_SIGN_IN_FAILURES.labels("throttled").inc()
    response = refusal(429, "too_many_failed_sign_ins", retry_after=seconds)
    response.headers["Retry-After"] = str(seconds)
    return response


def throttled(request: Request) -> Response | None:
    """The 429 for an address past its failed sign-ins, refused before its token is looked at."""
    console = console_of(request)
    wait = console.throttle.retry_after(client_address(request), console.clock())
    return too_many_failures(wait) if wait > 0 else None


def count_failed_sign_in(request: Request) -> None:
    console = console_of(request)
    console.throttle.failed(client_address(request), console.clock())
    metrics.CONSOLE_SIGN_IN_FAILURES.labels("wrong_token").inc()


def caller(request: Request) -> Principal | Response | None:
    """The signed-in caller; None when not signed in; the 429 for a throttled address. A wrong
    bearer token is a failed sign-in (an expired or forged cookie is not: it cannot be guessed)."""
    blocked = throttled(request)
    if blocked is not None:
        return blocked
    principal = console_of(request).principal(request)
    if principal is None and request.headers.get("authorization") is not None:
        count_failed_sign_in(request)
    return principal


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body, bounded (the first value of each name)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return {}
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def api(*, act: bool = False) -> Callable[[Endpoint], Callable[[Request], Awaitable[Response]]]:
    """Guard a JSON endpoint: 401 without a valid token or session, 403 ``read_only`` when a
    reader tries to act, 403 ``csrf_failed`` when a session's action lacks its CSRF header."""

    def wrap(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            principal = caller(request)
            if isinstance(principal, Response):
                return principal
            if principal is None:
                return refusal(401, "unauthorized")
            if act:
                if not principal.can_act:
                    return refusal(403, "read_only")
                if not csrf_ok(principal, request.headers.get(CSRF_HEADER)):
                    return refusal(403, "csrf_failed")
            return await endpoint(request, principal)

        return guarded

    return wrap


FormEndpoint = Callable[[Request, Principal, Mapping[str, str]], Awaitable[Response]]


def page(request: Request) -> Principal | Response:
    """The signed-in caller of a page, or the redirect to the sign-in form (or a 429)."""
    principal = caller(request)
    if isinstance(principal, Response):
        return principal
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return principal


def page_action(endpoint: FormEndpoint) -> Callable[[Request], Awaitable[Response]]:
    """Guard a form POST from a page: signed in, admin, and the form's CSRF field."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        caller = page(request)
        if isinstance(caller, Response):
            return caller
        form = await read_form(request)
        if not caller.can_act:
            return refusal(403, "read_only")
        submitted = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if caller.csrf is None or not csrf_ok(caller, submitted):
            # A page action comes from the browser: its session's token is required.
            return refusal(403, "csrf_failed")
        return await endpoint(request, caller, form)

    return guarded
