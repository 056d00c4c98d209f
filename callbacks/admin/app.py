"""``create_admin_app``: the console's Starlette app (the API and the pages), for its own
listener. Needs the ``admin`` extra (Jinja2)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callbacks.admin.auth import AdminTokens
from callbacks.admin.context import Console, ConsoleStore
from callbacks.admin.guard import refusal
from callbacks.admin.settings import DEFAULT_FAILED_SIGN_INS
from callbacks.admin.throttle import FailedSignIns
from callbacks.config import Config
from callbacks.errors import StoreUnavailable
from callbacks.store import open_store

# The pages need nothing from elsewhere, so the browser is told to load nothing from elsewhere,
# never to frame them, and never to keep them (they show event bodies).
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


_HTTP_REASONS = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return refusal(exc.status_code, _HTTP_REASONS.get(exc.status_code, "http_error"))


async def _store_down(request: Request, exc: Exception) -> Response:
    return refusal(503, "store_unavailable")


def create_admin_app(
    config: Config,
    tokens: AdminTokens,
    *,
    store: ConsoleStore | None = None,
    clock: Callable[[], float] = time.time,
    env: Mapping[str, str] | None = None,
) -> Starlette:
    """The console for ``config``'s store and keys; ``store`` defaults to ``store.url``'s.
    With ``env`` (where the tokens came from), changed tokens in the key file take effect
    without a restart."""
    from callbacks.admin import api, pages  # Jinja2 loads here, with the admin extra

    if store is None:
        store = open_store(config.store.url, base_dir=config.base_dir)
    limit = config.admin.failed_sign_ins_per_minute if config.admin else DEFAULT_FAILED_SIGN_INS
    console = Console(
        config=config,
        tokens=tokens,
        store=store,
        clock=clock,
        env=env,
        throttle=FailedSignIns(limit=limit),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await console.close()

    app = Starlette(
        routes=[*api.routes, *pages.routes],
        middleware=[Middleware(SecurityHeaders)],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, StoreUnavailable: _store_down},
    )
    app.state.console = console
    return app
