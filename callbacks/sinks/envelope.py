"""The one message every sink sends: an event as a documented, versioned JSON object.

    {"type": "avatar-callbacks.event", "version": 1,
     "delivery_id": "...", "route": "sensetime", "provider": "sensetime",
     "event_type": "SenseTimeCallback", "received_at": "2026-01-31T12:00:00.000000Z",
     "key_id": "k_...", "confirmation": {"state": "...", "details": {...}},   # when present
     "body": {...}}

The JSON Schema ships beside this module (:func:`json_schema`), so a consumer in any language can
validate what it reads. ``delivery_id`` stays the same across retries and replays: consumers
de-duplicate by it. The body is the platform's own, less the fields that authenticated it: those
were checked here, and a signature is nobody else's business.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import orjson

from callbacks.errors import CallbacksError
from callbacks.events import Event

ENVELOPE_TYPE = "avatar-callbacks.event"
ENVELOPE_VERSION = 1
SCHEMA_FILE = "envelope.schema.json"
_AUTH_FIELDS = {"sensetime": ("signature",)}
_FIELDS = (
    "type",
    "version",
    "delivery_id",
    "route",
    "provider",
    "event_type",
    "received_at",
    "key_id",
    "confirmation",
    "body",
)


class EnvelopeError(CallbacksError):
    """Bytes that are not an envelope of this version."""


@dataclass(frozen=True)
class Confirmation:
    """What checking the event with the platform found (see the confirmation settings)."""

    state: str
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EventEnvelope:
    delivery_id: str
    route: str
    provider: str
    event_type: str
    received_at: datetime
    key_id: str | None
    body: Mapping[str, Any] = field(repr=False)
    confirmation: Confirmation | None = None

    @classmethod
    def from_event(cls, event: Event) -> EventEnvelope:
        body = dict(event.raw)
        for name in _AUTH_FIELDS.get(event.provider, ()):
            body.pop(name, None)
        return cls(
            delivery_id=event.delivery_id,
            route=event.route,
            provider=event.provider,
            event_type=event.event_type,
            received_at=datetime.fromtimestamp(event.received_at, UTC),
            key_id=event.key_id,
            body=body,
            confirmation=_confirmation_of(event),
        )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": ENVELOPE_TYPE,
            "version": ENVELOPE_VERSION,
            "delivery_id": self.delivery_id,
            "route": self.route,
            "provider": self.provider,
            "event_type": self.event_type,
            # isoformat: the same text as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), in half the time.
            "received_at": self.received_at.astimezone(UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "key_id": self.key_id,
            "body": dict(self.body),
        }
        if self.confirmation is not None:
            confirmation: dict[str, Any] = {"state": self.confirmation.state}
            if self.confirmation.details is not None:
                confirmation["details"] = dict(self.confirmation.details)
            out["confirmation"] = confirmation
        return out

    def encode(self) -> bytes:
        return orjson.dumps(self.as_dict())

    @classmethod
    def decode(cls, data: bytes | str) -> EventEnvelope:
        """Read an envelope back (consumers, tests); anything else raises :class:`EnvelopeError`."""
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise EnvelopeError("not JSON") from None
        if not isinstance(raw, dict):
            raise EnvelopeError("not a JSON object")
        unknown = set(raw) - set(_FIELDS)
        if unknown:
            raise EnvelopeError(f"unknown field(s): {', '.join(sorted(unknown))}")
        version = raw.get("version")
        if (
            raw.get("type") != ENVELOPE_TYPE
            or isinstance(version, bool)
            or version != ENVELOPE_VERSION
        ):
            raise EnvelopeError(f"not a {ENVELOPE_TYPE} envelope of version {ENVELOPE_VERSION}")

        for name in ("delivery_id", "route", "provider", "event_type", "received_at"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise EnvelopeError(f"{name} must be a non-empty string")
        if "key_id" not in raw or not isinstance(raw["key_id"], str | None):
            raise EnvelopeError("key_id must be a string or null")
        if not isinstance(raw.get("body"), dict):
            raise EnvelopeError("body must be an object")
        return cls(
            delivery_id=raw["delivery_id"],
            route=raw["route"],
            provider=raw["provider"],
            event_type=raw["event_type"],
            received_at=_parse_time(raw["received_at"]),
            key_id=raw["key_id"],
            body=raw["body"],
            confirmation=_parse_confirmation(raw.get("confirmation")),
        )


def json_schema() -> dict[str, Any]:
    """The envelope's JSON Schema (draft 2020-12), as shipped with the package."""
    text = resources.files(__package__ or "callbacks.sinks").joinpath(SCHEMA_FILE).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _parse_time(text: str) -> datetime:
    if not (len(text) == 27 and text.endswith("Z") and text[10] == "T"):
        raise EnvelopeError("received_at must look like 2026-01-31T12:00:00.000000Z")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise EnvelopeError("received_at is not a valid moment") from None


def _parse_confirmation(raw: object) -> Confirmation | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"state", "details"}:
        raise EnvelopeError("confirmation must be an object with state and details")
    state, details = raw.get("state"), raw.get("details")
    if not isinstance(state, str) or not state:
        raise EnvelopeError("confirmation.state must be a non-empty string")
    if details is not None and not isinstance(details, dict):
        raise EnvelopeError("confirmation.details must be an object")
    return Confirmation(state, details)


def _confirmation_of(event: Event) -> Confirmation | None:
    """The event's confirmation, when the receiver checked it with the platform.

    Read by attribute so this module works before and after events carry one: an object with
    ``state`` and ``details``, or a mapping with those keys.
    """
    found = getattr(event, "confirmation", None)
    if found is None:
        return None
    if isinstance(found, Mapping):
        state, details = found.get("state"), found.get("details")
    else:
        state, details = getattr(found, "state", None), getattr(found, "details", None)
    if not isinstance(state, str) or not state:
        return None
    return Confirmation(state, dict(details) if isinstance(details, Mapping) else None)
