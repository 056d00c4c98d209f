"""A small HTTP listener beside a process's main work, on a uvicorn thread of its own: the
console beside the receiver (:mod:`callbacks.admin.serve`), health and metrics beside the
dispatcher (:mod:`callbacks.dispatch.listener`).

The socket is bound before anything starts, so a taken port stops the process at start with
one line; the thread is a daemon and stops with :meth:`ListenerThread.stop`.
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Literal


def parse_host_port(text: str) -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:9000`` for IPv6) as host and port, or None if it is not one."""
    host, sep, port_text = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    valid = bool(sep and host) and port_text.isascii() and port_text.isdigit()
    if not valid or not 1 <= int(port_text[:6] or 0) <= 65535:
        return None
    return host, int(port_text)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; OSError (closed first) if it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class ListenerThread:
    """``app`` served on ``sock`` by uvicorn, on a daemon thread named ``name``."""

    def __init__(
        self,
        app: Any,
        sock: socket.socket,
        *,
        name: str,
        lifespan: Literal["on", "off"],
        stop_seconds: float,
    ) -> None:
        import uvicorn

        self._socket = sock
        self._stop_seconds = stop_seconds
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                proxy_headers=False,
                server_header=False,
                lifespan=lifespan,
            )
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=name, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(self._stop_seconds)
        self._socket.close()
