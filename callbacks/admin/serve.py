"""The console's listener, beside the receiver in the same process.

It runs its own uvicorn server on a thread of the process that runs ``callbacks serve``: with
one worker, the receiver's own process, whose metrics it reads directly; with several, the
supervisor, which reads every worker's metrics from the shared folder. Either way the console is
one listener on its own port, whatever the worker count, and it stops when the receiver does.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog
from starlette.applications import Starlette

from callbacks.admin.auth import ConsoleUnavailable, load_tokens
from callbacks.config import Config
from callbacks.errors import KeyFileError
from callbacks.keyfile import read_key_file
from callbacks.side_listener import ListenerThread, bind_socket

log = structlog.get_logger("avatar_callbacks.admin")
_STOP_SECONDS = 10.0


def prepare(
    config: Config, env: Mapping[str, str] | None = None
) -> tuple[Starlette, socket.socket]:
    """The console app and its bound socket; ConsoleUnavailable (one line) if it cannot be had."""
    assert config.admin is not None
    try:
        env = os.environ if env is None else env
        tokens = load_tokens(read_key_file(config.keys.file, missing_ok=True), env)
    except KeyFileError as exc:
        raise ConsoleUnavailable(f"the console cannot read its token: {exc}") from None
    try:
        from callbacks.admin.app import create_admin_app
    except ImportError as exc:
        raise ConsoleUnavailable(
            f"the console needs the admin extra ({exc.name} is missing): "
            "pip install 'avatar-callbacks[admin]'"
        ) from None
    app = create_admin_app(config, tokens, env=env)
    try:
        sock = bind_socket(config.admin.host, config.admin.port)
    except OSError as exc:
        raise ConsoleUnavailable(
            f"the console cannot listen on {config.admin.listen}: {exc.strerror}"
        ) from None
    return app, sock


class ConsoleListener:
    """The console's uvicorn server on its own thread; :meth:`stop` ends it (and is a no-op
    when the console is off)."""

    def __init__(self, config: Config) -> None:
        self._listener: ListenerThread | None = None
        if config.admin is None:
            return
        app, sock = prepare(config)
        self._listener = ListenerThread(
            app, sock, name="callbacks-console", lifespan="on", stop_seconds=_STOP_SECONDS
        )
        self._listener.start()
        log.info("console_started", listen=config.admin.listen)

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.stop()
