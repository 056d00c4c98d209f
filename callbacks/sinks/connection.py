"""One long-lived connection per sink, shared by every send, re-made with backoff when lost.

While the engine is down, sends fail at once with :class:`SinkUnavailable` instead of each
waiting for a connect timeout: the dispatcher's rounds, and the other sinks and handlers in them,
keep moving, and the events are retried with the dispatcher's own backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

from callbacks.sinks.base import SinkUnavailable

log = structlog.get_logger("avatar_callbacks.sinks")
C = TypeVar("C")

BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0


class Reconnecting(Generic[C]):
    """Holds a connection made by ``connect``; :meth:`get` returns it or makes it."""

    def __init__(
        self,
        sink: str,
        connect: Callable[[], Awaitable[C]],
        close: Callable[[C], Awaitable[None]],
        *,
        timeout: float,
        redact: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self._connect = connect
        self._close = close
        self.timeout = timeout
        self.clock = clock
        self._redact = tuple(r for r in redact if r)
        self._connection: C | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def start(self) -> None:
        """Connect in the background: start-up does not wait for an engine that is down."""
        self._task = asyncio.create_task(self._try_quietly(), name=f"sink-{self.sink}-connect")

    async def get(self) -> C:
        connection = self._connection
        if connection is not None:
            return connection
        if self.clock() < self._retry_at:
            raise SinkUnavailable(f"sink {self.sink!r} is not connected ({self._last_error})")
        async with self._lock:  # one connect attempt at a time; the others wait for its result
            if self._connection is not None:
                return self._connection
            if self.clock() < self._retry_at:
                raise SinkUnavailable(f"sink {self.sink!r} is not connected ({self._last_error})")
            try:
                connection = await asyncio.wait_for(self._connect(), self.timeout)
            except Exception as exc:
                self._failed(exc)
                raise SinkUnavailable(
                    f"sink {self.sink!r} cannot connect ({self._last_error})"
                ) from None
            if self._failures:
                log.info("sink_reconnected", sink=self.sink, after_failures=self._failures)
            self._failures = 0
            self._connection = connection
            return connection

    async def lost(self, connection: C) -> None:
        """The connection failed under a send: drop it, so the next send makes a new one."""
        if self._connection is connection:
            self._connection = None
            await self._close_quietly(connection)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        async with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None:
                await self._close_quietly(connection)

    def _failed(self, exc: BaseException) -> None:
        self._failures += 1
        self._last_error = describe(exc, self._redact)
        delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** min(self._failures - 1, 16))
        self._retry_at = self.clock() + delay / 2 + random.random() * delay / 2
        log.warning(
            "sink_connect_failed",
            sink=self.sink,
            error=self._last_error,
            failures=self._failures,
            retry_in=round(self._retry_at - self.clock(), 3),
        )

    async def _try_quietly(self) -> None:
        with contextlib.suppress(SinkUnavailable):  # logged; a send tries again after backoff
            await self.get()

    async def _close_quietly(self, connection: C) -> None:
        try:
            await asyncio.wait_for(self._close(connection), self.timeout)
        except Exception as exc:
            log.info("sink_close_failed", sink=self.sink, error=describe(exc, self._redact))


def describe(exc: BaseException, redact: Sequence[str] = ()) -> str:
    """An error's type and message, short, with ``redact`` (the URL's password) masked: some
    client libraries quote the URL they were given."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    for secret in redact:
        if secret:  # no password in the URL: nothing to mask
            text = text.replace(secret, "***")
    return text[:200]
