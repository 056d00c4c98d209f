"""The ASGI application: the route table, start-up and shut-down, health and metrics.

Every callback route goes to :meth:`callbacks.receiver.Receiver.handle`; read that to follow a
request (docs/design.md draws the whole path). ``create_app`` returns a plain Starlette app, so
it can run on its own (``callbacks serve``) or be mounted inside another Starlette/FastAPI
application (see the README).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from callbacks import metrics
from callbacks.config import Config, RouteConfig
from callbacks.confirm.gate import build_gate, build_reconciler
from callbacks.dispatcher import Dispatcher
from callbacks.errors import StoreUnavailable
from callbacks.handlers import Handlers, load_handlers
from callbacks.intake import Intake
from callbacks.keyfile import KeyFile
from callbacks.live_keys import LiveKeys
from callbacks.receiver import Receiver, json_response
from callbacks.store import ServingStore, open_store

log = structlog.get_logger("avatar_callbacks.app")

_HTTP_REASONS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def create_app(
    config: Config,
    *,
    handlers: Handlers | None = None,
    store: ServingStore | None = None,
    keys: KeyFile | None = None,
    clock: Callable[[], float] = time.time,
    dispatch: bool | None = None,
) -> Starlette:
    """Build the receiver for ``config``.

    ``handlers`` defaults to the registries named in the config; ``store`` to the one at
    ``store.url`` (any :class:`~callbacks.ServingStore` will do); ``keys`` to the key file named in
    the config (read at start, then watched).
    ``dispatch=False`` stores callbacks without delivering them (e.g. when handlers run elsewhere).
    """
    if handlers is None:
        handlers = load_handlers(config.handler_modules)
    if store is None:
        store = open_store(config.store.url, base_dir=config.base_dir)
    live_keys = LiveKeys(config.keys.file, reload_interval=config.keys.reload_interval)
    run_dispatcher = config.dispatch.enabled if dispatch is None else dispatch
    routes_by_name = {r.name: r for r in config.routes}
    gate = build_gate(config) if run_dispatcher else None
    dispatcher = (
        Dispatcher(store, handlers, routes_by_name, config.dispatch, clock=clock, gate=gate)
        if run_dispatcher
        else None
    )
    intake = Intake(store, dispatcher)
    receiver = Receiver(config, intake, live_keys, clock=clock)
    reconciler = build_reconciler(config, gate, intake)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if keys is None:
            live_keys.load()
            live_keys.start_watching()
        else:
            live_keys.use(keys)
        if config.store.is_sqlite:
            await store.upgrade()  # embedded: the schema comes with the file
        else:
            await store.open()
        await store.recover()
        if dispatcher is not None:
            dispatcher.start()
        if reconciler is not None:
            reconciler.start()
        log.info(
            "receiver_started",
            routes=[{"name": r.name, "path": r.path, "kind": r.describe} for r in config.routes],
            handlers=len(handlers),
        )
        try:
            yield
        finally:
            if reconciler is not None:
                await reconciler.stop()
            if dispatcher is not None:
                await dispatcher.stop()
            if gate is not None:
                await gate.aclose()
            await live_keys.stop_watching()
            await store.close()

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not live_keys.loaded:
            return json_response(503, {"status": "unavailable", "reason": "keys_not_loaded"})
        try:
            await store.ping()
        except StoreUnavailable:
            return json_response(503, {"status": "unavailable", "reason": "store_unavailable"})
        if gate is not None and gate.cannot_confirm():
            body = {"status": "unavailable", "reason": "cannot_confirm"}
            return json_response(503, body | {"routes": gate.cannot_confirm()})
        return json_response(200, {"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        with contextlib.suppress(StoreUnavailable):
            metrics.INBOX_DEPTH.set(await store.inbox_depth())
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # Callback routes first: they take nearly all the traffic, and routes match in order.
    routes: list[BaseRoute] = [
        Route(r.path, CallbackEndpoint(receiver, r), methods=["POST"]) for r in config.routes
    ]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
    )
    app.state.receiver = receiver
    return app


class CallbackEndpoint:
    """One callback route's endpoint, as a plain ASGI app: Starlette then calls it without
    wrapping each request and response in another layer (the receiver answers every error)."""

    def __init__(self, receiver: Receiver, route: RouteConfig) -> None:
        self.receiver = receiver
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.receiver.handle(Request(scope, receive), self.route)
        await response(scope, receive, send)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    reason = _HTTP_REASONS.get(exc.status_code, "http_error")
    response = json_response(exc.status_code, {"ok": False, "reason": reason})
    if exc.headers:
        response.headers.update(exc.headers)
    return response
