"""The one TOML reader behind the config and the key file: junk raises only our errors."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
from hypothesis import given
from hypothesis import strategies as st

from callbacks._toml import TomlUnreadable, read_toml
from callbacks.config import load_config
from callbacks.errors import CallbacksError, ConfigError, KeyFileError
from callbacks.keyfile import read_key_file

toml_ish = st.binary(max_size=200) | st.text(
    alphabet='[]="\n #.abk0129\\\xff\u00e9', max_size=120
).map(lambda t: t.encode("utf-8", "surrogatepass"))


def _file(data: bytes) -> Path:
    fd, name = tempfile.mkstemp(suffix=".toml")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(name, 0o600)
    return Path(name)


def _error_of(read: Callable[[], object]) -> CallbacksError | None:
    """The error ``read`` raised, if it is one of ours; any other escapes and fails the test."""
    try:
        read()
    except CallbacksError as exc:
        return exc
    return None


@given(toml_ish)
def test_junk_raises_only_toml_unreadable_and_each_reader_its_own_error(data: bytes) -> None:
    path = _file(data)
    try:
        raw = _error_of(lambda: read_toml(path))
        config = _error_of(lambda: load_config(path, env={}))
        keys = _error_of(lambda: read_key_file(path))
    finally:
        path.unlink()
    assert raw is None or (isinstance(raw, TomlUnreadable) and not raw.missing)
    assert config is None or (isinstance(config, ConfigError) and str(path) in str(config))
    assert keys is None or (isinstance(keys, KeyFileError) and str(path) in str(keys))
    if raw is not None:
        assert config is not None
        assert keys is not None, "both readers refuse what the reader cannot read"


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers() | st.text(max_size=8)))
def test_a_written_table_reads_back(table: dict[str, object]) -> None:
    path = _file(tomli_w.dumps(table).encode())
    try:
        assert read_toml(path) == table
    finally:
        path.unlink()


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(TomlUnreadable, match="file not found") as info:
        read_toml(tmp_path / "nope.toml")
    assert info.value.missing
