"""The ``[[sinks]]`` settings: where confirmed events go besides the handlers.

    [[sinks]]
    name = "bus"
    url = "nats://127.0.0.1:4222"    # or amqp://, amqps://, redis://, rediss://, http://, https://
    target = "avatar.callbacks"      # JetStream subject / RabbitMQ exchange / Redis stream key
    routes = ["sensetime"]           # default: every route
    timeout = 5.0                    # seconds one send may take (default 5)
    maxlen = 100000                  # Redis only: trim the stream to about this many entries

An HTTP sink signs with the secrets in the key file's ``[sinks.NAME]`` section (see
:mod:`callbacks.sinks.secrets`). Checked when the config is read, like every other setting.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from callbacks.errors import ConfigError

Engine = Literal["http", "nats", "rabbitmq", "redis"]
SCHEMES: Mapping[str, Engine] = {
    "http": "http",
    "https": "http",
    "nats": "nats",
    "tls": "nats",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "redis": "redis",
    "rediss": "redis",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_KNOWN = {"name", "url", "target", "routes", "timeout", "maxlen"}
DEFAULT_TIMEOUT = 5.0


@dataclass(frozen=True)
class SinkConfig:
    name: str
    url: str
    target: str | None = None
    routes: frozenset[str] | None = None
    """The routes whose events the sink receives; None for every route."""
    timeout: float = DEFAULT_TIMEOUT
    maxlen: int | None = None

    @property
    def engine(self) -> Engine:
        return SCHEMES[urlsplit(self.url).scheme]

    @property
    def target_name(self) -> str:
        """The name the dispatcher keeps this sink's delivery state under."""
        return f"sink:{self.name}"

    @property
    def display_url(self) -> str:
        """The URL without its credentials, for logs and banners."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path}"


def read_sinks(raw: object, *, source: str, routes: Collection[str]) -> tuple[SinkConfig, ...]:
    """Every ``[[sinks]]`` table, checked; ``routes`` are the configured route names."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(source, "sinks", "must be an array of tables ([[sinks]])")
    sinks = tuple(_read_one(item, i, source, routes) for i, item in enumerate(raw))
    seen: set[str] = set()
    for sink in sinks:
        if sink.name in seen:
            raise ConfigError(source, f"sinks ({sink.name})", "sink name used twice")
        seen.add(sink.name)
    return sinks


def _read_one(item: object, index: int, source: str, routes: Collection[str]) -> SinkConfig:
    at = f"sinks[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(source, at, "must be a table")
    for key in item:
        if key not in _KNOWN:
            known = ", ".join(sorted(_KNOWN))
            raise ConfigError(source, f"{at}.{key}", f"unknown setting (known: {known})")
    name = item.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            source,
            f"{at}.name",
            "is required: 1-64 characters of letters, digits, '_', '.', '-', starting alphanumeric",
        )
    at = f"sinks[{index}] ({name})"
    url = _read_url(item.get("url"), f"{at}.url", source)
    engine = SCHEMES[urlsplit(url).scheme]
    target = item.get("target")
    if target is not None and (not isinstance(target, str) or not target):
        raise ConfigError(source, f"{at}.target", "must be a non-empty string")
    if target is None and engine != "http":
        what = {"nats": "JetStream subject", "rabbitmq": "exchange", "redis": "stream key"}
        raise ConfigError(source, f"{at}.target", f"is required: the {what[engine]}")
    if target is not None and engine == "http":
        raise ConfigError(source, f"{at}.target", "does not apply to an HTTP sink (POSTs to url)")
    maxlen = item.get("maxlen")
    if maxlen is not None:
        if engine != "redis":
            raise ConfigError(source, f"{at}.maxlen", "only applies to redis:// sinks")
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or not 1 <= maxlen <= 2**40:
            raise ConfigError(source, f"{at}.maxlen", "must be a whole number from 1 to 2**40")
    return SinkConfig(
        name=name,
        url=url,
        target=target,
        routes=_read_routes(item, f"{at}.routes", source, routes),
        timeout=_read_timeout(item.get("timeout", DEFAULT_TIMEOUT), f"{at}.timeout", source),
        maxlen=maxlen,
    )


def _read_url(value: object, setting: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(source, setting, "is required, e.g. nats://127.0.0.1:4222")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(source, setting, "is not a URL") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        schemes = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigError(source, setting, f"must be a URL with a host, one of {schemes}")
    return value


def _read_routes(
    item: Mapping[str, Any], setting: str, source: str, routes: Collection[str]
) -> frozenset[str] | None:
    if "routes" not in item:
        return None
    value = item["routes"]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(source, setting, "must be a non-empty list of route names")
    unknown = [v for v in value if v not in routes]
    if unknown:
        known = ", ".join(routes) or "none"
        raise ConfigError(source, setting, f"no route named {unknown[0]!r} (routes: {known})")
    return frozenset(value)


def _read_timeout(value: object, setting: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.01 <= value <= 600:
        raise ConfigError(source, setting, "must be a number of seconds from 0.01 to 600")
    return float(value)
