"""Running the receiver under uvicorn.

uvicorn imports the app in each worker process, so the app is built by a factory that reads the
config path from ``CALLBACKS_CONFIG``: the same code path for one worker and for several.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from callbacks.admin.auth import ConsoleUnavailable
from callbacks.admin.serve import ConsoleListener
from callbacks.app import create_app
from callbacks.config import CONFIG_ENV, Config, load_config
from callbacks.logs import configure_logging

# The SQLite commit thread gives up the GIL around COMMIT and must win it back from a busy event
# loop; at the default 5 ms switch interval each hand-back can stall the next commit batch.
_GIL_SWITCH_INTERVAL = 0.0005


def app_from_environment() -> Starlette:
    """uvicorn factory: build the app from the config file named in ``CALLBACKS_CONFIG``."""
    sys.setswitchinterval(_GIL_SWITCH_INTERVAL)
    config = load_config(os.environ[CONFIG_ENV])
    configure_logging(config.server.log_format)
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
    uvicorn.run(
        "callbacks.server:app_from_environment",
        factory=True,
        host=config.server.host,
        port=config.server.port,
        workers=config.server.workers,
        log_config=None,
        access_log=False,  # the receiver logs one structured line per request itself
        proxy_headers=False,  # X-Forwarded-* is never trusted here (signatures use public_url)
        server_header=False,
        timeout_graceful_shutdown=20,
    )
