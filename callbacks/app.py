"""The ASGI application: the route table, start-up and shut-down, health and metrics.

Every callback route goes to :meth:`callbacks.receiver.Receiver.handle`; read that to follow a
request (docs/design.md draws the whole path). ``create_app`` returns a plain Starlette app, so
it can run on its own (``callbacks serve``) or be mounted inside another Starlette/FastAPI
application (see the README).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callbacks import metrics
from callbacks.config import Config, RouteConfig
from callbacks.deliveries import Deliveries
from callbacks.dispatch.gauges import sample_store_gauges
from callbacks.errors import StoreUnavailable
from callbacks.handlers import Handlers, load_handlers
from callbacks.keyfile import KeyFile
from callbacks.live_keys import LiveKeys
from callbacks.receiver import INTERNAL_ERROR, Receiver, json_response
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
        handlers = load_handlers(config.handler_modules, config_dir=config.base_dir)
    if store is None:
        store = serving_store_for(config)
    live_keys = LiveKeys(config.keys.file, reload_interval=config.keys.reload_interval)
    run_dispatcher = config.dispatch.enabled if dispatch is None else dispatch
    deliveries = Deliveries(config, store, handlers, dispatch=run_dispatcher, clock=clock)
    intake, gate = deliveries.intake, deliveries.gate
    receiver = Receiver(config, intake, live_keys, clock=clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if keys is None:
            live_keys.load()
            live_keys.start_watching()
        else:
            live_keys.use(keys)
        await open_serving_store(store, config)
        await deliveries.start()
        log.info(
            "receiver_started",
            routes=[{"name": r.name, "path": r.path, "kind": r.describe} for r in config.routes],
            handlers=len(deliveries.handlers),
            sinks=len(deliveries.sinks),
            dispatch="here" if deliveries.dispatcher is not None else "elsewhere",
        )
        try:
            yield
        finally:
            await deliveries.stop()
            await live_keys.stop_watching()
            await store.close()

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Ready unless something would make callbacks fail: every reason found, in the JSON
        (names and reason codes only: error texts stay in the log)."""
        reasons: list[str] = []
        details: dict[str, Any] = {}
        if not live_keys.loaded:
            reasons.append("keys_not_loaded")
        else:
            keyless = routes_without_keys(config.routes, live_keys, clock())
            if keyless:
                reasons.append("no_verifying_key")
                details["routes_without_keys"] = keyless
            if live_keys.reload_failed:
                reasons.append("keys_reload_failed")
        try:
            await store.ping()
        except StoreUnavailable:
            reasons.append("store_unavailable")
        if intake.writes.failing:
            reasons.append("store_writes_failing")
        if gate is not None and gate.cannot_confirm():
            reasons.append("cannot_confirm")
            details["routes_that_cannot_confirm"] = gate.cannot_confirm()
        if reasons:
            body = {"status": "unavailable", "reason": reasons[0], "reasons": reasons, **details}
            return json_response(503, body)
        return json_response(200, {"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        with contextlib.suppress(StoreUnavailable):
            await sample_store_gauges(store)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # Callback routes first: they take nearly all the traffic, and routes match in order.
    endpoints = {r.path: CallbackEndpoint(receiver, r) for r in config.routes}
    routes: list[BaseRoute] = [
        Route(path, endpoint, methods=["POST"]) for path, endpoint in endpoints.items()
    ]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(InternalErrorGuard, receiver=receiver),
            Middleware(CallbackLane, endpoints=endpoints),
        ],
        exception_handlers={HTTPException: _http_error},  # type: ignore[dict-item]
    )
    # Starlette answers a path that differs only by a trailing slash with a 307 to the other
    # spelling, built from the Host header: a platform would not follow it with its POST, and
    # a probe would learn the route table. Every unknown path is a plain 404 instead.
    app.router.redirect_slashes = False
    app.state.receiver = receiver
    return app


def serving_store_for(config: Config) -> ServingStore:
    """The store at ``store.url``, its writes bounded by ``store.write_timeout``."""
    return open_store(
        config.store.url, base_dir=config.base_dir, write_timeout=config.store.write_timeout
    )


async def open_serving_store(store: ServingStore, config: Config) -> None:
    """Ready ``store`` for a serving process: the embedded schema comes with the SQLite file;
    a shared database is checked against the version this code needs (`callbacks db upgrade`
    migrates it). Then the process joins those serving the store (see ``recover``)."""
    if config.store.is_sqlite:
        await store.upgrade()
    else:
        await store.open()
    await store.recover()


def routes_without_keys(routes: Sequence[RouteConfig], keys: LiveKeys, now: float) -> list[str]:
    """Routes that would answer ``no_verifying_key``: no key verifies for them now. A route
    that accepts unsigned callbacks is served without one."""
    return [
        r.name for r in routes if not r.allow_unsigned and not keys.ring(r.name).verifying_keys(now)
    ]


class CallbackEndpoint:
    """One callback route's endpoint, as a plain ASGI app: Starlette then calls it without
    wrapping each request and response in another layer (the receiver answers every error)."""

    def __init__(self, receiver: Receiver, route: RouteConfig) -> None:
        self.receiver = receiver
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self.receiver.handle(Request(scope, receive), self.route)
        await answer(send)


class CallbackLane:
    """A POST to a callback route's path goes straight to its endpoint; every other request
    (health, metrics, a 404, a GET on a callback path and its 405) goes on to the router.

    The router finds the same endpoint, as callback routes come first in the table, after its
    exception middleware, a regular-expression match per route and the method check: about 7 %
    of an accepted callback's time on the loop, for nearly all the traffic. Only a path spelled
    exactly as configured takes the lane (below the mount point when mounted, as the router
    reads it); a route path with a ``{parameter}`` and every other spelling stay the router's.
    """

    def __init__(self, app: ASGIApp, endpoints: Mapping[str, CallbackEndpoint]) -> None:
        self.app = app
        self.endpoints = {path: e for path, e in endpoints.items() if "{" not in path}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(_route_path(scope))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path the router matches: below ``root_path`` (a mount point) when the path has it.
    Starlette's router computes it the same way, in a helper of its private ``_utils``."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ""
    return path[len(root) :] if path[len(root)] == "/" else path


class InternalErrorGuard:
    """The last word on an exception nothing else handled: a short JSON 500, one sampled log line.

    Starlette's own error middleware answers plain text and re-raises, so the server would log
    a full traceback for every such request; here the exception stops, and its log line is
    sampled with the receiver's rejections (the callback routes answer their own failures, so
    this only sees the other endpoints' bugs).
    """

    def __init__(self, app: ASGIApp, receiver: Receiver) -> None:
        self.app = app
        self.receiver = receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch_start(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, watch_start)
        except Exception as exc:
            self.receiver.log_app_failure(exc, scope.get("path", ""))
            if not started:  # otherwise the client sees the connection end mid-answer
                await json_response(500, {"ok": False, "reason": INTERNAL_ERROR})(
                    scope, receive, send
                )


async def _http_error(request: Request, exc: HTTPException) -> Response:
    reason = _HTTP_REASONS.get(exc.status_code, "http_error")
    response = json_response(exc.status_code, {"ok": False, "reason": reason})
    if exc.headers:
        response.headers.update(exc.headers)
    return response
