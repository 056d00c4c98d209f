"""Key rotation rules (callbacks.rotation), without the CLI around them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from callbacks.config import load_config
from callbacks.errors import ConfigError, KeyFileError
from callbacks.keyfile import KeyFile, read_key_file, update_key_file
from callbacks.rotation import KeyStillInUse, add_key, check_key, check_retirable, generate_key_for
from verify import InvalidKey

NOW = datetime(2026, 1, 31, tzinfo=UTC)
HOUR = 3600.0


def test_first_key_is_primary_then_next() -> None:
    keys = add_key(KeyFile(), "st", "FirstKey2026abcXYZ", now=NOW)
    keys = add_key(keys, "st", "SecondKey2026abcXYZ", now=NOW)
    assert [e.state for e in keys.for_route("st")] == ["primary", "next"]
    assert keys.primary("st") is not None
    assert keys.primary("st").secret == "FirstKey2026abcXYZ"  # type: ignore[union-attr]
    assert keys.primary("other") is None


def test_generated_keys_pass_their_platforms_check() -> None:
    check_key("sensetime", generate_key_for("sensetime"))
    check_key("metastudio", generate_key_for("metastudio"))
    either = generate_key_for(None)
    check_key("sensetime", either)
    check_key("metastudio", either)


@pytest.mark.parametrize("secret", ["", " Key2026abcXYZ", "nouppercase2026", "A" * 33])
def test_check_key_refuses_what_the_platform_would(secret: str) -> None:
    with pytest.raises(InvalidKey) as info:
        check_key("sensetime", secret)
    assert secret.strip() == "" or secret.strip() not in str(info.value)


def test_the_primary_key_is_never_retirable() -> None:
    keys = add_key(KeyFile(), "st", "FirstKey2026abcXYZ", now=NOW)
    (primary,) = keys.for_route("st")
    with pytest.raises(KeyStillInUse) as info:
        check_retirable(primary, last_verified_at=None, quiet_period=HOUR, now=NOW.timestamp())
    assert info.value.is_primary
    assert primary.secret not in str(info.value)


def test_a_key_is_retirable_once_quiet_for_the_whole_period() -> None:
    keys = add_key(
        add_key(KeyFile(), "st", "FirstKey2026abcXYZ", now=NOW), "st", "Next2026abcXYZ", now=NOW
    )
    spare = keys.for_route("st")[1]
    now = NOW.timestamp()
    with pytest.raises(KeyStillInUse) as info:
        check_retirable(spare, last_verified_at=now - HOUR + 1, quiet_period=HOUR, now=now)
    assert not info.value.is_primary
    assert info.value.last_verified_at == now - HOUR + 1
    check_retirable(spare, last_verified_at=now - HOUR, quiet_period=HOUR, now=now)
    check_retirable(spare, last_verified_at=None, quiet_period=HOUR, now=now)


def test_update_key_file_writes_the_change_and_reports_both_sides(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    before, after = update_key_file(
        path, lambda k: add_key(k, "st", "FirstKey2026abcXYZ", now=NOW), missing_ok=True
    )
    assert before.entries == ()
    assert read_key_file(path) == after
    with pytest.raises(KeyFileError, match="already has key"):
        update_key_file(path, lambda k: add_key(k, "st", "FirstKey2026abcXYZ", now=NOW))
    assert read_key_file(path) == after, "a refused change leaves the file as it was"


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "callbacks.toml"
    path.write_bytes(b'[server]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(path, env={})
