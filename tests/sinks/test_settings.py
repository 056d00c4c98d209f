"""``[[sinks]]`` settings: what is accepted, what each mistake says, and that junk raises only
ConfigError; a missing client library is a start-up error naming the extra."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.config import Config, parse_config
from callbacks.errors import ConfigError
from callbacks.events import Event
from callbacks.handlers import Handlers
from callbacks.sinks.delivery import check_sinks, open_sinks, with_sinks
from callbacks.sinks.settings import SinkConfig, read_sinks

ROUTES = [
    {"name": n, "path": f"/cb/{n}", "provider": "sensetime", "public_url": f"https://h.example/{n}"}
    for n in ("st", "other")
]


def config(*sinks: dict[str, Any]) -> Config:
    return parse_config({"routes": ROUTES, "sinks": list(sinks)}, source="t.toml")


def test_every_engine_by_scheme() -> None:
    parsed = config(
        {"name": "a", "url": "nats://127.0.0.1:4222", "target": "avatar.callbacks"},
        {"name": "b", "url": "amqp://guest:guest@127.0.0.1/", "target": "events", "routes": ["st"]},
        {"name": "c", "url": "redis://127.0.0.1:6379/0", "target": "events", "maxlen": 1000},
        {"name": "d", "url": "https://hooks.example.com/in", "timeout": 2},
    )
    assert [s.engine for s in parsed.sinks] == ["nats", "rabbitmq", "redis", "http"]
    assert parsed.sinks[0].routes is None
    assert parsed.sinks[1].routes == frozenset({"st"})
    assert parsed.sinks[2].maxlen == 1000
    assert parsed.sinks[3].timeout == 2.0
    assert parsed.sinks[1].target_name == "sink:b"
    assert "guest" not in parsed.sinks[1].display_url


def test_no_sinks_is_the_default() -> None:
    assert parse_config({"routes": ROUTES}).sinks == ()


@pytest.mark.parametrize(
    ("sink", "setting", "says"),
    [
        ({"url": "nats://h", "target": "s"}, "sinks[0].name", "is required"),
        ({"name": "a", "target": "s"}, "sinks[0] (a).url", "is required"),
        ({"name": "a", "url": "kafka://h", "target": "s"}, "sinks[0] (a).url", "one of"),
        ({"name": "a", "url": "nats://", "target": "s"}, "sinks[0] (a).url", "with a host"),
        ({"name": "a", "url": "nats://h:x", "target": "s"}, "sinks[0] (a).url", "not a URL"),
        ({"name": "a", "url": "nats://h"}, "sinks[0] (a).target", "JetStream subject"),
        ({"name": "a", "url": "https://h", "target": "s"}, "sinks[0] (a).target", "HTTP"),
        (
            {"name": "a", "url": "nats://h", "target": "s", "maxlen": 5},
            "sinks[0] (a).maxlen",
            "redis",
        ),
        (
            {"name": "a", "url": "redis://h", "target": "s", "maxlen": 0},
            "sinks[0] (a).maxlen",
            "whole",
        ),
        (
            {"name": "a", "url": "nats://h", "target": "s", "routes": ["x"]},
            "sinks[0] (a).routes",
            "'x'",
        ),
        (
            {"name": "a", "url": "nats://h", "target": "s", "routes": []},
            "sinks[0] (a).routes",
            "non-empty",
        ),
        (
            {"name": "a", "url": "nats://h", "target": "s", "timeout": 0},
            "sinks[0] (a).timeout",
            "seconds",
        ),
        ({"name": "a", "url": "nats://h", "target": "s", "speed": 1}, "sinks[0].speed", "unknown"),
    ],
)
def test_each_mistake_names_its_setting(sink: dict[str, Any], setting: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config(sink)
    assert raised.value.setting == setting
    assert says in raised.value.problem


def test_a_name_used_twice() -> None:
    sink = {"name": "a", "url": "nats://h", "target": "s"}
    with pytest.raises(ConfigError, match="used twice"):
        config(sink, sink)


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
sink_tables = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=10) | toml_values,
        "url": st.sampled_from(["nats://h", "amqp://h", "redis://h", "http://h", "x://"])
        | st.text(max_size=20),
        "target": toml_values,
        "routes": st.lists(st.sampled_from(["st", "other", "nope"])) | toml_values,
        "timeout": toml_values,
        "maxlen": toml_values,
    },
)


@given(st.lists(sink_tables | toml_values, max_size=3) | toml_values)
def test_junk_raises_only_config_error(raw: object) -> None:
    try:
        sinks = read_sinks(raw, source="t.toml", routes=["st", "other"])
    except ConfigError:
        return
    assert all(isinstance(s, SinkConfig) for s in sinks)


@pytest.mark.parametrize(
    ("url", "library", "extra"),
    [
        ("nats://127.0.0.1", "nats", "nats"),
        ("amqp://127.0.0.1", "aio_pika", "rabbitmq"),
        ("redis://127.0.0.1", "redis", "redis"),
        ("http://127.0.0.1", "httpx", "http"),
    ],
)
def test_a_missing_client_library_names_its_extra(
    url: str, library: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink: dict[str, Any] = {"name": "bus", "url": url}
    if not url.startswith("http"):
        sink["target"] = "t"
    parsed = config(sink)
    monkeypatch.setitem(sys.modules, library, None)  # what `import` sees when it is not installed
    with pytest.raises(ConfigError) as raised:
        check_sinks(parsed)
    assert f"pip install 'avatar-callbacks[{extra}]'" in str(raised.value)
    assert raised.value.setting == "sinks (bus).url"


def test_sinks_join_the_handlers_under_their_own_names_and_routes() -> None:
    parsed = config({"name": "bus", "url": "nats://127.0.0.1", "target": "t", "routes": ["st"]})
    user = Handlers()
    combined = with_sinks(user, open_sinks(parsed))
    assert len(user) == 0  # the caller's registry is left as it was
    [registration] = combined.registrations
    assert registration.name == "sink:bus"
    assert registration.routes == frozenset({"st"})


def test_a_sink_receives_only_its_routes() -> None:
    parsed = config({"name": "bus", "url": "nats://127.0.0.1", "target": "t", "routes": ["st"]})
    registry = open_sinks(parsed).handlers()

    def on(route: str) -> list[str]:
        event = Event(delivery_id="d", route=route, provider="sensetime", key_id=None,
                      received_at=0.0, raw={})  # fmt: skip
        return [r.name for r in registry.for_event(event)]

    assert on("st") == ["sink:bus"]
    assert on("other") == []
