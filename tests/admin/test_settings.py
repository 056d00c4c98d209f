"""``[admin] listen``: off by default, never the callback port, junk refused as ConfigError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.admin.settings import AdminConfig, parse_listen, read_admin
from callbacks.config import parse_config
from callbacks.errors import ConfigError


def test_off_by_default() -> None:
    assert parse_config({}, env={}).admin is None
    assert parse_config({"admin": {}}, env={}).admin is None


def test_listen() -> None:
    config = parse_config({"admin": {"listen": "127.0.0.1:8001"}}, env={})
    assert config.admin == AdminConfig("127.0.0.1", 8001)
    assert parse_listen("[::1]:9000", source="x") == AdminConfig("::1", 9000)
    assert AdminConfig("::1", 9000).listen == "[::1]:9000"


@pytest.mark.parametrize(
    ("server", "listen"),
    [
        ({"port": 8000, "host": "127.0.0.1"}, "127.0.0.1:8000"),
        ({"port": 8000, "host": "0.0.0.0"}, "127.0.0.1:8000"),  # noqa: S104
        ({"port": 9000, "host": "127.0.0.1"}, "0.0.0.0:9000"),
    ],
)
def test_the_callback_port_is_refused(server: dict[str, object], listen: str) -> None:
    with pytest.raises(ConfigError, match=r"admin\.listen: .* is the callback port"):
        parse_config({"server": server, "admin": {"listen": listen}}, env={})


def test_the_port_from_the_environment_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="callback port"):
        parse_config({"admin": {"listen": "127.0.0.1:8001"}}, env={"CALLBACKS_PORT": "8001"})


@pytest.mark.parametrize(
    "table",
    [
        {"listen": 8001},
        {"listen": "8001"},
        {"listen": "localhost:"},
        {"listen": "localhost:0"},
        {"listen": "localhost:70000"},
        {"listen": ":8001"},
        {"listen": "h:8001", "token": "x"},
    ],
)
def test_bad_settings(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"admin": table}, env={})
    assert "admin." in str(refused.value)


@given(st.text(max_size=40))
def test_junk_listen_values_raise_only_config_error(text: str) -> None:
    try:
        parsed = read_admin({"listen": text}, source="x")
    except ConfigError:
        return
    assert parsed is not None
    assert 1 <= parsed.port <= 65535
    assert parsed.host


@given(st.integers(1, 65535), st.sampled_from(["127.0.0.1", "example.internal", "::1"]))
def test_listen_round_trips(port: int, host: str) -> None:
    parsed = parse_listen(AdminConfig(host, port).listen, source="x")
    assert parsed == AdminConfig(host, port)
