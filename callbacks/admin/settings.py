"""The ``[admin]`` settings: where the console listens, if anywhere.

    [admin]
    listen = "127.0.0.1:8001"            # off when absent; never the callback port
    failed_sign_ins_per_minute = 10      # per client address; past it, 429 until they age out

The tokens are secrets, so they live in the key file (``[admin] token``, ``read_only_token``) or
the environment, never here (see :mod:`callbacks.admin.auth`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from callbacks.errors import ConfigError
from callbacks.side_listener import parse_host_port

_ANY_HOST = {"0.0.0.0", "::", ""}  # noqa: S104 - names for "every interface", compared only


DEFAULT_FAILED_SIGN_INS = 10


@dataclass(frozen=True)
class AdminConfig:
    host: str
    port: int
    failed_sign_ins_per_minute: int = DEFAULT_FAILED_SIGN_INS

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def overlaps(self, host: str, port: int) -> bool:
        """Whether a listener on ``host:port`` would take this one's socket (or the reverse)."""
        if port != self.port:
            return False
        return host == self.host or host in _ANY_HOST or self.host in _ANY_HOST


def read_admin(raw: object, *, source: str) -> AdminConfig | None:
    """The ``[admin]`` table, checked; None when the console is off."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(source, "admin", "must be a table")
    table: Mapping[str, Any] = raw
    unknown = set(table) - {"listen", "failed_sign_ins_per_minute"}
    if unknown:
        raise ConfigError(
            source,
            f"admin.{min(unknown)}",
            "unknown setting (known: listen, failed_sign_ins_per_minute)",
        )
    listen = table.get("listen")
    if listen is None:
        return None
    if not isinstance(listen, str):
        raise ConfigError(source, "admin.listen", 'must be "HOST:PORT", e.g. "127.0.0.1:8001"')
    limit = table.get("failed_sign_ins_per_minute", DEFAULT_FAILED_SIGN_INS)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100_000:
        raise ConfigError(
            source, "admin.failed_sign_ins_per_minute", "must be a whole number from 1 to 100000"
        )
    return replace(parse_listen(listen, source=source), failed_sign_ins_per_minute=limit)


def parse_listen(listen: str, *, source: str) -> AdminConfig:
    parsed = parse_host_port(listen)
    if parsed is None:
        raise ConfigError(source, "admin.listen", 'must be "HOST:PORT", e.g. "127.0.0.1:8001"')
    return AdminConfig(host=parsed[0], port=parsed[1])
