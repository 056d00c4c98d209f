"""Every console endpoint is guarded: signed in to look, the admin role and (for a browser
session) the CSRF token to act. Refusals are short JSON with a stable reason, or for a page a
redirect to the sign-in form."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

import orjson
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from callbacks.admin.auth import CSRF_FIELD, CSRF_HEADER, Principal, csrf_ok
from callbacks.admin.context import console_of

Endpoint = Callable[[Request, Principal], Awaitable[Response]]
FORM_LIMIT = 64 * 1024


def answer(status: int, content: Any) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def refusal(status: int, reason: str, **details: Any) -> Response:
    response = answer(status, {"ok": False, "reason": reason, **details})
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="avatar-callbacks console"'
    return response


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
            principal = console_of(request).principal(request)
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
    """The signed-in caller of a page, or the redirect to the sign-in form."""
    principal = console_of(request).principal(request)
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
