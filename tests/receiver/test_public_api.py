"""The public surface of ``callbacks``: exactly what it exports, and every name importable."""

from __future__ import annotations

import importlib

import pytest

import callbacks

PUBLIC = {
    "Accepted",
    "CallbacksError",
    "Config",
    "ConfigError",
    "DeadLetter",
    "Event",
    "HandlerLoadError",
    "Handlers",
    "InboundCallback",
    "KeyFile",
    "KeyFileError",
    "Lease",
    "MetaStudioJobResult",
    "MetaStudioLiveEvent",
    "MetaStudioTtsResult",
    "Outcome",
    "PermanentError",
    "ReplyCommandFinish",
    "RouteConfig",
    "RtmpStreamStateChange",
    "SenseTimeCallback",
    "ServingStore",
    "ShootScriptSwitch",
    "StoreUnavailable",
    "StoredEvent",
    "create_app",
    "load_config",
    "parse_config",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(callbacks.__all__) == PUBLIC
    assert len(callbacks.__all__) == len(PUBLIC)  # no name listed twice


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("callbacks")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from callbacks import {name}", namespace)  # noqa: S102 - a fixed, listed name
    assert namespace[name] is getattr(callbacks, name)


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from callbacks import *", namespace)  # noqa: S102
    assert set(namespace) - {"__builtins__"} == PUBLIC


def test_public_event_classes_are_events() -> None:
    for name in PUBLIC:
        obj = getattr(callbacks, name)
        if name.startswith(("MetaStudio", "SenseTime", "Rtmp", "Reply", "Shoot")):
            assert issubclass(obj, callbacks.Event)
    for error in (
        "ConfigError",
        "KeyFileError",
        "HandlerLoadError",
        "StoreUnavailable",
        "PermanentError",
    ):
        assert issubclass(getattr(callbacks, error), callbacks.CallbacksError)
