"""The receiver's configuration: one TOML file, single settings overridable from the environment.

Everything is checked when the file is read, so a bad config stops the server at start with a
message naming the file, the setting and what is wrong, never at the first callback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from callbacks._toml import TomlUnreadable, read_toml
from callbacks.admin.settings import AdminConfig, read_admin
from callbacks.confirm.settings import ROUTE_SETTINGS, ConfirmationSettings, read_confirmation
from callbacks.errors import ConfigError
from callbacks.sinks.settings import SinkConfig, read_sinks
from callbacks.store.url import check_store_url, is_sqlite_url
from verify import Carrier
from verify.metastudio import canonical_uri

Provider = Literal["sensetime", "metastudio"]
MetaStudioKind = Literal["video", "photo_video", "business_card", "subtitle", "tts", "live"]
MetaStudioAuth = Literal["MSS_A", "MSS_A_HEAD", "NONE"]

PROVIDERS: tuple[str, ...] = ("sensetime", "metastudio")
METASTUDIO_KINDS: tuple[str, ...] = (
    "video",
    "photo_video",
    "business_card",
    "subtitle",
    "tts",
    "live",
)
METASTUDIO_AUTHS: tuple[str, ...] = ("MSS_A", "MSS_A_HEAD", "NONE")
DEFAULT_BODY_LIMIT = 1024 * 1024
CONFIG_ENV = "CALLBACKS_CONFIG"
DEFAULT_HOST_ENV = "CALLBACKS_DEFAULT_HOST"
"""The host to bind when ``[server] host`` is not set (the container image sets 0.0.0.0);
unlike ``CALLBACKS_HOST`` it does not override a host the file names."""

_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    body_limit: int = DEFAULT_BODY_LIMIT
    log_format: Literal["json", "console"] = "json"
    # The connection's edges (callbacks/http_guard.py): a platform's callback has a head of a
    # few hundred bytes and arrives within a second; these leave room and bound the rest.
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    max_connections: int = 1000
    keepalive_timeout: int = 5  # seconds an idle kept-alive connection stays open


@dataclass(frozen=True)
class StoreConfig:
    url: str = "sqlite:///callbacks.db"
    # Seconds a callback's write may take before the receiver answers 503 (so the platform
    # retries); well under the ~3 s the platforms wait for an answer.
    write_timeout: float = 2.0

    @property
    def is_sqlite(self) -> bool:
        """The embedded store: one server process, schema created at start."""
        return is_sqlite_url(self.url)


@dataclass(frozen=True)
class DispatchConfig:
    max_attempts: int = 8
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    concurrency: int = 8
    lease_seconds: float = 60.0
    poll_interval: float = 1.0
    enabled: bool = True
    # Seconds one handler call may take before its attempt fails with reason ``timeout`` (a
    # route's own ``handler_timeout`` wins).
    handler_timeout: float = 30.0
    # Threads for sync handlers (0: as many as ``concurrency``). A sync handler past its timeout
    # keeps its thread until it returns: Python cannot stop a thread.
    handler_threads: int = 0
    # When the store fails, the dispatcher retries after this, doubling up to the cap, jittered.
    store_backoff_initial: float = 0.5
    store_backoff_max: float = 30.0

    @property
    def sync_threads(self) -> int:
        return self.handler_threads or self.concurrency


@dataclass(frozen=True)
class KeysConfig:
    file: Path = Path("keys.toml")
    quiet_period_hours: float = 24.0
    reload_interval: float = 1.0


@dataclass(frozen=True)
class RouteConfig:
    name: str
    path: str
    provider: Provider
    public_url: str
    kind: MetaStudioKind | None = None
    auth: MetaStudioAuth | None = None
    max_age: int = 300
    max_future_skew: int = 300
    allow_unsigned: bool = False
    handler_timeout: float | None = None
    """This route's events' handler timeout in seconds (None: ``dispatch.handler_timeout``)."""

    @property
    def describe(self) -> str:
        if self.provider == "sensetime":
            return "sensetime"
        return f"metastudio {self.kind} ({self.auth})"

    @property
    def carrier(self) -> Carrier:
        """Where a MetaStudio route's signature travels: the query (jobs, live) or headers."""
        if self.auth == "MSS_A_HEAD":
            return Carrier.HEADERS
        return Carrier.LIVE_QUERY if self.kind == "live" else Carrier.JOB_QUERY


@dataclass(frozen=True)
class Config:
    source: str
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    keys: KeysConfig = field(default_factory=KeysConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)
    handler_modules: tuple[str, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    sinks: tuple[SinkConfig, ...] = ()
    admin: AdminConfig | None = None
    """The operator console's listener; None: off."""
    base_dir: Path = field(default_factory=Path.cwd)
    """The folder relative paths in the file are resolved against (the config file's own)."""
    confirmation: ConfirmationSettings = field(default_factory=ConfirmationSettings)
    """``[metastudio_api]`` and each route's ``confirm`` (see callbacks/confirm/settings.py)."""

    def route(self, name: str) -> RouteConfig:
        for route in self.routes:
            if route.name == name:
                return route
        known = ", ".join(r.name for r in self.routes) or "none"
        raise KeyError(f"no route named {name!r} (routes: {known})")


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, check and return the configuration at ``path``, with environment overrides applied."""
    source = str(path)
    try:
        data = read_toml(Path(path))
    except TomlUnreadable as exc:
        raise ConfigError(source, "", exc.problem) from None
    return parse_config(data, source=source, base_dir=Path(path).parent, env=env)


def parse_config(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Build a :class:`Config` from already-parsed TOML data (for tests and embedding)."""
    reader = _Reader(source)
    env = os.environ if env is None else env
    base_dir = base_dir or Path.cwd()
    tables = {
        "server",
        "store",
        "keys",
        "dispatch",
        "handlers",
        "routes",
        "sinks",
        "metastudio_api",
        "admin",
    }
    reader.no_unknown(data, "", tables)

    server = _read_server(reader, reader.table(data, "server"), env.get(DEFAULT_HOST_ENV))
    store_table = reader.table(data, "store")
    reader.no_unknown(store_table, "store", {"url", "write_timeout"})
    store = StoreConfig(
        url=reader.string(store_table, "store.url", StoreConfig.url),
        write_timeout=reader.number(
            store_table, "store.write_timeout", StoreConfig.write_timeout, 0.05, 60
        ),
    )
    keys = _read_keys(reader, reader.table(data, "keys"), base_dir)
    dispatch = _read_dispatch(reader, reader.table(data, "dispatch"))
    handlers = reader.table(data, "handlers")
    reader.no_unknown(handlers, "handlers", {"modules"})
    modules = tuple(reader.string_list(handlers, "handlers.modules"))

    raw_routes = data.get("routes", [])
    if not isinstance(raw_routes, list):
        raise ConfigError(source, "routes", "must be an array of tables ([[routes]])")
    routes = tuple(_read_route(reader, raw, i) for i, raw in enumerate(raw_routes))
    _check_unique(reader, routes)
    sinks = read_sinks(data.get("sinks"), source=source, routes=[r.name for r in routes])

    config = Config(
        source=source,
        server=server,
        store=store,
        keys=keys,
        dispatch=dispatch,
        handler_modules=modules,
        routes=routes,
        sinks=sinks,
        admin=read_admin(data.get("admin"), source=source),
        base_dir=base_dir,
        confirmation=read_confirmation(data, source=source, base_dir=base_dir),
    )
    config = apply_env_overrides(config, env)
    _check_store_url(config)
    _check_admin_port(config)
    return config


def apply_env_overrides(config: Config, env: Mapping[str, str]) -> Config:
    """Single settings from the environment win over the file (containers, one-off runs)."""
    server = config.server
    src = "environment"
    if "CALLBACKS_HOST" in env:
        server = replace(server, host=env["CALLBACKS_HOST"])
    if "CALLBACKS_PORT" in env:
        server = replace(server, port=_env_int(env, "CALLBACKS_PORT", 1, 65535))
    if "CALLBACKS_WORKERS" in env:
        server = replace(server, workers=_env_int(env, "CALLBACKS_WORKERS", 1, 64))
    if "CALLBACKS_LOG_FORMAT" in env:
        fmt = env["CALLBACKS_LOG_FORMAT"]
        if fmt not in ("json", "console"):
            raise ConfigError(src, "CALLBACKS_LOG_FORMAT", "must be 'json' or 'console'")
        server = replace(server, log_format=fmt)  # type: ignore[arg-type]
    store = config.store
    if env.get("CALLBACKS_STORE_URL"):
        store = replace(store, url=env["CALLBACKS_STORE_URL"])
    keys = config.keys
    if env.get("CALLBACKS_KEYS_FILE"):
        keys = replace(keys, file=Path(env["CALLBACKS_KEYS_FILE"]))
    return replace(config, server=server, store=store, keys=keys)


def _env_int(env: Mapping[str, str], name: str, low: int, high: int) -> int:
    text = env[name]
    valid = text.isascii() and text.isdigit() and len(text) <= 18  # int() refuses > 4300 digits
    if not valid or not low <= int(text) <= high:
        raise ConfigError("environment", name, f"must be a whole number from {low} to {high}")
    return int(text)


def _read_server(
    reader: _Reader, table: Mapping[str, Any], default_host: str | None
) -> ServerConfig:
    reader.no_unknown(
        table,
        "server",
        {
            "host",
            "port",
            "workers",
            "body_limit",
            "log_format",
            "max_header_bytes",
            "header_timeout",
            "body_timeout",
            "max_connections",
            "keepalive_timeout",
        },
    )
    d = ServerConfig()
    log_format = reader.choice(table, "server.log_format", ("json", "console"), d.log_format)
    return ServerConfig(
        host=reader.string(table, "server.host", default_host or d.host),
        port=reader.integer(table, "server.port", d.port, 1, 65535),
        workers=reader.integer(table, "server.workers", d.workers, 1, 64),
        body_limit=reader.integer(table, "server.body_limit", d.body_limit, 1024, 64 << 20),
        log_format=log_format,  # type: ignore[arg-type]
        max_header_bytes=reader.integer(
            table, "server.max_header_bytes", d.max_header_bytes, 1024, 1 << 20
        ),
        header_timeout=reader.number(table, "server.header_timeout", d.header_timeout, 0.1, 300),
        body_timeout=reader.number(table, "server.body_timeout", d.body_timeout, 0.1, 300),
        max_connections=reader.integer(
            table, "server.max_connections", d.max_connections, 1, 1_000_000
        ),
        keepalive_timeout=reader.integer(
            table, "server.keepalive_timeout", d.keepalive_timeout, 1, 300
        ),
    )


def _read_keys(reader: _Reader, table: Mapping[str, Any], base_dir: Path) -> KeysConfig:
    reader.no_unknown(table, "keys", {"file", "quiet_period_hours", "reload_interval"})
    defaults = KeysConfig()
    file = Path(reader.string(table, "keys.file", str(defaults.file)))
    if not file.is_absolute():
        file = base_dir / file
    return KeysConfig(
        file=file,
        quiet_period_hours=reader.number(
            table, "keys.quiet_period_hours", defaults.quiet_period_hours, 0, 24 * 365
        ),
        reload_interval=reader.number(
            table, "keys.reload_interval", defaults.reload_interval, 0.1, 3600
        ),
    )


def _read_dispatch(reader: _Reader, table: Mapping[str, Any]) -> DispatchConfig:
    d = DispatchConfig()
    reader.no_unknown(
        table,
        "dispatch",
        {
            "max_attempts",
            "backoff_initial",
            "backoff_max",
            "concurrency",
            "lease_seconds",
            "poll_interval",
            "enabled",
            "handler_timeout",
            "handler_threads",
            "store_backoff_initial",
            "store_backoff_max",
        },
    )
    return DispatchConfig(
        max_attempts=reader.integer(table, "dispatch.max_attempts", d.max_attempts, 1, 1000),
        backoff_initial=reader.number(
            table, "dispatch.backoff_initial", d.backoff_initial, 0.001, 3600
        ),
        backoff_max=reader.number(table, "dispatch.backoff_max", d.backoff_max, 0.001, 86400),
        concurrency=reader.integer(table, "dispatch.concurrency", d.concurrency, 1, 1024),
        lease_seconds=reader.number(table, "dispatch.lease_seconds", d.lease_seconds, 1, 86400),
        poll_interval=reader.number(table, "dispatch.poll_interval", d.poll_interval, 0.01, 3600),
        enabled=reader.boolean(table, "dispatch.enabled", d.enabled),
        handler_timeout=reader.number(
            table, "dispatch.handler_timeout", d.handler_timeout, 0.01, 86400
        ),
        handler_threads=reader.integer(
            table, "dispatch.handler_threads", d.handler_threads, 0, 1024
        ),
        store_backoff_initial=reader.number(
            table, "dispatch.store_backoff_initial", d.store_backoff_initial, 0.01, 3600
        ),
        store_backoff_max=reader.number(
            table, "dispatch.store_backoff_max", d.store_backoff_max, 0.01, 3600
        ),
    )


def _read_route(reader: _Reader, raw: object, index: int) -> RouteConfig:
    at = f"routes[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(reader.source, at, "must be a table")
    allowed = {
        "name",
        "path",
        "provider",
        "public_url",
        "kind",
        "auth",
        "max_age",
        "max_future_skew",
        "allow_unsigned",
        "handler_timeout",
        *ROUTE_SETTINGS,
    }
    reader.no_unknown(raw, at, allowed)
    name = reader.required_string(raw, f"{at}.name")
    if not _ROUTE_NAME.fullmatch(name):  # match() would let "name\n" through ($)
        raise ConfigError(
            reader.source,
            f"{at}.name",
            "must be 1-64 characters of letters, digits, '_', '.', '-', starting alphanumeric",
        )
    at = f"routes[{index}] ({name})"
    path = reader.required_string(raw, f"{at}.path")
    if not path.startswith("/") or "?" in path or "#" in path:
        raise ConfigError(reader.source, f"{at}.path", "must start with '/' and have no query")
    provider = reader.choice(raw, f"{at}.provider", PROVIDERS, None)
    public_url = reader.required_string(raw, f"{at}.public_url")
    _check_public_url(reader, f"{at}.public_url", public_url)
    kind = auth = None
    if provider == "metastudio":
        kind = reader.choice(raw, f"{at}.kind", METASTUDIO_KINDS, None)
        default_auth = "NONE" if kind == "tts" else "MSS_A"
        auth = reader.choice(raw, f"{at}.auth", METASTUDIO_AUTHS, default_auth)
        if kind == "tts" and auth != "NONE":
            raise ConfigError(
                reader.source,
                f"{at}.auth",
                'async TTS jobs carry no signature: use auth = "NONE" (token URLs)',
            )
    else:
        for key in ("kind", "auth"):
            if key in raw:
                raise ConfigError(reader.source, f"{at}.{key}", "only applies to metastudio routes")
    return RouteConfig(
        name=name,
        path=path,
        provider=provider,  # type: ignore[arg-type]
        public_url=public_url,
        kind=kind,  # type: ignore[arg-type]
        auth=auth,  # type: ignore[arg-type]
        max_age=reader.integer(raw, f"{at}.max_age", 300, 1, 86400),
        max_future_skew=reader.integer(raw, f"{at}.max_future_skew", 300, 0, 86400),
        allow_unsigned=reader.boolean(raw, f"{at}.allow_unsigned", False),
        handler_timeout=(
            reader.number(raw, f"{at}.handler_timeout", 0, 0.01, 86400)
            if "handler_timeout" in raw
            else None
        ),
    )


def _check_public_url(reader: _Reader, setting: str, url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(reader.source, setting, f"is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            reader.source,
            setting,
            "must be the absolute http(s) URL configured at the platform, e.g. "
            "https://hooks.example.com/callbacks/sensetime",
        )
    if parts.fragment:
        raise ConfigError(reader.source, setting, "must not have a #fragment")
    try:
        canonical_uri(url)  # what MetaStudio signs; SenseTime signs the URL verbatim
    except ValueError as exc:
        raise ConfigError(reader.source, setting, str(exc)) from None


def _check_unique(reader: _Reader, routes: tuple[RouteConfig, ...]) -> None:
    names: set[str] = set()
    paths: set[str] = set()
    for route in routes:
        if route.name in names:
            raise ConfigError(reader.source, f"routes ({route.name})", "route name used twice")
        if route.path in paths:
            raise ConfigError(reader.source, f"routes ({route.name}).path", "path used twice")
        names.add(route.name)
        paths.add(route.path)


def _check_admin_port(config: Config) -> None:
    """The console never shares the callback port: a proxy exposing one must not expose both."""
    admin = config.admin
    if admin is not None and admin.overlaps(config.server.host, config.server.port):
        raise ConfigError(
            config.source,
            "admin.listen",
            f"{admin.listen} is the callback port; give the console a port of its own",
        )


def _check_store_url(config: Config) -> None:
    try:
        check_store_url(config.store.url)
    except ValueError as exc:
        raise ConfigError(config.source, "store.url", str(exc)) from None


@dataclass
class _Reader:
    """Typed access to raw TOML values, raising ConfigError with the setting's full name."""

    source: str

    def fail(self, setting: str, problem: str) -> ConfigError:
        return ConfigError(self.source, setting, problem)

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def no_unknown(self, table: Mapping[str, Any], at: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                name = f"{at}.{key}" if at else key
                raise self.fail(name, f"unknown setting (known: {', '.join(sorted(allowed))})")

    def _leaf(self, setting: str) -> str:
        return setting.rsplit(".", 1)[-1]

    def string(self, table: Mapping[str, Any], setting: str, default: str) -> str:
        value = table.get(self._leaf(setting), default)
        if not isinstance(value, str) or not value:
            raise self.fail(setting, "must be a non-empty string")
        return value

    def required_string(self, table: Mapping[str, Any], setting: str) -> str:
        if self._leaf(setting) not in table:
            raise self.fail(setting, "is required")
        return self.string(table, setting, "")

    def string_list(self, table: Mapping[str, Any], setting: str) -> list[str]:
        value = table.get(self._leaf(setting), [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(setting, "must be a list of non-empty strings")
        return value

    def choice(
        self, table: Mapping[str, Any], setting: str, options: tuple[str, ...], default: str | None
    ) -> str:
        leaf = self._leaf(setting)
        if leaf not in table and default is None:
            raise self.fail(setting, f"is required (one of: {', '.join(options)})")
        value = table.get(leaf, default)
        if value not in options:
            raise self.fail(setting, f"must be one of: {', '.join(options)}")
        return str(value)

    def integer(
        self, table: Mapping[str, Any], setting: str, default: int, low: int, high: int
    ) -> int:
        value = table.get(self._leaf(setting), default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(setting, f"must be a whole number from {low} to {high}")
        return value

    def number(
        self, table: Mapping[str, Any], setting: str, default: float, low: float, high: float
    ) -> float:
        value = table.get(self._leaf(setting), default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(setting, f"must be a number from {low} to {high}")
        if not low <= value <= high:
            raise self.fail(setting, f"must be a number from {low} to {high}")
        return float(value)

    def boolean(self, table: Mapping[str, Any], setting: str, default: bool) -> bool:
        value = table.get(self._leaf(setting), default)
        if not isinstance(value, bool):
            raise self.fail(setting, "must be true or false")
        return value
