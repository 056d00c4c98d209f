"""What the dispatcher needs of confirmation: the one seam between them.

:class:`callbacks.confirm.gate.ConfirmationGate` is the implementation; the dispatcher names only
this protocol, so it imports nothing else of ``callbacks.confirm``.
"""

from __future__ import annotations

from typing import Protocol

from callbacks.confirm.rule import Verdict
from callbacks.events import Event


class ConfirmationSeam(Protocol):
    def applies(self, route: str) -> bool:
        """Whether events of ``route`` are confirmed before delivery."""

    async def screen(self, event: Event) -> Verdict:
        """Deliver (with the job details), refute, or wait: what to do with ``event`` now."""
