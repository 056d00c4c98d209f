"""The dispatch process's own listener (``callbacks dispatch --listen HOST:PORT``): ``/healthz``,
``/readyz`` and ``/metrics``, for an orchestrator's probes and a Prometheus scrape.

A dispatch process answers no callbacks, so without this it has nothing to probe. The listener
runs uvicorn on a thread of its own, as the console does beside the receiver, and only reads
the dispatcher's state (plain attributes: no store call from another thread's loop).
"""

from __future__ import annotations

from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callbacks import metrics
from callbacks.deliveries import Deliveries
from callbacks.errors import CallbacksError
from callbacks.side_listener import ListenerThread, bind_socket, parse_host_port

log = structlog.get_logger("avatar_callbacks.dispatch")
_STOP_SECONDS = 5.0


class ListenerUnavailable(CallbacksError):
    """The dispatch process cannot listen where it was asked to (port taken, bad address)."""


def create_listener_app(deliveries: Deliveries) -> Starlette:
    dispatcher = deliveries.dispatcher
    assert dispatcher is not None, "a dispatch process always has its dispatcher"

    async def healthz(request: Request) -> Response:
        if not dispatcher.running:
            return JSONResponse({"status": "stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        """Ready unless deliveries would fail now: every reason found (names only)."""
        reasons: list[str] = []
        details: dict[str, Any] = {}
        if not dispatcher.running:
            reasons.append("dispatcher_stopped")
        if dispatcher.store_failing:
            reasons.append("store_unavailable")
        gate = deliveries.gate
        if gate is not None and gate.cannot_confirm():
            reasons.append("cannot_confirm")
            details["routes_that_cannot_confirm"] = gate.cannot_confirm()
        if reasons:
            body = {"status": "unavailable", "reason": reasons[0], "reasons": reasons, **details}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready"})

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
    )


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9101`` for IPv6) as host and port; ListenerUnavailable if not."""
    parsed = parse_host_port(listen)
    if parsed is None:
        raise ListenerUnavailable(f'must be "HOST:PORT", e.g. "127.0.0.1:9101" (got {listen!r})')
    return parsed


class DispatchListener:
    """The listener's uvicorn server on its own thread. The socket is bound in the constructor,
    so a port that is taken stops the process at start with one line."""

    def __init__(self, listen: str, deliveries: Deliveries) -> None:
        try:
            sock = bind_socket(*parse_listen(listen))
        except OSError as exc:
            raise ListenerUnavailable(f"cannot listen on {listen}: {exc.strerror}") from None
        self.listen = listen
        self._listener = ListenerThread(
            create_listener_app(deliveries),
            sock,
            name="callbacks-dispatch-listener",
            lifespan="off",
            stop_seconds=_STOP_SECONDS,
        )

    def start(self) -> None:
        self._listener.start()
        log.info("dispatch_listener_started", listen=self.listen)

    def stop(self) -> None:
        self._listener.stop()
