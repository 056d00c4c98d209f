"""Running the receiver under uvicorn, and the dispatcher on its own.

uvicorn imports the app in each worker process, so the app is built by a factory that reads the
config path from ``CALLBACKS_CONFIG``: the same code path for one worker and for several.
``run_dispatcher`` runs the delivery side with no listener (``callbacks dispatch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator

import structlog
import uvicorn
from starlette.applications import Starlette
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from callbacks.admin.auth import ConsoleUnavailable
from callbacks.admin.serve import ConsoleListener
from callbacks.app import create_app, open_serving_store, serving_store_for
from callbacks.config import CONFIG_ENV, Config, load_config
from callbacks.deliveries import Deliveries
from callbacks.dispatch.gauges import keep_sampling
from callbacks.dispatch.listener import DispatchListener
from callbacks.errors import CallbacksError
from callbacks.handlers import load_handlers
from callbacks.http_guard import ConnectionLimits, GuardedHttpToolsProtocol
from callbacks.logs import configure_logging

log = structlog.get_logger("avatar_callbacks.server")

# The SQLite commit thread gives up the GIL around COMMIT and must win it back from a busy event
# loop; at the default 5 ms switch interval each hand-back can stall the next commit batch.
_GIL_SWITCH_INTERVAL = 0.0005
# How stale the store's gauges may be on `callbacks dispatch --listen`'s /metrics.
_GAUGE_INTERVAL = 5.0


def app_from_environment() -> Starlette:
    """uvicorn factory: build the app from the config file named in ``CALLBACKS_CONFIG``."""
    sys.setswitchinterval(_GIL_SWITCH_INTERVAL)
    config = load_config(os.environ[CONFIG_ENV])
    configure_logging(config.server.log_format)
    # Each worker runs this before it accepts a connection: its protocol takes the limits here.
    GuardedHttpToolsProtocol.configure(ConnectionLimits.of(config.server))
    if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
        # Until the key watcher takes SIGHUP over at start-up, a reload request must not end
        # the process (the default action).
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return create_app(config)


def run(config: Config) -> None:
    """Serve ``config`` (already checked) until SIGINT/SIGTERM; in-flight requests finish first."""
    os.environ[CONFIG_ENV] = config.source
    configure_logging(config.server.log_format)
    with _metrics_dir(config.server.workers):
        try:
            console = ConsoleListener(config)  # [admin] listen: the console, beside
        except ConsoleUnavailable as exc:  # asked for and not had: say why, and do not serve
            sys.exit(f"error: {exc}")
        try:
            _serve(config)
        finally:
            console.stop()


def run_dispatcher(config: Config, listen: str | None = None) -> None:
    """Deliver ``config``'s stored events until SIGINT/SIGTERM, answering no callbacks (with
    ``listen``, health and metrics only). Running handlers get up to their timeout to finish;
    events not yet started are given back."""
    configure_logging(config.server.log_format)
    try:
        asyncio.run(_dispatch_until_stopped(config, listen))
    except CallbacksError as exc:  # the store cannot be opened, its schema is behind...
        sys.exit(f"error: {exc}")


async def _dispatch_until_stopped(config: Config, listen: str | None) -> None:
    handlers = load_handlers(config.handler_modules, config_dir=config.base_dir)
    store = serving_store_for(config)
    deliveries = Deliveries(config, store, handlers, dispatch=True)
    listener = DispatchListener(listen, deliveries) if listen is not None else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if hasattr(signal, "SIGHUP"):  # `systemctl reload` must not end it (there are no keys here)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)
    await open_serving_store(store, config)
    gauges: asyncio.Task[None] | None = None
    try:
        await deliveries.start()
        if listener is not None:
            listener.start()
            gauges = asyncio.create_task(keep_sampling(store, _GAUGE_INTERVAL))
        log.info(
            "dispatcher_started",
            handlers=len(deliveries.handlers),
            sinks=len(deliveries.sinks),
            poll_interval=config.dispatch.poll_interval,
            reconciler=deliveries.reconciler is not None,
        )
        await stop.wait()
        log.info("dispatcher_stopping")
    finally:
        if gauges is not None:
            gauges.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await gauges
        await deliveries.stop()
        await store.close()
        if listener is not None:
            listener.stop()


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """Several workers need a shared folder for their metrics; make a private one if unset."""
    if workers == 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="avatar-callbacks-metrics-") as folder:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def _serve(config: Config) -> None:
    server = config.server
    uvicorn_config = uvicorn.Config(
        "callbacks.server:app_from_environment",
        factory=True,
        host=server.host,
        port=server.port,
        workers=server.workers,
        http=GuardedHttpToolsProtocol,  # uvicorn's httptools protocol, bounded
        ws="none",  # no WebSocket routes: an upgrade request is an ordinary request
        log_config=None,
        access_log=False,  # the receiver logs one structured line per request itself
        proxy_headers=False,  # X-Forwarded-* is never trusted here (signatures use public_url)
        server_header=False,
        timeout_keep_alive=server.keepalive_timeout,
        timeout_graceful_shutdown=20,
    )
    # What uvicorn.run does, with the supervisor below for several workers.
    if server.workers > 1:
        supervisor = KeyReloadingMultiprocess(uvicorn_config, [uvicorn_config.bind_socket()])
        with contextlib.suppress(KeyboardInterrupt):
            supervisor.run()
        return
    single = uvicorn.Server(uvicorn_config)
    with contextlib.suppress(KeyboardInterrupt):
        single.run()
    if not single.started:
        sys.exit(STARTUP_FAILURE)


class KeyReloadingMultiprocess(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP reloads keys instead of restarting.

    uvicorn answers SIGHUP by replacing every worker; here the signal is passed on to each
    worker, whose key watcher reloads the key file (see callbacks/live_keys.py), so
    ``systemctl reload`` (``kill -HUP $MAINPID``) rotates keys in every worker, none restarted.
    """

    def handle_hup(self) -> None:
        log.info("keys_reload_forwarded", signal="SIGHUP", workers=len(self.processes))
        for process in self.processes:
            if process.pid is not None and process.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)
