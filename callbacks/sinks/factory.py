"""Which sink a URL makes: the only module that names the backends.

A backend's client library is an optional extra, imported only when a sink of its kind is
configured; without it the server does not start, and says which extra to install.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

from callbacks.errors import ConfigError
from callbacks.sinks.base import Sink
from callbacks.sinks.settings import SinkConfig

# engine: (module, class, the client library's import name, the extra that installs it)
_BACKENDS: dict[str, tuple[str, str, str, str]] = {
    "http": ("callbacks.sinks.http", "HttpSink", "httpx", "http"),
    "nats": ("callbacks.sinks.nats", "NatsSink", "nats", "nats"),
    "rabbitmq": ("callbacks.sinks.rabbitmq", "RabbitMqSink", "aio_pika", "rabbitmq"),
    "redis": ("callbacks.sinks.redis", "RedisSink", "redis", "redis"),
}


def sink_class(config: SinkConfig, *, source: str = "config") -> Any:
    """The class for ``config``'s URL scheme; ConfigError naming the extra when it is missing."""
    module_name, class_name, library, extra = _BACKENDS[config.engine]
    try:
        importlib.import_module(library)
    except ImportError:
        raise ConfigError(
            source,
            f"sinks ({config.name}).url",
            f"a {config.engine} sink needs its client library: "
            f"pip install 'avatar-callbacks[{extra}]'",
        ) from None
    return getattr(importlib.import_module(module_name), class_name)


def open_sink(
    config: SinkConfig,
    *,
    keys: Callable[[], Sequence[bytes]] | None = None,
    source: str = "config",
) -> Sink:
    """A sink for ``config``, not yet connected. An HTTP sink signs with ``keys()``."""
    cls = sink_class(config, source=source)
    if config.engine == "http":
        if keys is None:
            raise ConfigError(source, f"sinks ({config.name})", "an HTTP sink needs its secrets")
        sink: Sink = cls(config, keys)
    else:
        sink = cls(config)
    return sink
