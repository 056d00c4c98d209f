"""The configuration file: everything is checked at load, errors name the file and the setting."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbacks.config import (
    Config,
    DispatchConfig,
    KeysConfig,
    RouteConfig,
    ServerConfig,
    StoreConfig,
    load_config,
    parse_config,
)
from callbacks.errors import ConfigError
from callbacks.store import open_store

FULL: dict[str, Any] = {
    "server": {
        "host": "192.0.2.10",
        "port": 8080,
        "workers": 1,
        "body_limit": 2 * 1024 * 1024,
        "log_format": "console",
        "max_header_bytes": 16384,
        "header_timeout": 5,
        "body_timeout": 2.5,
        "max_connections": 200,
        "keepalive_timeout": 3,
    },
    "store": {"url": "sqlite:///data/callbacks.db"},
    "keys": {"file": "secrets/keys.toml", "quiet_period_hours": 12, "reload_interval": 2.5},
    "dispatch": {
        "max_attempts": 5,
        "backoff_initial": 0.5,
        "backoff_max": 60,
        "concurrency": 4,
        "lease_seconds": 30,
        "poll_interval": 0.25,
        "enabled": True,
    },
    "handlers": {"modules": ["myapp.handlers", "myapp.audit"]},
    "routes": [
        {
            "name": "sensetime",
            "path": "/callbacks/sensetime",
            "provider": "sensetime",
            "public_url": "https://hooks.example.com/callbacks/sensetime?tenant=a",
            "max_age": 120,
            "max_future_skew": 60,
            "allow_unsigned": False,
        },
        {
            "name": "metastudio-video",
            "path": "/callbacks/ms/video",
            "provider": "metastudio",
            "public_url": "https://hooks.example.com/callbacks/ms/video",
            "kind": "video",
            "auth": "MSS_A",
        },
        {
            "name": "metastudio-photo",
            "path": "/callbacks/ms/photo",
            "provider": "metastudio",
            "public_url": "https://hooks.example.com:8443/callbacks/ms/photo",
            "kind": "photo_video",
            "auth": "MSS_A_HEAD",
        },
        {
            "name": "metastudio-card",
            "path": "/callbacks/ms/card",
            "provider": "metastudio",
            "public_url": "https://hooks.example.com/callbacks/ms/card",
            "kind": "business_card",
        },
        {
            "name": "metastudio-subtitle",
            "path": "/callbacks/ms/subtitle",
            "provider": "metastudio",
            "public_url": "http://hooks.example.com/callbacks/ms/subtitle",
            "kind": "subtitle",
            "auth": "NONE",
        },
        {
            "name": "metastudio-tts",
            "path": "/callbacks/ms/tts",
            "provider": "metastudio",
            "public_url": "https://hooks.example.com/callbacks/ms/tts",
            "kind": "tts",
        },
        {
            "name": "metastudio.live_1",
            "path": "/callbacks/ms/live",
            "provider": "metastudio",
            "public_url": "https://hooks.example.com/callbacks/ms/live",
            "kind": "live",
            "auth": "MSS_A_HEAD",
        },
    ],
}


def full() -> dict[str, Any]:
    return copy.deepcopy(FULL)


def write(tmp_path: Path, data: dict[str, Any], name: str = "callbacks.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


# -- a valid file ------------------------------------------------------------------------------


def test_full_config_loads_every_setting_and_route_kind(tmp_path: Path) -> None:
    path = write(tmp_path, full())
    config = load_config(path, env={})

    assert config.source == str(path)
    assert config.server == ServerConfig(
        host="192.0.2.10",
        port=8080,
        workers=1,
        body_limit=2 * 1024 * 1024,
        log_format="console",
        max_header_bytes=16384,
        header_timeout=5.0,
        body_timeout=2.5,
        max_connections=200,
        keepalive_timeout=3,
    )
    assert config.store == StoreConfig(url="sqlite:///data/callbacks.db")
    assert config.keys == KeysConfig(
        file=tmp_path / "secrets" / "keys.toml", quiet_period_hours=12.0, reload_interval=2.5
    )
    assert config.dispatch == DispatchConfig(
        max_attempts=5,
        backoff_initial=0.5,
        backoff_max=60.0,
        concurrency=4,
        lease_seconds=30.0,
        poll_interval=0.25,
        enabled=True,
    )
    assert config.handler_modules == ("myapp.handlers", "myapp.audit")

    by_name = {r.name: r for r in config.routes}
    assert list(by_name) == [r["name"] for r in FULL["routes"]]
    st_route = by_name["sensetime"]
    assert st_route == RouteConfig(
        name="sensetime",
        path="/callbacks/sensetime",
        provider="sensetime",
        public_url="https://hooks.example.com/callbacks/sensetime?tenant=a",
        kind=None,
        auth=None,
        max_age=120,
        max_future_skew=60,
        allow_unsigned=False,
    )
    assert st_route.describe == "sensetime"
    kinds = {r.name: (r.kind, r.auth) for r in config.routes if r.provider == "metastudio"}
    assert kinds == {
        "metastudio-video": ("video", "MSS_A"),
        "metastudio-photo": ("photo_video", "MSS_A_HEAD"),
        "metastudio-card": ("business_card", "MSS_A"),  # default auth
        "metastudio-subtitle": ("subtitle", "NONE"),
        "metastudio-tts": ("tts", "NONE"),  # tts defaults to NONE
        "metastudio.live_1": ("live", "MSS_A_HEAD"),
    }
    assert by_name["metastudio-video"].describe == "metastudio video (MSS_A)"
    assert by_name["metastudio-video"].max_age == 300
    assert by_name["metastudio-video"].max_future_skew == 300
    assert config.route("metastudio-tts") is by_name["metastudio-tts"]


def test_unknown_route_name_lookup_lists_the_known_ones(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, full()), env={})
    with pytest.raises(KeyError, match="metastudio-video"):
        config.route("nope")


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("", encoding="utf-8")
    config = load_config(path, env={})
    assert config.server == ServerConfig()
    assert config.store == StoreConfig()
    assert config.dispatch == DispatchConfig()
    assert config.keys.file == tmp_path / "keys.toml"
    assert config.routes == ()
    assert config.handler_modules == ()


def test_relative_keys_file_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    data = full()
    data["keys"]["file"] = "../private/keys.toml"
    path = write(tmp_path, data, "etc/callbacks.toml")
    assert load_config(path, env={}).keys.file == tmp_path / "etc" / "../private/keys.toml"

    absolute = tmp_path / "elsewhere" / "k.toml"
    data["keys"]["file"] = str(absolute)
    path = write(tmp_path, data, "etc/callbacks.toml")
    assert load_config(path, env={}).keys.file == absolute


def test_parse_config_resolves_against_base_dir(tmp_path: Path) -> None:
    config = parse_config({"keys": {"file": "k.toml"}}, base_dir=tmp_path, env={})
    assert config.keys.file == tmp_path / "k.toml"
    assert config.source == "<config>"


# -- mistakes ----------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(*path: Any, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _delete(*path: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        target = data
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


MISTAKES: list[tuple[str, Mutation, str, str]] = [
    # unknown settings
    ("unknown-top", _set("serverr", value={}), "serverr", "unknown setting"),
    ("unknown-server", _set("server", "prot", value=1), "server.prot", "unknown setting"),
    ("unknown-store", _set("store", "urll", value="x"), "store.urll", "unknown setting"),
    ("unknown-keys", _set("keys", "path", value="k"), "keys.path", "unknown setting"),
    ("unknown-dispatch", _set("dispatch", "retries", value=3), "dispatch.retries", "unknown"),
    ("unknown-handlers", _set("handlers", "module", value=["m"]), "handlers.module", "unknown"),
    ("unknown-route", _set("routes", 1, "secret", value="x"), "routes[1].secret", "unknown"),
    # required settings
    ("no-name", _delete("routes", 1, "name"), "routes[1].name", "is required"),
    ("no-path", _delete("routes", 1, "path"), "routes[1] (metastudio-video).path", "required"),
    (
        "no-provider",
        _delete("routes", 0, "provider"),
        "routes[0] (sensetime).provider",
        "is required (one of: sensetime, metastudio)",
    ),
    (
        "no-public-url",
        _delete("routes", 0, "public_url"),
        "routes[0] (sensetime).public_url",
        "is required",
    ),
    ("no-kind", _delete("routes", 1, "kind"), "routes[1] (metastudio-video).kind", "required"),
    # wrong types and ranges
    ("port-text", _set("server", "port", value="8080"), "server.port", "whole number"),
    ("port-bool", _set("server", "port", value=True), "server.port", "whole number"),
    ("port-zero", _set("server", "port", value=0), "server.port", "from 1 to 65535"),
    ("port-float", _set("server", "port", value=80.0), "server.port", "whole number"),
    ("host-empty", _set("server", "host", value=""), "server.host", "non-empty string"),
    ("host-int", _set("server", "host", value=1), "server.host", "non-empty string"),
    ("log-format", _set("server", "log_format", value="xml"), "server.log_format", "json"),
    ("body-limit", _set("server", "body_limit", value=10), "server.body_limit", "from 1024"),
    (
        "header-bytes",
        _set("server", "max_header_bytes", value=10),
        "server.max_header_bytes",
        "from 1024",
    ),
    (
        "header-timeout",
        _set("server", "header_timeout", value=0),
        "server.header_timeout",
        "number from 0.1",
    ),
    ("body-timeout", _set("server", "body_timeout", value="5s"), "server.body_timeout", "number"),
    (
        "connections",
        _set("server", "max_connections", value=0),
        "server.max_connections",
        "from 1",
    ),
    (
        "keepalive",
        _set("server", "keepalive_timeout", value=0.5),
        "server.keepalive_timeout",
        "whole number",
    ),
    ("server-table", _set("server", value=3), "server", "must be a table"),
    ("store-url-int", _set("store", "url", value=5), "store.url", "non-empty string"),
    ("keys-file-list", _set("keys", "file", value=["a"]), "keys.file", "non-empty string"),
    ("reload", _set("keys", "reload_interval", value=0), "keys.reload_interval", "number"),
    ("quiet", _set("keys", "quiet_period_hours", value="1"), "keys.quiet_period_hours", "number"),
    ("enabled", _set("dispatch", "enabled", value="yes"), "dispatch.enabled", "true or false"),
    ("backoff", _set("dispatch", "backoff_max", value=True), "dispatch.backoff_max", "number"),
    ("nan", _set("dispatch", "backoff_initial", value=math.nan), "dispatch.backoff_initial", "num"),
    ("attempts", _set("dispatch", "max_attempts", value=0), "dispatch.max_attempts", "from 1"),
    ("modules-str", _set("handlers", "modules", value="m"), "handlers.modules", "list"),
    ("modules-empty", _set("handlers", "modules", value=[""]), "handlers.modules", "non-empty"),
    ("routes-table", _set("routes", value={"name": "x"}), "routes", "array of tables"),
    ("route-not-table", _set("routes", 2, value=7), "routes[2]", "must be a table"),
    (
        "max-age",
        _set("routes", 0, "max_age", value=0),
        "routes[0] (sensetime).max_age",
        "whole number from 1 to 86400",
    ),
    (
        "skew",
        _set("routes", 0, "max_future_skew", value=-1),
        "routes[0] (sensetime).max_future_skew",
        "whole number",
    ),
    (
        "unsigned",
        _set("routes", 0, "allow_unsigned", value=1),
        "routes[0] (sensetime).allow_unsigned",
        "true or false",
    ),
    # choices
    (
        "provider",
        _set("routes", 0, "provider", value="huawei"),
        "routes[0] (sensetime).provider",
        "must be one of: sensetime, metastudio",
    ),
    (
        "kind",
        _set("routes", 1, "kind", value="movie"),
        "routes[1] (metastudio-video).kind",
        "must be one of: video, photo_video",
    ),
    (
        "auth",
        _set("routes", 1, "auth", value="HMAC"),
        "routes[1] (metastudio-video).auth",
        "must be one of: MSS_A, MSS_A_HEAD, NONE",
    ),
    (
        "tts-mss-a",
        _set("routes", 5, "auth", value="MSS_A"),
        "routes[5] (metastudio-tts).auth",
        'use auth = "NONE"',
    ),
    (
        "tts-mss-a-head",
        _set("routes", 5, "auth", value="MSS_A_HEAD"),
        "routes[5] (metastudio-tts).auth",
        "carry no signature",
    ),
    (
        "sensetime-kind",
        _set("routes", 0, "kind", value="video"),
        "routes[0] (sensetime).kind",
        "only applies to metastudio routes",
    ),
    (
        "sensetime-auth",
        _set("routes", 0, "auth", value="NONE"),
        "routes[0] (sensetime).auth",
        "only applies to metastudio routes",
    ),
    # names, paths and URLs
    ("name-dash", _set("routes", 1, "name", value="-video"), "routes[1].name", "1-64 characters"),
    ("name-space", _set("routes", 1, "name", value="a b"), "routes[1].name", "1-64 characters"),
    ("name-newline", _set("routes", 1, "name", value="video\n"), "routes[1].name", "1-64"),
    ("name-long", _set("routes", 1, "name", value="a" * 65), "routes[1].name", "1-64"),
    (
        "path-relative",
        _set("routes", 1, "path", value="callbacks/video"),
        "routes[1] (metastudio-video).path",
        "must start with '/'",
    ),
    (
        "path-query",
        _set("routes", 1, "path", value="/callbacks/video?x=1"),
        "routes[1] (metastudio-video).path",
        "no query",
    ),
    (
        "url-relative",
        _set("routes", 1, "public_url", value="/callbacks/ms/video"),
        "routes[1] (metastudio-video).public_url",
        "absolute http(s) URL",
    ),
    (
        "url-ftp",
        _set("routes", 1, "public_url", value="ftp://hooks.example.com/video"),
        "routes[1] (metastudio-video).public_url",
        "absolute http(s) URL",
    ),
    (
        "url-no-host",
        _set("routes", 1, "public_url", value="https:///video"),
        "routes[1] (metastudio-video).public_url",
        "absolute http(s) URL",
    ),
    (
        "url-fragment",
        _set("routes", 1, "public_url", value="https://hooks.example.com/video#top"),
        "routes[1] (metastudio-video).public_url",
        "must not have a #fragment",
    ),
    (
        "url-bad-ipv6",
        _set("routes", 1, "public_url", value="https://[::1/video"),
        "routes[1] (metastudio-video).public_url",
        "is not a URL",
    ),
    (
        "dup-name",
        _set("routes", 2, "name", value="metastudio-video"),
        "routes (metastudio-video)",
        "route name used twice",
    ),
    (
        "dup-path",
        _set("routes", 2, "path", value="/callbacks/ms/video"),
        "routes (metastudio-photo).path",
        "path used twice",
    ),
    # the store
    ("store-scheme", _set("store", "url", value="mysql://db/x"), "store.url", "sqlite://"),
    ("store-file", _set("store", "url", value="callbacks.db"), "store.url", "postgresql://"),
]


@pytest.mark.parametrize(
    ("mutate", "setting", "problem"),
    [pytest.param(m, s, p, id=i) for i, m, s, p in MISTAKES],
)
def test_mistake_names_file_setting_and_problem(
    tmp_path: Path, mutate: Mutation, setting: str, problem: str
) -> None:
    data = full()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    err = info.value
    assert err.source == str(path)
    assert err.setting == setting
    assert problem in err.problem
    assert str(err) == f"{path}: {setting}: {err.problem}"


@pytest.mark.parametrize("url", ["postgresql://db.internal/callbacks", "sqlite:///callbacks.db"])
def test_several_workers_are_fine_with_either_store(tmp_path: Path, url: str) -> None:
    data = full()
    data["server"]["workers"] = 4
    data["store"]["url"] = url
    config = load_config(write(tmp_path, data), env={})
    assert config.server.workers == 4
    assert config.store.url == url


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[server\nport = 80\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, env={})
    assert info.value.source == str(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(path, env={})
    assert str(info.value).startswith(str(path))


def test_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path, env={})  # a directory


# -- environment overrides ---------------------------------------------------------------------


def test_env_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, full())
    config = load_config(
        path,
        env={
            "CALLBACKS_STORE_URL": "postgresql://db/callbacks",
            "CALLBACKS_PORT": "9000",
            "CALLBACKS_HOST": "127.0.0.2",
            "CALLBACKS_WORKERS": "3",
            "CALLBACKS_KEYS_FILE": "/run/secrets/keys.toml",
            "CALLBACKS_LOG_FORMAT": "json",
            "UNRELATED": "x",
        },
    )
    assert config.store.url == "postgresql://db/callbacks"
    assert config.server.port == 9000
    assert config.server.host == "127.0.0.2"
    assert config.server.workers == 3
    assert config.keys.file == Path("/run/secrets/keys.toml")
    assert config.keys.quiet_period_hours == 12.0  # the rest of [keys] is kept
    assert config.server.log_format == "json"


def test_default_host_from_env_applies_only_when_the_file_names_none(tmp_path: Path) -> None:
    env = {"CALLBACKS_DEFAULT_HOST": "192.0.2.99"}  # the image's is 0.0.0.0
    assert load_config(write(tmp_path, full()), env=env).server.host == "192.0.2.10"
    silent = full()
    del silent["server"]["host"]
    assert load_config(write(tmp_path, silent), env=env).server.host == "192.0.2.99"
    assert load_config(write(tmp_path, silent), env={}).server.host == "127.0.0.1"
    both = {**env, "CALLBACKS_HOST": "127.0.0.3"}
    assert load_config(write(tmp_path, silent), env=both).server.host == "127.0.0.3"


def test_empty_env_values_are_ignored_for_store_and_keys(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, full()), env={"CALLBACKS_STORE_URL": "", "CALLBACKS_KEYS_FILE": ""}
    )
    assert config.store.url == "sqlite:///data/callbacks.db"
    assert config.keys.file == tmp_path / "secrets" / "keys.toml"


def test_env_is_read_from_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBACKS_PORT", "8123")
    assert load_config(write(tmp_path, full())).server.port == 8123


@pytest.mark.parametrize(
    "value", ["0", "65536", "abc", "", " 80", "80 ", "-1", "8e3", "٣", "9" * 5000]
)
def test_invalid_port_from_env(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, full()), env={"CALLBACKS_PORT": value})
    assert info.value.source == "environment"
    assert info.value.setting == "CALLBACKS_PORT"
    assert "from 1 to 65535" in str(info.value)


def test_invalid_log_format_from_env(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CALLBACKS_LOG_FORMAT: must be 'json' or 'console'"):
        load_config(write(tmp_path, full()), env={"CALLBACKS_LOG_FORMAT": "text"})


def test_env_store_url_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store\.url: must start with sqlite://"):
        load_config(write(tmp_path, full()), env={"CALLBACKS_STORE_URL": "redis://x"})


@pytest.mark.parametrize("url", ["sqlite://callbacks.db", "sqlite://", "sqlite:///"])
def test_a_malformed_sqlite_url_is_refused_with_the_config_not_at_start(
    tmp_path: Path, url: str
) -> None:
    """The same rule as the store factory's: the mistake is named before the server starts."""
    with pytest.raises(ConfigError, match=r"store\.url: a SQLite store URL looks like sqlite:///"):
        load_config(write(tmp_path, full()), env={"CALLBACKS_STORE_URL": url})
    with pytest.raises(ValueError, match="looks like sqlite:///"):
        open_store(url)


def test_env_workers_with_sqlite_taken(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, full()), env={"CALLBACKS_WORKERS": "2"})
    assert config.store.is_sqlite
    assert config.server.workers == 2


# -- nothing but ConfigError, whatever the data --------------------------------------------------

_KEYS = st.sampled_from(
    [
        "server",
        "store",
        "keys",
        "dispatch",
        "handlers",
        "routes",
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
        "url",
        "file",
        "quiet_period_hours",
        "reload_interval",
        "max_attempts",
        "backoff_initial",
        "backoff_max",
        "concurrency",
        "lease_seconds",
        "poll_interval",
        "enabled",
        "modules",
        "name",
        "path",
        "provider",
        "public_url",
        "kind",
        "auth",
        "max_age",
        "max_future_skew",
        "allow_unsigned",
    ]
) | st.text(max_size=8)

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "sensetime",
            "metastudio",
            "video",
            "tts",
            "live",
            "MSS_A",
            "MSS_A_HEAD",
            "NONE",
            "json",
            "console",
            "/cb",
            "/cb/x",
            "https://h.example/cb",
            "http://[::1",
            "ftp://h/x",
            "sqlite:///x.db",
            "postgresql://h/db",
            "route-1",
            "k.toml",
        ]
    )
    | st.sampled_from(["", 1, 2, 8080, 0.5])
)

_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=3),
    max_leaves=6,
)
_TABLES = st.dictionaries(_KEYS, _VALUES, max_size=6)
_DOCUMENTS = st.dictionaries(
    _KEYS, _VALUES | _TABLES | st.lists(_TABLES | _VALUES, max_size=3), max_size=6
)


def _check_only_config_errors(data: dict[str, Any]) -> None:
    error: ConfigError | None = None
    try:
        config = parse_config(data, source="fuzz.toml", base_dir=Path("/srv"), env={})
    except ConfigError as exc:
        error = exc
    if error is None:
        assert isinstance(config, Config)
    else:
        assert error.source in ("fuzz.toml", "environment")
        assert str(error)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS)
def test_arbitrary_data_raises_only_config_error(data: dict[str, Any]) -> None:
    _check_only_config_errors(data)


def _leaf_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            paths += _leaf_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            paths += _leaf_paths(v, (*prefix, i))
    return paths


_FULL_PATHS = _leaf_paths(FULL)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(_FULL_PATHS), _VALUES), min_size=1, max_size=3),
    st.lists(st.tuples(st.sampled_from(_FULL_PATHS), _KEYS, _VALUES), max_size=2),
)
def test_valid_file_with_arbitrary_replacements_raises_only_config_error(
    replacements: list[tuple[tuple[Any, ...], Any]],
    additions: list[tuple[tuple[Any, ...], str, Any]],
) -> None:
    data = full()
    for path, value in replacements:
        with contextlib.suppress(KeyError, IndexError, TypeError):  # an earlier one removed it
            _set(*path, value=value)(data)
    for path, key, value in additions:
        target: Any = data
        try:
            for part in path:
                target = target[part]
        except (KeyError, IndexError, TypeError):
            continue
        if isinstance(target, dict):
            target[key] = value
    _check_only_config_errors(data)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://user:pw@hooks.example.com/cb", "user information"),
        ("https://hooks.example.com:abc/cb", "port"),
    ],
)
def test_public_url_the_signers_cannot_use_is_refused_at_load(url: str, problem: str) -> None:
    route = {
        "name": "v",
        "path": "/v",
        "provider": "metastudio",
        "kind": "video",
        "public_url": url,
    }
    with pytest.raises(ConfigError) as info:
        parse_config({"routes": [route]})
    assert "routes[0] (v).public_url" in str(info.value)
    assert problem in str(info.value)
