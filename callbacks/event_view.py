"""How a stored event is shown to an operator: its summary, its moments and its masked body.

One place for ``callbacks events`` and the console, so both show the same fields and mask the
same credentials by construction rather than by keeping two copies in step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from callbacks.masking import masked, masked_value
from callbacks.store import StoredEvent


def iso(moment: datetime | float | None) -> str:
    """UTC, to the second, with a Z: ``2026-12-01T08:00:00Z``; ``-`` for nothing."""
    if moment is None:
        return "-"
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_summary(event: StoredEvent) -> dict[str, Any]:
    """An event's metadata, without its body or handler state."""
    return {
        "id": event.id,
        "received_at": iso(event.received_at),
        "route": event.route,
        "provider": event.provider,
        "event_type": event.event_type,
        "status": event.status,
        "attempts": event.attempts,
        "key_id": event.key_id,
        "next_attempt_at": iso(event.next_attempt_at) if event.status == "pending" else None,
        "last_error": event.last_error,
        "duplicate_of": event.duplicate_of,
        "updated_at": iso(event.updated_at),
    }


def display_body(event: StoredEvent) -> Any:
    """The body as JSON with its credentials masked; text (masked too) if it is not JSON."""
    try:
        raw = orjson.loads(event.body)
    except orjson.JSONDecodeError:
        return masked_value(event.body.decode("utf-8", "replace"))
    if not isinstance(raw, dict):
        return masked_value(raw)
    return masked(event.provider, raw)
