"""What every sink is: something that connects, sends one envelope at a time, and closes.

A sink never retries on its own: it raises :class:`SinkUnavailable` and the dispatcher retries the
event with backoff, as it does for a handler. :class:`SinkRejected` says retrying cannot help (an
HTTP 410, a message the broker refuses for good): the delivery is dead at once.
This module imports no backend.
"""

from __future__ import annotations

from typing import Protocol

from callbacks.errors import CallbacksError, DeliveryRefused
from callbacks.sinks.envelope import EventEnvelope


class SinkError(CallbacksError):
    """A sink could not take an envelope. Never carries a secret or the envelope itself."""


class SinkUnavailable(SinkError):
    """Not taken this time (connection down, timeout, 5xx): the event is retried."""


class SinkRejected(SinkError, DeliveryRefused):
    """Refused for good (HTTP 410, ...): the event's delivery to this sink is dead at once."""


class Sink(Protocol):
    """One configured sink. ``send`` returns only once the engine has the message (2xx, a
    JetStream ack, a publisher confirm, the XADD reply); it may be called concurrently."""

    name: str

    async def start(self) -> None:
        """Begin connecting; never waits for an engine that is down."""

    async def send(self, envelope: EventEnvelope) -> None:
        """Hand over one envelope, or raise a :class:`SinkError`."""

    async def close(self) -> None:
        """Let go of connections; sends in flight may fail."""
