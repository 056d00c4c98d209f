"""The handler registry: registration, matching by class, and loading from modules."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callbacks import handlers as handlers_module
from callbacks.errors import HandlerLoadError
from callbacks.events import (
    Event,
    MetaStudioJobResult,
    MetaStudioLiveEvent,
    ReplyCommandFinish,
    RtmpStreamStateChange,
    SenseTimeCallback,
)
from callbacks.handlers import Handlers, handler_name, load_handlers

COMMON: dict[str, Any] = {
    "delivery_id": "d1",
    "route": "r",
    "provider": "metastudio",
    "key_id": None,
    "received_at": 0.0,
    "raw": {},
}
JOB = MetaStudioJobResult(**COMMON, kind="video", job_id="j", result="SUCCEED")
RTMP = RtmpStreamStateChange(**COMMON, platform_event_type="RTMP_STREAM_STATE_CHANGE")
LIVE = MetaStudioLiveEvent(**COMMON, platform_event_type="OTHER")
SENSETIME = SenseTimeCallback(**{**COMMON, "provider": "sensetime"}, task_id="1")


def names(h: Handlers, event: Event) -> list[str]:
    return [r.name.rsplit(".", 1)[-1] for r in h.for_event(event)]


def test_decorator_registration_returns_the_function() -> None:
    h = Handlers()

    @h.on(MetaStudioJobResult)
    async def on_job(event: MetaStudioJobResult) -> None: ...

    assert on_job.__name__ == "on_job"  # still the function, usable and testable
    (reg,) = h.registrations
    assert reg.func is on_job
    assert reg.event_type is MetaStudioJobResult
    assert reg.name == f"{__name__}.{test_decorator_registration_returns_the_function.__name__}" + (
        ".<locals>.on_job"
    )
    assert len(h) == 1
    assert h.for_event(JOB) == [reg]
    assert h.for_event(SENSETIME) == []


def test_direct_registration() -> None:
    h = Handlers()

    def on_st(event: SenseTimeCallback) -> None: ...

    assert h.on(SenseTimeCallback, on_st) is on_st
    h.add(on_st, MetaStudioJobResult)
    assert names(h, SENSETIME) == ["on_st"]
    assert names(h, JOB) == ["on_st"]
    assert names(h, LIVE) == []


def test_catch_all_receives_every_event() -> None:
    h = Handlers()

    @h.on_any
    def audit(event: Event) -> None: ...

    def plain(event: Event) -> None: ...

    h.add(plain)  # add() defaults to every event
    for event in (JOB, RTMP, LIVE, SENSETIME):
        assert names(h, event) == ["audit", "plain"]


def test_handler_for_a_class_receives_its_subclasses() -> None:
    h = Handlers()

    @h.on(MetaStudioLiveEvent)
    def any_live(event: MetaStudioLiveEvent) -> None: ...

    @h.on(RtmpStreamStateChange)
    def rtmp_only(event: RtmpStreamStateChange) -> None: ...

    @h.on(ReplyCommandFinish)
    def reply_only(event: ReplyCommandFinish) -> None: ...

    assert names(h, RTMP) == ["any_live", "rtmp_only"]
    assert names(h, LIVE) == ["any_live"]
    assert names(h, JOB) == []


def test_a_handler_matching_twice_runs_once() -> None:
    h = Handlers()

    def both(event: Event) -> None: ...

    h.on(MetaStudioLiveEvent, both)
    h.on(RtmpStreamStateChange, both)
    h.on_any(both)
    assert len(h) == 3
    assert names(h, RTMP) == ["both"]


def test_duplicate_registration_is_refused() -> None:
    h = Handlers()

    def twice(event: Event) -> None: ...

    h.on(MetaStudioJobResult, twice)
    with pytest.raises(ValueError, match="already registered for MetaStudioJobResult"):
        h.on(MetaStudioJobResult, twice)
    h.on_any(twice)
    with pytest.raises(ValueError, match="already registered for Event"):
        h.on_any(twice)


def test_two_functions_with_one_name_are_refused() -> None:
    # Delivery state is kept per handler name: two functions under one name would share it and
    # the second would silently never run.
    h = Handlers()
    h.on_any(lambda event: None)
    with pytest.raises(ValueError, match="<lambda>"):
        h.on(MetaStudioJobResult, lambda event: None)

    def factory(tag: str) -> Any:
        def handle(event: Event) -> None: ...

        return handle

    h.on_any(factory("a"))
    with pytest.raises(ValueError, match=r"factory\.<locals>\.handle"):
        h.on(MetaStudioJobResult, factory("b"))
    assert len(h) == 2


@pytest.mark.parametrize("bad", [dict, "MetaStudioJobResult", JOB, None])
def test_non_event_class_is_refused(bad: Any) -> None:
    h = Handlers()
    with pytest.raises(TypeError, match="takes an event class"):
        h.on(bad)
    assert len(h) == 0


class Notifier:
    """A handler object: state is stored per handler name, so the name must not change."""

    async def __call__(self, event: Event) -> None: ...

    def method(self, event: Event) -> None: ...


def test_handler_names_are_stable_for_objects_and_methods() -> None:
    first, second = Notifier(), Notifier()
    assert handler_name(first) == f"{__name__}.Notifier"
    assert handler_name(first) == handler_name(second)  # the same in the next process
    assert "0x" not in handler_name(first)
    assert handler_name(first.method) == f"{__name__}.Notifier.method"

    h = Handlers()
    h.on(MetaStudioJobResult, first)
    h.on_any(first.method)
    h.on(SenseTimeCallback, first.method)  # a fresh bound method of the same object is fine
    assert names(h, JOB) == ["Notifier", "method"]


def test_include_merges_registries() -> None:
    a, b = Handlers(), Handlers()

    def one(event: Event) -> None: ...

    def two(event: Event) -> None: ...

    a.on(MetaStudioJobResult, one)
    b.on_any(two)
    combined = Handlers()
    combined.include(a)
    combined.include(b)
    assert names(combined, JOB) == ["one", "two"]
    assert names(combined, SENSETIME) == ["two"]
    with pytest.raises(ValueError, match="already registered"):
        combined.include(a)


# -- loading from modules ----------------------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("userhandlers_"):
            del sys.modules[name]


def write_module(folder: Path, source: str) -> str:
    name = f"userhandlers_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    return name


HANDLERS_MODULE = """
    from callbacks import Handlers, MetaStudioJobResult

    handlers = Handlers()

    @handlers.on(MetaStudioJobResult)
    async def publish(event):
        pass

    @handlers.on_any
    def audit(event):
        pass
"""


def test_load_handlers_from_a_module(module_dir: Path) -> None:
    name = write_module(module_dir, HANDLERS_MODULE)
    loaded = load_handlers([name], use_entry_points=False)
    assert [r.name for r in loaded.registrations] == [f"{name}.publish", f"{name}.audit"]
    assert names(loaded, JOB) == ["publish", "audit"]
    assert names(loaded, SENSETIME) == ["audit"]


def test_load_handlers_from_several_modules(module_dir: Path) -> None:
    first = write_module(module_dir, HANDLERS_MODULE)
    second = write_module(module_dir, HANDLERS_MODULE)
    loaded = load_handlers([first, second], use_entry_points=False)
    assert len(loaded) == 4
    assert load_handlers([], use_entry_points=False).registrations == ()


def test_missing_module(module_dir: Path) -> None:
    with pytest.raises(HandlerLoadError, match="'userhandlers_missing' cannot be imported"):
        load_handlers(["userhandlers_missing"], use_entry_points=False)


def test_module_failing_at_import(module_dir: Path) -> None:
    name = write_module(module_dir, "raise RuntimeError('no database url')\n")
    with pytest.raises(HandlerLoadError, match="RuntimeError: no database url") as info:
        load_handlers([name], use_entry_points=False)
    assert name in str(info.value)


@pytest.mark.parametrize("source", ["x = 1\n", "handlers = [print]\n"])
def test_module_without_a_handlers_registry(module_dir: Path, source: str) -> None:
    name = write_module(module_dir, source)
    with pytest.raises(HandlerLoadError, match=r"has no `handlers = Handlers\(\)` registry"):
        load_handlers([name], use_entry_points=False)


class FakeEntryPoint:
    def __init__(self, name: str, value: Any, error: Exception | None = None) -> None:
        self.name = name
        self.value = f"pkg.module:{name}"
        self._loaded = value
        self._error = error

    def load(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._loaded


def test_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Handlers()

    def from_plugin(event: Event) -> None: ...

    registry.on_any(from_plugin)
    groups: list[str] = []

    def fake_entry_points(*, group: str) -> list[FakeEntryPoint]:
        groups.append(group)
        return [FakeEntryPoint("plugin", registry)]

    monkeypatch.setattr(handlers_module, "entry_points", fake_entry_points)
    loaded = load_handlers([])
    assert groups == ["avatar_callbacks.handlers"]
    assert names(loaded, JOB) == ["from_plugin"]
    assert load_handlers([], use_entry_points=False).registrations == ()


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (FakeEntryPoint("broken", None, ImportError("no module x")), "cannot be loaded"),
        (FakeEntryPoint("wrong", object()), "is not a Handlers registry"),
    ],
)
def test_bad_entry_points(
    monkeypatch: pytest.MonkeyPatch, entry: FakeEntryPoint, problem: str
) -> None:
    monkeypatch.setattr(handlers_module, "entry_points", lambda *, group: [entry])
    with pytest.raises(HandlerLoadError, match=problem) as info:
        load_handlers([])
    assert entry.name in str(info.value)
