"""Typed events, one class per documented callback body.

Platforms add fields and enum values without notice, so nothing here rejects what it does not know:
every event keeps the raw JSON, typed fields are optional, and unknown values pass through as text.
An event is rebuilt from its stored row, so the same parsing runs on receipt and on delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from callbacks.config import RouteConfig
from callbacks.confirm.details import JobDetails
from callbacks.store.base import StoredEvent


@dataclass(frozen=True, kw_only=True)
class Event:
    """What every handler receives: the route, the delivery id, the matched key and the raw body."""

    delivery_id: str
    route: str
    provider: str
    key_id: str | None
    received_at: float
    raw: Mapping[str, Any] = field(repr=False)
    job_details: JobDetails | None = field(default=None, repr=False)
    """What the platform's API says about the job, on routes with ``confirm`` on (else None)."""

    @property
    def event_type(self) -> str:
        return type(self).__name__


@dataclass(frozen=True, kw_only=True)
class SenseTimeCallback(Event):
    """A SoftSugar callback. The body is not publicly documented: the known fields are optional."""

    task_id: str | None = None
    status: str | None = None
    task_type: str | None = None
    user_data: str | None = None


@dataclass(frozen=True, kw_only=True)
class MetaStudioJobResult(Event):
    """A video, photo-video, business-card or subtitle job finished. ``kind`` says which."""

    kind: str
    job_id: str | None = None
    asset_id: str | None = None
    result: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.result in ("SUCCEED", "SUCCESS")


@dataclass(frozen=True, kw_only=True)
class MetaStudioTtsResult(Event):
    """An async TTS job changed state (``FINISHED``, ``ERROR``, ``WAITING``, ...)."""

    job_id: str | None = None
    status: str | None = None
    audio_file_download_url: str | None = None
    subtitle_file_download_url: str | None = None
    audio_duration: float | None = None


@dataclass(frozen=True, kw_only=True)
class MetaStudioLiveEvent(Event):
    """A live room or live job event; ``message`` is the decoded JSON the platform sent as text."""

    platform_event_type: str | None = None
    message: Mapping[str, Any] = field(default_factory=dict, repr=False)
    room_id: str | None = None
    job_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class ShootScriptSwitch(MetaStudioLiveEvent):
    scene_script_name: str | None = None
    shoot_script_sequence_no: int | None = None
    shoot_script_title: str | None = None


@dataclass(frozen=True, kw_only=True)
class RtmpStreamStateChange(MetaStudioLiveEvent):
    """``stream_key`` is a credential for the stream: handlers must not log it."""

    output_url: str | None = None
    stream_key: str | None = field(default=None, repr=False)
    state: str | None = None


@dataclass(frozen=True, kw_only=True)
class ReplyCommandFinish(MetaStudioLiveEvent):
    reply_id: str | None = None


EVENT_TYPES: tuple[type[Event], ...] = (
    Event,
    SenseTimeCallback,
    MetaStudioJobResult,
    MetaStudioTtsResult,
    MetaStudioLiveEvent,
    ShootScriptSwitch,
    RtmpStreamStateChange,
    ReplyCommandFinish,
)

_LIVE_TYPES: dict[str, type[MetaStudioLiveEvent]] = {
    "SHOOT_SCRIPT_SWITCH": ShootScriptSwitch,
    "RTMP_STREAM_STATE_CHANGE": RtmpStreamStateChange,
    "REPLY_COMMAND_FINISH": ReplyCommandFinish,
}


@dataclass(frozen=True)
class Envelope:
    """Who delivered a body: everything an event needs besides the body itself."""

    delivery_id: str
    route: RouteConfig
    key_id: str | None
    received_at: float


def event_class(route: RouteConfig, raw: Mapping[str, Any]) -> type[Event]:
    """Which event a body on ``route`` becomes, without building it (for logs and storage)."""
    if route.provider == "sensetime":
        return SenseTimeCallback
    if route.kind == "tts":
        return MetaStudioTtsResult
    if route.kind == "live":
        name = raw.get("event_type")
        return (
            _LIVE_TYPES.get(name, MetaStudioLiveEvent)
            if isinstance(name, str)
            else MetaStudioLiveEvent
        )
    return MetaStudioJobResult


def build_event(envelope: Envelope, raw: Mapping[str, Any]) -> Event:
    """The typed event for a verified body on ``envelope.route``."""
    route = envelope.route
    cls = event_class(route, raw)
    return cls(
        delivery_id=envelope.delivery_id,
        route=route.name,
        provider=route.provider,
        key_id=envelope.key_id,
        received_at=envelope.received_at,
        raw=raw,
        **_typed_fields(cls, route, raw),
    )


def event_from_stored(stored: StoredEvent, route: RouteConfig | None) -> Event:
    """The event for a stored row, parsed as on receipt.

    ``route`` is None when the row's route was removed from the config since: the event is then a
    plain :class:`Event`, so catch-all handlers still run.
    """
    raw = orjson.loads(stored.body)
    if route is None:
        return Event(
            delivery_id=stored.id,
            route=stored.route,
            provider=stored.provider,
            key_id=stored.key_id,
            received_at=stored.received_at,
            raw=raw,
        )
    return build_event(Envelope(stored.id, route, stored.key_id, stored.received_at), raw)


def _typed_fields(cls: type[Event], route: RouteConfig, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The fields ``cls`` adds to :class:`Event`, read leniently from the body."""
    if cls is SenseTimeCallback:
        return {
            "task_id": _text(raw.get("taskId", raw.get("id"))),
            "status": _text(raw.get("status", raw.get("state"))),
            "task_type": _text(raw.get("type", raw.get("taskType"))),
            "user_data": _text(raw.get("userData")),
        }
    if cls is MetaStudioTtsResult:
        return {
            "job_id": _text(raw.get("job_id")),
            "status": _text(raw.get("status")),
            "audio_file_download_url": _text(raw.get("audio_file_download_url")),
            "subtitle_file_download_url": _text(raw.get("subtitle_file_download_url")),
            "audio_duration": _number(raw.get("audio_duration")),
        }
    if cls is MetaStudioJobResult:
        return {
            "kind": route.kind or "video",
            "job_id": _text(raw.get("job_id")),
            "asset_id": _text(raw.get("asset_id")),
            "result": _text(raw.get("result")),
        }
    return _live_fields(cls, raw)


def _live_fields(cls: type[Event], raw: Mapping[str, Any]) -> dict[str, Any]:
    message = decode_live_message(raw.get("message"))
    fields: dict[str, Any] = {
        "platform_event_type": _text(raw.get("event_type")),
        "message": message,
        "room_id": _text(message.get("room_id")),
        "job_id": _text(message.get("job_id")),
    }
    if cls is ShootScriptSwitch:
        fields["scene_script_name"] = _text(message.get("scene_script_name"))
        seq = message.get("shoot_script_sequence_no")
        fields["shoot_script_sequence_no"] = (
            seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        )
        fields["shoot_script_title"] = _text(message.get("shoot_script_title"))
    elif cls is RtmpStreamStateChange:
        fields["output_url"] = _text(message.get("output_url"))
        fields["stream_key"] = _text(message.get("stream_key"))
        fields["state"] = _text(message.get("state"))
    elif cls is ReplyCommandFinish:
        fields["reply_id"] = _text(message.get("reply_id"))
    return fields


def decode_live_message(value: object) -> Mapping[str, Any]:
    """``message`` is JSON encoded as a string; tolerate an object, keep nothing on junk."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            return {}
        if isinstance(decoded, dict):
            return decoded
    return {}


def _text(value: object) -> str | None:
    """Ids come as strings on one platform and integers on the other: keep both as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
