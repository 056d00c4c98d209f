"""Confirmation settings: ``[metastudio_api]`` and each route's ``confirm`` mode.

```toml
[metastudio_api]
endpoint = "https://metastudio.cn-north-4.myhuaweicloud.com"
project_id = "0d697589d98091f12f92c0073501cd79"
# credentials_file = "ms-credentials.toml"  # legacy; use `callbacks keys metastudio set`

[[routes]]
name = "metastudio-video"
confirm = "required"            # off | enrich | required
reconcile_after = 600           # seconds before an expected job is polled
# confirmer = "myapp.confirm:SoftSugarConfirmer"   # any route: a confirmer of your own
```

A MetaStudio route's ``confirm`` defaults to ``required`` when ``[metastudio_api]`` is there,
else ``off``; a SenseTime route's to ``required`` when it names a ``confirmer``, else ``off``.
Credentials are never in the config file. :func:`find_credentials` looks, in this order, in
the environment (``CALLBACKS_METASTUDIO_AK`` + ``CALLBACKS_METASTUDIO_SK``, or
``CALLBACKS_METASTUDIO_TOKEN``), the key file's ``[metastudio_api]`` table (``callbacks keys
metastudio set``), then the legacy private ``credentials_file``; the first that has any wins.
No error here ever repeats a value it refuses.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from callbacks.confirm.credentials import (
    KEY_FILE_TABLE,
    AkSk,
    Credentials,
    IamToken,
    credentials_from_table,
    key_file_credentials,
)
from callbacks.confirm.errors import ApiConfigurationError
from callbacks.errors import ConfigError, KeyFileError
from callbacks.keyfile import read_key_file

ConfirmMode = Literal["off", "enrich", "required"]
CONFIRM_MODES: tuple[str, ...] = ("off", "enrich", "required")
ROUTE_SETTINGS: frozenset[str] = frozenset({"confirm", "confirmer", "reconcile_after"})
TABLE = "metastudio_api"
ENV_AK, ENV_SK, ENV_TOKEN = (
    "CALLBACKS_METASTUDIO_AK",
    "CALLBACKS_METASTUDIO_SK",
    "CALLBACKS_METASTUDIO_TOKEN",
)
DEFAULT_RECONCILE_AFTER = 600.0
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_CREDENTIAL_NAMES = {"ak", "sk", "token", "access_key", "secret_key", "password"}


@dataclass(frozen=True)
class MetaStudioApiSettings:
    endpoint: str
    project_id: str
    credentials_file: Path | None = None
    timeout: float = 10.0
    max_concurrency: int = 16
    retry_attempts: int = 4


@dataclass(frozen=True)
class RouteConfirmation:
    mode: ConfirmMode = "off"
    confirmer: str | None = None
    """``module:attribute`` of a user's confirmer; ``None`` means the built-in one (MetaStudio)."""
    reconcile_after: float = DEFAULT_RECONCILE_AFTER

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


@dataclass(frozen=True)
class ConfirmationSettings:
    api: MetaStudioApiSettings | None = None
    routes: Mapping[str, RouteConfirmation] = field(default_factory=dict)

    def for_route(self, name: str) -> RouteConfirmation:
        return self.routes.get(name, RouteConfirmation())


def read_confirmation(
    data: Mapping[str, Any],
    *,
    source: str,
    base_dir: Path,
) -> ConfirmationSettings:
    """The confirmation settings of a parsed config file (already checked by ``config.py``)."""
    api = _read_api(data.get(TABLE), source, base_dir)
    routes: dict[str, RouteConfirmation] = {}
    raw_routes = data.get("routes", [])
    for index, raw in enumerate(raw_routes if isinstance(raw_routes, list) else []):
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            at = f"routes[{index}] ({raw['name']})"
            routes[raw["name"]] = _read_route(raw, at, api, source)
    return ConfirmationSettings(api=api, routes=routes)


def _read_api(table: object, source: str, base_dir: Path) -> MetaStudioApiSettings | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(source, TABLE, "must be a table")
    for key in table:
        if key.lower() in _CREDENTIAL_NAMES:
            raise ConfigError(
                source,
                f"{TABLE}.{key}",
                "credentials never go in the config: run `callbacks keys metastudio set` (the key "
                f"file), or set {ENV_AK} and {ENV_SK} (or {ENV_TOKEN})",
            )
    known = {"endpoint", "project_id", "credentials_file", "timeout", "max_concurrency",
             "retry_attempts"}  # fmt: skip
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            source, f"{TABLE}.{unknown[0]}", f"unknown setting (known: {', '.join(sorted(known))})"
        )
    endpoint = _string(table, "endpoint", source, required=True)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ConfigError(
            source,
            f"{TABLE}.endpoint",
            "must be the API's base URL, e.g. https://metastudio.cn-north-4.myhuaweicloud.com",
        )
    project_id = _string(table, "project_id", source, required=True)
    if "/" in project_id or not project_id.isprintable():
        raise ConfigError(source, f"{TABLE}.project_id", "must be a project id (IAM console)")
    credentials_file = None
    if "credentials_file" in table:
        credentials_file = Path(_string(table, "credentials_file", source, required=True))
        if not credentials_file.is_absolute():
            credentials_file = base_dir / credentials_file
    return MetaStudioApiSettings(
        endpoint=endpoint.rstrip("/"),
        project_id=project_id,
        credentials_file=credentials_file,
        timeout=_number(table, "timeout", 10.0, 0.1, 300.0, source),
        max_concurrency=int(_number(table, "max_concurrency", 16, 1, 1024, source, whole=True)),
        retry_attempts=int(_number(table, "retry_attempts", 4, 1, 20, source, whole=True)),
    )


def _read_route(
    raw: Mapping[str, Any], at: str, api: MetaStudioApiSettings | None, source: str
) -> RouteConfirmation:
    confirmer = None
    if "confirmer" in raw:
        confirmer = raw["confirmer"]
        if not isinstance(confirmer, str) or not _IMPORT_PATH.fullmatch(confirmer):
            raise ConfigError(source, f"{at}.confirmer", "must be an import path 'module:name'")
    is_metastudio = raw.get("provider") == "metastudio"
    default = "required" if (confirmer or (is_metastudio and api is not None)) else "off"
    mode = raw.get("confirm", default)
    if mode not in CONFIRM_MODES:
        raise ConfigError(source, f"{at}.confirm", f"must be one of: {', '.join(CONFIRM_MODES)}")
    if mode != "off" and confirmer is None:
        if not is_metastudio:
            raise ConfigError(
                source,
                f"{at}.confirm",
                "SenseTime has no query API in our documents: name a confirmer = 'module:name' "
                "of your own, or use confirm = 'off'",
            )
        if api is None:
            raise ConfigError(
                source, f"{at}.confirm", f"needs [{TABLE}] (endpoint, project_id) to ask the API"
            )
    reconcile_after = _number(
        raw, "reconcile_after", DEFAULT_RECONCILE_AFTER, 0.01, 30 * 86400.0, source, at=at
    )
    return RouteConfirmation(mode=mode, confirmer=confirmer, reconcile_after=reconcile_after)


@dataclass(frozen=True)
class FoundCredentials:
    credentials: Credentials = field(repr=False)
    source: Literal["environment", "key_file", "credentials_file"]
    where: str
    """Where they were found, for operators: the variables' names or the file's path."""


def load_credentials(
    api: MetaStudioApiSettings,
    env: Mapping[str, str] | None = None,
    key_file: Path | None = None,
) -> Credentials:
    """The API credentials (see :func:`find_credentials`)."""
    return find_credentials(api, env, key_file).credentials


def find_credentials(
    api: MetaStudioApiSettings,
    env: Mapping[str, str] | None = None,
    key_file: Path | None = None,
) -> FoundCredentials:
    """The API credentials and where they come from: the environment, then ``key_file``'s
    ``[metastudio_api]`` table, then ``api.credentials_file``.

    Raises :class:`ApiConfigurationError` when there are none or they are malformed; the message
    names where to put them, never a value.
    """
    found = environment_credentials(env) or key_file_found(key_file) or credentials_file_found(api)
    if found is not None:
        return found
    raise ApiConfigurationError(
        "no_credentials",
        "run `callbacks keys metastudio set` (the key file), or set "
        f"{ENV_AK} and {ENV_SK} (or {ENV_TOKEN})",
    )


def environment_credentials(env: Mapping[str, str] | None = None) -> FoundCredentials | None:
    """The credentials the environment gives, if it gives any (they win over every file)."""
    env = os.environ if env is None else env
    ak, sk, token = env.get(ENV_AK), env.get(ENV_SK), env.get(ENV_TOKEN)
    if ak or sk:
        if not (ak and sk):
            raise ApiConfigurationError("credentials_incomplete", f"set both {ENV_AK} and {ENV_SK}")
        return FoundCredentials(AkSk(ak, sk), "environment", f"{ENV_AK}, {ENV_SK}")
    if token:
        return FoundCredentials(IamToken(token), "environment", ENV_TOKEN)
    return None


def key_file_found(key_file: Path | None) -> FoundCredentials | None:
    """The credentials in the key file's ``[metastudio_api]`` table, if it has them."""
    if key_file is None:
        return None
    try:
        credentials = key_file_credentials(read_key_file(key_file, missing_ok=True))
    except KeyFileError as exc:  # its messages name fields and paths, never values
        raise ApiConfigurationError("key_file_unreadable", str(exc)) from None
    if credentials is None:
        return None
    return FoundCredentials(credentials, "key_file", f"{key_file} [{KEY_FILE_TABLE}]")


def credentials_file_found(api: MetaStudioApiSettings) -> FoundCredentials | None:
    """The credentials in the legacy ``credentials_file``, when the config names one."""
    path = api.credentials_file
    if path is None:
        return None
    return FoundCredentials(_read_credentials_file(path), "credentials_file", str(path))


def _read_credentials_file(path: Path) -> Credentials:
    try:
        st = path.stat()
    except OSError:
        raise ApiConfigurationError("credentials_file_missing", str(path)) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ApiConfigurationError(
            "credentials_file_unsafe", f"{path} is readable by others; run `chmod 600 {path}`"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        # The TOML decoder's message names a line and column, never the value.
        raise ApiConfigurationError("credentials_file_unreadable", type(exc).__name__) from None
    table = data.get(TABLE, data)
    if not isinstance(table, dict):
        raise ApiConfigurationError("credentials_file_malformed", f"[{TABLE}] must be a table")
    # The file may hold other things beside the credentials: only these three are read.
    credentials = credentials_from_table(
        {name: table[name] for name in ("ak", "sk", "token") if name in table}, str(path)
    )
    if credentials is None:
        raise ApiConfigurationError(
            "credentials_file_malformed", f"{path}: needs ak and sk (strings), or token"
        )
    return credentials


def _string(table: Mapping[str, Any], key: str, source: str, *, required: bool) -> str:
    value = table.get(key)
    if value is None and required:
        raise ConfigError(source, f"{TABLE}.{key}", "is required")
    if not isinstance(value, str) or not value:
        raise ConfigError(source, f"{TABLE}.{key}", "must be a non-empty string")
    return value


def _number(
    table: Mapping[str, Any],
    key: str,
    default: float,
    low: float,
    high: float,
    source: str,
    *,
    whole: bool = False,
    at: str = TABLE,
) -> float:
    value = table.get(key, default)
    what = "whole number" if whole else "number"
    problem = f"must be a {what} from {low:g} to {high:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(source, f"{at}.{key}", problem)
    if (whole and not isinstance(value, int)) or not low <= value <= high:
        raise ConfigError(source, f"{at}.{key}", problem)
    return float(value)
