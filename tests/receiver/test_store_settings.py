"""``[store]`` settings: the write timeout's default, bounds, and the URL override keeping it."""

from __future__ import annotations

import pytest

from callbacks.config import StoreConfig, parse_config
from callbacks.errors import ConfigError


def test_write_timeout_defaults_well_under_the_platforms_wait() -> None:
    config = parse_config({}, env={})
    assert config.store.write_timeout == StoreConfig.write_timeout
    assert config.store.write_timeout < 3  # the platforms wait about 3 s for an answer


def test_write_timeout_is_read_and_survives_a_store_url_override() -> None:
    data = {"store": {"url": "sqlite:///a.db", "write_timeout": 0.5}}
    config = parse_config(data, env={"CALLBACKS_STORE_URL": "sqlite:///b.db"})
    assert config.store.url == "sqlite:///b.db"
    assert config.store.write_timeout == 0.5


@pytest.mark.parametrize("value", [0, -1, 61, "2", True])
def test_write_timeout_out_of_range_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"store\.write_timeout"):
        parse_config({"store": {"write_timeout": value}}, env={})
