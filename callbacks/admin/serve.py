"""The console's listener, beside the receiver in the same process.

It runs its own uvicorn server on a thread of the process that runs ``callbacks serve``: with
one worker, the receiver's own process, whose metrics it reads directly; with several, the
supervisor, which reads every worker's metrics from the shared folder. Either way the console is
one listener on its own port, whatever the worker count, and it stops when the receiver does.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from typing import Any

import structlog
from starlette.applications import Starlette

from callbacks.admin.auth import ConsoleUnavailable, load_tokens
from callbacks.config import Config
from callbacks.errors import KeyFileError
from callbacks.keyfile import read_key_file

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
    family = socket.AF_INET6 if ":" in config.admin.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((config.admin.host, config.admin.port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConsoleUnavailable(
            f"the console cannot listen on {config.admin.listen}: {exc.strerror}"
        ) from None
    return app, sock


class ConsoleListener:
    """The console's uvicorn server on its own thread; :meth:`stop` ends it (and is a no-op
    when the console is off)."""

    def __init__(self, config: Config) -> None:
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        if config.admin is None:
            return
        import uvicorn

        app, self._socket = prepare(config)
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                proxy_headers=False,
                server_header=False,
                lifespan="on",
            )
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="callbacks-console",
            daemon=True,
        )
        self._thread.start()
        log.info("console_started", listen=config.admin.listen)

    def stop(self) -> None:
        if self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(_STOP_SECONDS)
        if self._socket is not None:
            self._socket.close()
