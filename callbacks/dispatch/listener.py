"""The dispatch process's own listener (``callbacks dispatch --listen HOST:PORT``): ``/healthz``,
``/readyz`` and ``/metrics``, for an orchestrator's probes and a Prometheus scrape.

A dispatch process answers no callbacks, so without this it has nothing to probe. The listener
runs uvicorn on a thread of its own, as the console does beside the receiver, and only reads
the dispatcher's state (plain attributes: no store call from another thread's loop).
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from callbacks import metrics
from callbacks.deliveries import Deliveries
from callbacks.errors import CallbacksError

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
    host, sep, port_text = listen.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ListenerUnavailable(f'must be "HOST:PORT", e.g. "127.0.0.1:9101" (got {listen!r})')
    return host, int(port_text)


class DispatchListener:
    """The listener's uvicorn server on its own thread. The socket is bound in the constructor,
    so a port that is taken stops the process at start with one line."""

    def __init__(self, listen: str, deliveries: Deliveries) -> None:
        import uvicorn

        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind((host, port))
            self._socket.listen(64)
        except OSError as exc:
            self._socket.close()
            raise ListenerUnavailable(f"cannot listen on {listen}: {exc.strerror}") from None
        self.listen = listen
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_listener_app(deliveries),
                log_config=None,
                access_log=False,
                proxy_headers=False,
                server_header=False,
                lifespan="off",
            )
        )
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="callbacks-dispatch-listener",
            daemon=True,
        )
        self._thread.start()
        log.info("dispatch_listener_started", listen=self.listen)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(_STOP_SECONDS)
        self._socket.close()
