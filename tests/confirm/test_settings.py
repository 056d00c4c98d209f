"""[metastudio_api], per-route confirm modes, and credentials kept out of config and errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.config import parse_config
from callbacks.confirm.credentials import AkSk, IamToken
from callbacks.confirm.errors import ApiConfigurationError
from callbacks.confirm.settings import MetaStudioApiSettings, load_credentials
from callbacks.errors import ConfigError

API = {"endpoint": "https://metastudio.cn-north-4.myhuaweicloud.com", "project_id": "p0d69"}
SECRET_SK = "SK-do-not-print-0123456789"


def ms_route(name: str = "ms", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "path": f"/cb/{name}",
        "provider": "metastudio",
        "kind": "video",
        "public_url": f"https://hooks.example.com/cb/{name}",
    } | extra


def st_route(**extra: Any) -> dict[str, Any]:
    return {
        "name": "st",
        "path": "/cb/st",
        "provider": "sensetime",
        "public_url": "https://hooks.example.com/cb/st",
    } | extra


def config(routes: list[dict[str, Any]], api: dict[str, Any] | None = API) -> Any:
    data: dict[str, Any] = {"routes": routes}
    if api is not None:
        data["metastudio_api"] = api
    return parse_config(data, source="callbacks.toml", base_dir=Path("/etc/ac"), env={})


def test_metastudio_routes_default_to_required_when_the_api_is_configured() -> None:
    c = config([ms_route(), st_route()])
    assert c.confirmation.api is not None
    assert c.confirmation.api.endpoint == API["endpoint"]
    assert c.confirmation.for_route("ms").mode == "required"
    assert c.confirmation.for_route("st").mode == "off"
    assert c.confirmation.for_route("ms").reconcile_after == 600.0


def test_without_the_api_every_route_defaults_to_off() -> None:
    c = config([ms_route(), st_route()], api=None)
    assert c.confirmation.api is None
    assert not c.confirmation.for_route("ms").enabled


def test_explicit_modes_and_reconcile_after() -> None:
    c = config([ms_route(confirm="enrich", reconcile_after=0.5), ms_route("b", confirm="off")])
    assert c.confirmation.for_route("ms").mode == "enrich"
    assert c.confirmation.for_route("ms").reconcile_after == 0.5
    assert c.confirmation.for_route("b").mode == "off"


def test_sensetime_needs_a_confirmer_of_its_own() -> None:
    with pytest.raises(ConfigError, match=r"routes\[0\] \(st\)\.confirm: SenseTime has no query"):
        config([st_route(confirm="required")])
    c = config([st_route(confirmer="myapp.confirm:SoftSugar")])
    assert c.confirmation.for_route("st").mode == "required"
    assert c.confirmation.for_route("st").confirmer == "myapp.confirm:SoftSugar"


@pytest.mark.parametrize(
    ("routes", "api", "message"),
    [
        ([ms_route(confirm="required")], None, r"needs \[metastudio_api\]"),
        ([ms_route(confirm="always")], API, "must be one of: off, enrich, required"),
        ([ms_route(confirmer="not a path")], API, "import path"),
        ([ms_route(reconcile_after=0)], API, "reconcile_after: must be a number"),
        ([], {"project_id": "p"}, r"metastudio_api\.endpoint: is required"),
        ([], API | {"endpoint": "ftp://x"}, "base URL"),
        ([], API | {"endpoint": "https://x/v1"}, "base URL"),
        ([], API | {"project_id": "a/b"}, "project id"),
        ([], API | {"timeout": 0}, "timeout"),
        ([], API | {"max_concurrency": 2.5}, "whole number"),
        ([], API | {"colour": "red"}, "unknown setting"),
    ],
)
def test_mistakes_name_the_setting(routes: list[Any], api: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config(routes, api)


@pytest.mark.parametrize("key", ["ak", "sk", "token", "SK"])
def test_credentials_in_the_config_are_refused_without_repeating_them(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config([], API | {key: SECRET_SK})
    assert "credentials never go in the config" in str(caught.value)
    assert SECRET_SK not in str(caught.value)
    assert SECRET_SK not in repr(caught.value)


SETTINGS = MetaStudioApiSettings(endpoint=API["endpoint"], project_id="p")


def test_credentials_from_the_environment() -> None:
    ak = load_credentials(
        SETTINGS, {"CALLBACKS_METASTUDIO_AK": "A", "CALLBACKS_METASTUDIO_SK": "S"}
    )
    assert ak == AkSk("A", "S")
    assert load_credentials(SETTINGS, {"CALLBACKS_METASTUDIO_TOKEN": "T"}) == IamToken("T")
    assert "S" not in repr(ak).replace("AkSk", "")


def test_half_a_key_pair_is_a_configuration_error() -> None:
    with pytest.raises(ApiConfigurationError, match="credentials_incomplete") as caught:
        load_credentials(SETTINGS, {"CALLBACKS_METASTUDIO_SK": SECRET_SK})
    assert SECRET_SK not in str(caught.value)


def test_no_credentials_says_where_to_put_them() -> None:
    with pytest.raises(ApiConfigurationError, match="CALLBACKS_METASTUDIO_AK"):
        load_credentials(SETTINGS, {})


def test_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "ms.toml"
    path.write_text(f'[metastudio_api]\nak = "AK1"\nsk = "{SECRET_SK}"\n')
    os.chmod(path, 0o600)
    settings = MetaStudioApiSettings(API["endpoint"], "p", credentials_file=path)
    assert load_credentials(settings, {}) == AkSk("AK1", SECRET_SK)
    os.chmod(path, 0o644)
    with pytest.raises(ApiConfigurationError, match="credentials_file_unsafe"):
        load_credentials(settings, {})


@given(st.text(max_size=60))
def test_a_broken_credentials_file_never_leaks_its_content(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ms.toml"
        path.write_text(f"sk = {text}{SECRET_SK}\n", encoding="utf-8")
        os.chmod(path, 0o600)
        settings = MetaStudioApiSettings(API["endpoint"], "p", credentials_file=path)
        assert SECRET_SK not in _outcome(settings)


def _outcome(settings: MetaStudioApiSettings) -> str:
    """What a user could see: the credentials' repr, or the error's text and repr."""
    try:
        return repr(load_credentials(settings, {}))
    except ApiConfigurationError as exc:
        return f"{exc} {exc!r}"


toml_scalars = st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
api_keys = st.sampled_from(
    ["endpoint", "project_id", "credentials_file", "timeout", "max_concurrency", "retry_attempts",
     "region"]
)  # fmt: skip
route_keys = st.sampled_from(["confirm", "confirmer", "reconcile_after"])


@given(
    st.one_of(st.dictionaries(api_keys, toml_values, max_size=6), toml_values),
    st.dictionaries(route_keys, toml_values, max_size=3),
    st.sampled_from([None, "sk", "ak", "token", "Token"]),
)
def test_junk_settings_raise_only_config_errors(
    api: Any, extra: dict[str, Any], credential: str | None
) -> None:
    if credential and isinstance(api, dict):
        api = api | {credential: SECRET_SK}
    try:
        parsed = config([ms_route(**extra), st_route()], api)
    except ConfigError as exc:
        message = str(exc)
    else:
        message = parsed.confirmation.for_route("ms").mode
        assert message in ("off", "enrich", "required")
    assert SECRET_SK not in message
