"""Everything that runs after the 200, started and stopped together: the dispatcher with its
handlers and sinks, the confirmation gate, and the reconciler that polls for missing results.

The receiver runs one in its own process (``dispatch.enabled = true``, the default), handing each
new callback straight to its dispatcher. ``callbacks dispatch`` runs one with no HTTP listener,
beside receivers configured with ``dispatch.enabled = false``: they then only verify and store,
and this process claims the stored events from the shared store (docs/design.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from callbacks.config import Config
from callbacks.confirm.gate import build_gate, build_reconciler
from callbacks.dispatcher import Dispatcher
from callbacks.handlers import Handlers
from callbacks.intake import Intake
from callbacks.sinks.delivery import open_sinks, with_sinks
from callbacks.store.base import ServingStore


class Deliveries:
    """The delivery side of one process. With ``dispatch=False`` nothing is delivered here:
    the intake stores callbacks unclaimed, for a dispatcher elsewhere to claim."""

    def __init__(
        self,
        config: Config,
        store: ServingStore,
        handlers: Handlers,
        *,
        dispatch: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sinks = open_sinks(config)
        self.handlers = with_sinks(handlers, self.sinks)
        self.gate = build_gate(config) if dispatch else None
        routes = {r.name: r for r in config.routes}
        self.dispatcher = (
            Dispatcher(store, self.handlers, routes, config.dispatch, clock=clock, gate=self.gate)
            if dispatch
            else None
        )
        # The intake hands each new callback to this process's dispatcher; the reconciler
        # stores what it finds through it too, so such events are delivered the same way.
        self.intake = Intake(store, self.dispatcher, write_timeout=config.store.write_timeout)
        self.reconciler = build_reconciler(config, self.gate, self.intake)

    async def start(self) -> None:
        if self.dispatcher is not None:
            await self.sinks.start()
            self.dispatcher.start()
        if self.reconciler is not None:
            self.reconciler.start()

    async def stop(self) -> None:
        """Stop polling, let running handlers finish (up to their timeout), close the sinks."""
        if self.reconciler is not None:
            await self.reconciler.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.sinks.close()
        if self.gate is not None:
            await self.gate.aclose()
