"""Where users plug in: a registry of functions to call for each kind of event.

    from callbacks import Handlers, MetaStudioJobResult

    handlers = Handlers()

    @handlers.on(MetaStudioJobResult)
    async def publish_video(event: MetaStudioJobResult) -> None:
        ...

    @handlers.on_any
    def audit(event) -> None:
        ...

A module named in ``[handlers] modules`` (or an entry point in the group
``avatar_callbacks.handlers``) exposes such a registry as ``handlers``. A handler registered for a
class also receives its subclasses. Handlers may be sync (run in a worker thread) or async.
Each call gets the event, whose ``delivery_id`` stays the same across retries and replays: use it to
make side effects idempotent.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, TypeVar, overload

from callbacks.errors import HandlerLoadError
from callbacks.events import Event

E = TypeVar("E", bound=Event)
HandlerFunc = Callable[[Any], Awaitable[None] | None]
F = TypeVar("F", bound=HandlerFunc)
ENTRY_POINT_GROUP = "avatar_callbacks.handlers"


@dataclass(frozen=True)
class Registration:
    name: str
    event_type: type[Event]
    func: HandlerFunc
    routes: frozenset[str] | None = None
    """Only events of these routes (None: every route); sinks use it for their ``routes``."""


def handler_name(func: Callable[..., Any]) -> str:
    """A stable name: delivery state is stored per handler name, so it must survive restarts."""
    module = getattr(func, "__module__", None) or "?"
    # A handler object has no __qualname__ of its own: name it by its class, not by its repr,
    # which holds a memory address that changes with every process.
    qualname = (
        getattr(func, "__qualname__", None)
        or getattr(type(func), "__qualname__", None)
        or repr(func)
    )
    return f"{module}.{qualname}"


class Handlers:
    def __init__(self) -> None:
        self._registrations: list[Registration] = []

    @overload
    def on(self, event_type: type[E]) -> Callable[[F], F]: ...

    @overload
    def on(self, event_type: type[E], func: F) -> F: ...

    def on(self, event_type: type[E], func: F | None = None) -> Callable[[F], F] | F:
        """Register ``func`` for ``event_type`` and its subclasses (decorator or direct call)."""
        if not (isinstance(event_type, type) and issubclass(event_type, Event)):
            raise TypeError("handlers.on() takes an event class, e.g. MetaStudioJobResult")

        def register(f: F) -> F:
            self.add(f, event_type)
            return f

        return register if func is None else register(func)

    def on_any(self, func: F) -> F:
        """Register a catch-all handler: it receives every event."""
        self.add(func, Event)
        return func

    def add(
        self,
        func: HandlerFunc,
        event_type: type[Event] = Event,
        *,
        name: str | None = None,
        routes: frozenset[str] | None = None,
    ) -> None:
        name = name or handler_name(func)
        if any(r.name == name and r.event_type is event_type for r in self._registrations):
            raise ValueError(f"handler {name} is already registered for {event_type.__name__}")
        if any(r.name == name and r.func != func for r in self._registrations):
            # State is kept per name: the second function would share it and never be called.
            raise ValueError(f"another handler is already registered as {name}: rename one")
        self._registrations.append(Registration(name, event_type, func, routes))

    def include(self, other: Handlers) -> None:
        for r in other._registrations:
            self.add(r.func, r.event_type, name=r.name, routes=r.routes)

    def for_event(self, event: Event) -> list[Registration]:
        seen: set[str] = set()
        out: list[Registration] = []
        for r in self._registrations:
            if (
                isinstance(event, r.event_type)
                and (r.routes is None or event.route in r.routes)
                and r.name not in seen
            ):
                seen.add(r.name)
                out.append(r)
        return out

    @property
    def registrations(self) -> tuple[Registration, ...]:
        return tuple(self._registrations)

    def __len__(self) -> int:
        return len(self._registrations)


def load_handlers(modules: Iterable[str], *, use_entry_points: bool = True) -> Handlers:
    """Collect the ``handlers`` registries of the configured modules and installed entry points."""
    combined = Handlers()
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise HandlerLoadError(
                f"handler module {module_name!r} cannot be imported: {type(exc).__name__}: {exc}"
            ) from exc
        registry = getattr(module, "handlers", None)
        if not isinstance(registry, Handlers):
            raise HandlerLoadError(
                f"handler module {module_name!r} has no `handlers = Handlers()` registry"
            )
        combined.include(registry)
    if use_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                registry = ep.load()
            except Exception as exc:
                raise HandlerLoadError(
                    f"entry point {ep.name!r} ({ep.value}) cannot be loaded: {exc}"
                ) from exc
            if not isinstance(registry, Handlers):
                raise HandlerLoadError(f"entry point {ep.name!r} is not a Handlers registry")
            combined.include(registry)
    return combined
