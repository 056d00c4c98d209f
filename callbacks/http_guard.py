"""The HTTP connection's edges: header size, header and body read timeouts, a connection cap.

uvicorn's httptools protocol bounds none of them: httptools buffers a header of any size (an
8 MiB header was accepted; 20 connections each holding a 4 MiB partial header took the server
from 48 to 139 MB), a partial header or a slow body holds its connection as long as the client
likes, and there is no limit on connections. None of this can be bounded from the ASGI app,
which only sees a request once its headers are complete, so :class:`GuardedHttpToolsProtocol`
adds the bounds to uvicorn's protocol itself (``uvicorn.Config(http=...)``):

- the request line and headers may take ``max_header_bytes``; past that the answer is 431 and
  the connection is closed before any more is read;
- a request's head must arrive within ``header_timeout`` of the connection opening (or of the
  previous answer), its body within ``body_timeout`` of the head; a client slower than that is
  dropped, and an app waiting for its body sees a disconnect;
- past ``max_connections`` open connections a new one is answered 503 and closed at once;
- on shutdown a request still reading its body is answered 503 (``shutting_down``) and closed,
  so a slow client cannot hold the shutdown for the whole grace period.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from callbacks import metrics
from callbacks.config import ServerConfig
from callbacks.paired_writes import PairedWritesTransport
from callbacks.turn_output import turn_output


def _answer(status: int, phrase: str, reason: str) -> bytes:
    """A complete short JSON answer that closes the connection, written by the protocol."""
    body = b'{"ok":false,"reason":"%s"}' % reason.encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, phrase.encode(), len(body), body)
    )


_HEADERS_TOO_LARGE = _answer(431, "Request Header Fields Too Large", "headers_too_large")
_TOO_MANY_CONNECTIONS = _answer(503, "Service Unavailable", "too_many_connections")
_SHUTTING_DOWN = _answer(503, "Service Unavailable", "shutting_down")
# Counted, not logged: a flood of slow or oversized clients must not become a log flood.
_CLOSED = {
    reason: metrics.CONNECTIONS_CLOSED.labels(reason)
    for reason in (
        "headers_too_large",
        "header_timeout",
        "body_timeout",
        "too_many_connections",
        "shutting_down",
    )
}


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def of(cls, server: ServerConfig) -> ConnectionLimits:
        return cls(
            server.max_header_bytes,
            server.header_timeout,
            server.body_timeout,
            server.max_connections,
        )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds this module describes, writing each answer
    in one send after the log lines of its turn
    (:class:`~callbacks.paired_writes.PairedWritesTransport`)."""

    # uvicorn builds one protocol per connection from this class, imported by each worker
    # process; the app factory every worker runs first sets the limits here (configure).
    limits: ClassVar[ConnectionLimits] = ConnectionLimits.of(ServerConfig())

    @classmethod
    def configure(cls, limits: ConnectionLimits) -> None:
        cls.limits = limits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes: int | None = 0  # bytes of the head being read; None in a body
        self._heads_read = 0
        self._reading_body = False
        # The read deadline (loop time; None: none) and the one timer that enforces it. Each
        # request moves the deadline twice; scheduling and cancelling a timer each time cost
        # ~3.5 us apiece in uvloop, so the timer stays and checks the deadline when it fires.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._refused = False

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            _CLOSED["too_many_connections"].inc()
            transport.write(_TOO_MANY_CONNECTIONS)
            transport.close()
            return
        # Each answer's head and body in one send, after the turn's log lines (turn_output.py).
        super().connection_made(PairedWritesTransport(transport, turn_output(self.loop)))
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return  # never counted as a connection, no parser state to release
        self._disarm()
        if self._timer is not None:  # so the closed connection is not kept until it fires
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is None:
            super().data_received(data)
            return
        if self._refused:
            return
        room = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed what fits. Unless a head ended within it, the head is too large; otherwise the
        # rest is body or the next request, counted afresh.
        heads_read = self._heads_read
        self._head_bytes += room
        super().data_received(data[:room])
        if self.transport.is_closing():
            return
        if self._heads_read == heads_read:
            self._disarm()
            _CLOSED["headers_too_large"].inc()
            self.transport.write(_HEADERS_TOO_LARGE)
            self.transport.close()
            return
        self.data_received(data[room:])

    # -- parser callbacks ------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._heads_read += 1
        self._reading_body = True
        self._arm(self.limits.body_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_bytes = 0  # a pipelined next request's head counts from here
        self._reading_body = False
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._reading_body and not self.transport.is_closing():
            self._arm(self.limits.header_timeout)  # for the next request's head

    def shutdown(self) -> None:
        if self._reading_body and self.cycle is not None and not self.cycle.response_started:
            # Waiting for a body that may come slowly or never: answer now so the shutdown
            # does not wait out its grace period, and the platform retries elsewhere.
            self._disarm()
            _CLOSED["shutting_down"].inc()
            self.transport.write(_SHUTTING_DOWN)
            self.transport.close()
            return
        super().shutdown()

    # -- the read deadline -----------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        deadline = self.loop.time() + seconds
        self._deadline = deadline
        if self._timer is not None:
            if self._timer.when() <= deadline:
                return  # it fires first and finds the deadline moved
            self._timer.cancel()
        self._schedule(deadline)

    def _disarm(self) -> None:
        self._deadline = None  # the timer, if any, fires and finds nothing to enforce

    def _schedule(self, at: float) -> None:
        self._timer = self.loop.call_at(at, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._schedule(deadline)
            return
        self._deadline = None
        if not self.transport.is_closing():
            _CLOSED["body_timeout" if self._reading_body else "header_timeout"].inc()
            self.transport.close()  # dropped: an app waiting for the body sees a disconnect
