"""Each configured sink presented to the dispatcher as a named delivery target, like a handler.

The target ``sink:NAME`` is registered in the handler registry for the sink's routes, so the
dispatcher treats it as it treats any handler: isolated from the others, retried with backoff,
dead after ``max_attempts`` (at once when the sink refuses for good), recorded per event in
``events show``, re-run by replay, counted in the handler metrics. Nothing else in the
receiver knows sinks exist.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import structlog

from callbacks import metrics
from callbacks.config import Config
from callbacks.events import Event
from callbacks.handlers import Handlers
from callbacks.sinks.base import Sink, SinkError, SinkRejected
from callbacks.sinks.envelope import EventEnvelope
from callbacks.sinks.factory import open_sink, sink_class
from callbacks.sinks.secrets import SecretSource
from callbacks.sinks.settings import SinkConfig

log = structlog.get_logger("avatar_callbacks.sinks")


class SinkTarget:
    """Called with an event like an async handler; sends its envelope to one sink."""

    def __init__(self, config: SinkConfig, sink: Sink) -> None:
        self.config = config
        self.sink = sink
        self.name = config.target_name
        self._ok = metrics.SINK_SENDS.labels(config.name, "ok")
        self._failed = metrics.SINK_SENDS.labels(config.name, "failed")
        self._refused = metrics.SINK_SENDS.labels(config.name, "refused")

    async def __call__(self, event: Event) -> None:
        envelope = EventEnvelope.from_event(event)
        started = time.perf_counter()
        try:
            await self.sink.send(envelope)
        except SinkRejected:
            self._refused.observe(time.perf_counter() - started)
            raise
        except SinkError:
            self._failed.observe(time.perf_counter() - started)
            raise
        self._ok.observe(time.perf_counter() - started)


class Sinks:
    """The configured sinks of one receiver process: one long-lived sink object each."""

    def __init__(self, targets: Iterable[SinkTarget]) -> None:
        self.targets = tuple(targets)

    def __len__(self) -> int:
        return len(self.targets)

    def handlers(self) -> Handlers:
        """A registry holding each sink as a target, for the dispatcher."""
        registry = Handlers()
        for target in self.targets:
            registry.add(target, Event, name=target.name, routes=target.config.routes)
        return registry

    async def start(self) -> None:
        for target in self.targets:
            await target.sink.start()
            log.info(
                "sink_started",
                sink=target.config.name,
                engine=target.config.engine,
                url=target.config.display_url,
                target=target.config.target,
            )

    async def close(self) -> None:
        for target in self.targets:
            try:
                await target.sink.close()
            except Exception as exc:  # closing must not stop the others from closing
                log.warning("sink_close_failed", sink=target.config.name, error=type(exc).__name__)


def check_sinks(config: Config) -> None:
    """At start-up: every sink's client library is installed and every HTTP sink has a secret
    (ConfigError / KeyFileError otherwise)."""
    for sink in config.sinks:
        sink_class(sink, source=config.source)
        if sink.engine == "http":
            SecretSource(config.keys.file, sink.name).load()


def open_sinks(config: Config) -> Sinks:
    """The sinks ``config`` names, not yet connected."""
    check_sinks(config)
    targets: list[SinkTarget] = []
    for sink in config.sinks:
        keys = None
        if sink.engine == "http":
            source = SecretSource(config.keys.file, sink.name)
            source.load()
            keys = source.keys
        targets.append(SinkTarget(sink, open_sink(sink, keys=keys, source=config.source)))
    return Sinks(targets)


def with_sinks(handlers: Handlers, sinks: Sinks) -> Handlers:
    """``handlers`` plus the sinks' targets, in a new registry (the caller's is not changed)."""
    if not sinks:
        return handlers
    combined = Handlers()
    combined.include(handlers)
    combined.include(sinks.handlers())
    return combined
