"""Logging setup: structlog, JSON lines on stdout by default, a readable console in development.

Log lines carry ids (route, key id, delivery id), outcomes and reasons. Keys, signatures, tokens
and callback bodies are never passed to a logger; ``redact_secrets`` is the belt to those braces,
masking any field whose name says it holds a secret should one ever be added by mistake.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any, BinaryIO, Literal

import orjson
import structlog

from callbacks import metrics
from callbacks.turn_output import current_turn

_SECRET_FIELDS = frozenset(
    {"key", "secret", "signature", "token", "auth_key", "body", "raw", "stream_key", "password"}
)


def redact_secrets(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for name in _SECRET_FIELDS.intersection(event_dict):
        event_dict[name] = "***"
    return event_dict


class RejectionSampler:
    """Decides which rejected requests get a log line, so a forged flood is not a log flood.

    Each (route, reason) may log ``burst`` lines per second; past that, requests are counted and
    the count comes out as one summary line with the first request of a later second. Accepted
    callbacks are always logged, and the metrics count every request whatever this says.
    """

    def __init__(self, burst: int = 20, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.clock = clock
        self._second = 0
        self._seen: dict[tuple[str, str], int] = {}
        self._done: dict[tuple[str, str], int] = {}

    def admit(self, route: str, reason: str) -> bool:
        """Whether this rejection gets its own log line."""
        self._roll()
        key = (route, reason)
        count = self._seen.get(key, 0) + 1
        self._seen[key] = count
        return count <= self.burst

    def summaries(self) -> dict[tuple[str, str], int]:
        """Counts left unlogged in seconds that have ended, once each (call on every request)."""
        self._roll()
        done, self._done = self._done, {}
        return done

    def _roll(self) -> None:
        second = int(self.clock())
        if second != self._second:
            for key, count in self._seen.items():
                if count > self.burst:
                    self._done[key] = self._done.get(key, 0) + count - self.burst
            self._seen = {}
            self._second = second


class LineSink:
    """Where JSON log lines go: a binary stream, a turn's worth of lines in one write.

    In the thread of an event loop that answers connections, a line waits for the end of the
    loop's turn and leaves with the turn's other lines, before the turn's answers
    (:mod:`callbacks.turn_output`); anywhere else (threads, the CLI) it is written at once.

    A line that cannot be written is dropped and counted, never raised: stdout on a full disk
    (the same disk as the inbox, often) must not turn a callback's 503 into a 500.
    """

    __slots__ = ("_stream",)

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def emit(self, line: bytes) -> None:
        """``line`` ends in a newline."""
        output = current_turn()
        if output is None:
            self.write_lines(line)
        else:
            output.hold_line(self, line)

    def write_lines(self, data: bytes) -> None:
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):  # ValueError: the stream was closed
            metrics.LOG_LINES_DROPPED.inc(data.count(b"\n"))


class _SinkLogger:
    """structlog's logger for rendered JSON lines (bytes): each to the sink."""

    __slots__ = ("_sink",)

    def __init__(self, sink: LineSink) -> None:
        self._sink = sink

    def msg(self, message: bytes) -> None:
        self._sink.emit(message + b"\n")

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _SinkHandler(logging.Handler):
    """The stdlib side (uvicorn's records) of the same lines, in the same order."""

    def __init__(self, sink: LineSink) -> None:
        super().__init__()
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self._sink.emit(line.encode("utf-8", "replace") + b"\n")

    def handleError(self, record: logging.LogRecord) -> None:
        metrics.LOG_LINES_DROPPED.inc()


class _DroppingPrintLogger(structlog.PrintLogger):
    """The development console's lines, written at once: one that cannot be written is dropped
    and counted, as :class:`LineSink` does."""

    def msg(self, message: str) -> None:
        try:
            super().msg(message)
        except (OSError, ValueError):
            metrics.LOG_LINES_DROPPED.inc()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _DroppingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The stdlib side (uvicorn's records) of the console's lines, dropped and counted alike."""

    def handleError(self, record: logging.LogRecord) -> None:
        metrics.LOG_LINES_DROPPED.inc()


class UtcTimestamper:
    """Adds ``timestamp``: ISO 8601 in UTC to the microsecond (``2026-12-03T08:00:26.894720Z``).

    What structlog's ``TimeStamper(fmt="iso", utc=True)`` writes (which leaves the fraction out
    when it is zero), with the date and time formatted once a second: 1.1 against 3.0 µs a line,
    and every accepted callback has its line.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._second = -1
        self._prefix = ""

    def __call__(
        self, logger: Any, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}{int((now - second) * 1_000_000):06d}Z"
        return event_dict


def _orjson_text(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure_logging(
    fmt: Literal["json", "console"] = "json", *, level: int = logging.INFO
) -> None:
    """Send structlog (and stdlib logging, e.g. uvicorn's) to stdout in one format.

    JSON lines go out as orjson bytes through one :class:`LineSink`, the cheap path for a line
    per request; stdlib records take the same processors, a text renderer and the same sink.
    """
    shared: list[Any] = [
        structlog.processors.add_log_level,
        UtcTimestamper(),
        redact_secrets,
    ]
    logger_factory: Any
    handler: logging.Handler
    if fmt == "console":
        renderer: Any = structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        text_renderer: Any = renderer
        logger_factory = lambda *_: _DroppingPrintLogger(sys.stdout)  # noqa: E731
        handler = _DroppingStreamHandler(sys.stdout)
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        text_renderer = structlog.processors.JSONRenderer(serializer=_orjson_text)
        sink = LineSink(sys.stdout.buffer)
        logger_factory = lambda *_: _SinkLogger(sink)  # noqa: E731
        handler = _SinkHandler(sink)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, text_renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
