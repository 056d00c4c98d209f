"""The key file's [metastudio_api] table: its shapes, the order of the sources, and the server's
credentials following the file, none of it ever repeating a secret."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.confirm.credentials import (
    AkSk,
    IamToken,
    credentials_from_table,
    key_file_credentials,
    masked_ak,
    with_key_file_credentials,
)
from callbacks.confirm.errors import ApiConfigurationError
from callbacks.confirm.live_credentials import LiveCredentials
from callbacks.confirm.settings import MetaStudioApiSettings, find_credentials
from callbacks.keyfile import KeyFile, read_key_file, update_key_file, write_key_file

SECRET = "SK-never-shown-41f0c9d2e7"
API = MetaStudioApiSettings(endpoint="https://metastudio.example.com", project_id="p")
ENV = {"CALLBACKS_METASTUDIO_AK": "ENVAK", "CALLBACKS_METASTUDIO_SK": "ENVSK"}


def test_the_shapes_a_table_may_have() -> None:
    assert credentials_from_table({"ak": "A1", "sk": SECRET}, "t") == AkSk("A1", SECRET)
    assert credentials_from_table({"token": SECRET}, "t") == IamToken(SECRET)
    assert credentials_from_table({}, "t") is None


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"ak": "A1"}, "needs both ak and sk"),
        ({"sk": SECRET}, "needs both ak and sk"),
        ({"ak": "A1", "sk": SECRET, "token": SECRET}, "not both"),
        ({"ak": "A1", "secret": SECRET}, "unknown field 'secret'"),
        ({"ak": "A1", "sk": ""}, "non-empty"),
        ({"ak": "A1", "sk": f" {SECRET}"}, "spaces"),
        ({"token": 42}, "non-empty string"),
        ({"ak": "A1", "sk": SECRET * 200}, "longer than"),
        ([SECRET], "must be a table"),
    ],
)
def test_mistakes_are_named_and_never_repeated(table: Any, problem: str) -> None:
    with pytest.raises(ApiConfigurationError, match=problem) as caught:
        credentials_from_table(table, "key file [metastudio_api]")
    assert SECRET not in f"{caught.value} {caught.value!r}"


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@given(
    st.dictionaries(st.sampled_from(["ak", "sk", "token", "key", "SK"]), json_like, max_size=4),
    st.sampled_from(["ak", "sk", "token", "secret"]),
    st.text(max_size=6),
)
def test_any_table_gives_credentials_or_an_error_without_the_secret(
    table: dict[str, Any], field: str, noise: str
) -> None:
    table = table | {field: noise + SECRET + noise}
    try:
        found = credentials_from_table(table, "t")
    except ApiConfigurationError as exc:
        shown = f"{exc} {exc!r}"
    else:
        shown = repr(found)
    assert SECRET not in shown


def test_the_table_round_trips_through_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    write_key_file(path, with_key_file_credentials(KeyFile(), AkSk("A1", SECRET)))
    update_key_file(path, lambda keys: keys)  # another command's rewrite
    assert key_file_credentials(read_key_file(path)) == AkSk("A1", SECRET)
    write_key_file(path, with_key_file_credentials(read_key_file(path), None))
    assert key_file_credentials(read_key_file(path)) is None


def test_the_ak_is_masked_to_a_hint() -> None:
    assert masked_ak("HPUAKEYFORTESTS0001") == "HPUA***01"
    assert masked_ak("SHORT") == "***"


def legacy_file(folder: Path) -> MetaStudioApiSettings:
    path = folder / "legacy.toml"
    path.write_text('token = "LEGACYTOKEN"\n')
    os.chmod(path, 0o600)
    return MetaStudioApiSettings(API.endpoint, "p", credentials_file=path)


def key_file(folder: Path, credentials: AkSk | IamToken | None) -> Path:
    path = folder / "keys.toml"
    write_key_file(path, with_key_file_credentials(KeyFile(), credentials))
    return path


def test_environment_then_key_file_then_credentials_file(tmp_path: Path) -> None:
    api = legacy_file(tmp_path)
    keys = key_file(tmp_path, AkSk("FILEAK", SECRET))
    assert find_credentials(api, ENV, keys).credentials == AkSk("ENVAK", "ENVSK")
    found = find_credentials(api, {}, keys)
    assert (found.source, found.credentials) == ("key_file", AkSk("FILEAK", SECRET))
    keys = key_file(tmp_path, None)
    found = find_credentials(api, {}, keys)
    assert (found.source, found.credentials) == ("credentials_file", IamToken("LEGACYTOKEN"))


def test_a_broken_table_is_an_error_not_a_fall_through(tmp_path: Path) -> None:
    api = legacy_file(tmp_path)
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[metastudio_api]\nak = "A1"\nsk = "{SECRET}"\nregion = "x"\n')
    os.chmod(keys, 0o600)
    with pytest.raises(ApiConfigurationError, match="unknown field 'region'") as caught:
        find_credentials(api, {}, keys)
    assert SECRET not in str(caught.value)


def test_the_servers_credentials_follow_the_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = key_file(tmp_path, AkSk("A1", "OLD-" + SECRET))
    live = LiveCredentials(API, {}, keys)
    assert live() == AkSk("A1", "OLD-" + SECRET)
    update_key_file(keys, lambda k: with_key_file_credentials(k, AkSk("A2", SECRET)))
    assert live() == AkSk("A2", SECRET)
    # A table broken by hand: logged, and the credentials last read stay in use.
    keys.write_text(keys.read_text().replace('ak = "A2"', 'ak = ""'))
    assert live() == AkSk("A2", SECRET)
    logged = capsys.readouterr()
    assert "metastudio_credentials_reload_failed" in logged.out + logged.err
    assert SECRET not in logged.out + logged.err


def test_credentials_from_the_environment_stay_whatever_the_file_says(tmp_path: Path) -> None:
    keys = key_file(tmp_path, AkSk("A1", SECRET))
    live = LiveCredentials(API, ENV, keys)
    update_key_file(keys, lambda k: with_key_file_credentials(k, IamToken("T")))
    assert (live(), live.source) == (AkSk("ENVAK", "ENVSK"), "environment")


def test_no_credentials_anywhere_stops_the_client_being_built(tmp_path: Path) -> None:
    with pytest.raises(ApiConfigurationError, match="keys metastudio set"):
        LiveCredentials(API, {}, tmp_path / "keys.toml")
