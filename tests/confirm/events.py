"""Events for the confirmation tests, built the way the receiver builds them."""

from __future__ import annotations

from typing import Any

import orjson

from callbacks.config import RouteConfig
from callbacks.events import Envelope, Event, build_event


def route(kind: str | None = "video", name: str = "ms") -> RouteConfig:
    if kind is None:
        return RouteConfig(name, "/cb/st", "sensetime", "https://hooks.example.com/cb/st")
    auth = "NONE" if kind == "tts" else "MSS_A"
    return RouteConfig(
        name,
        f"/cb/{name}",
        "metastudio",
        f"https://hooks.example.com/cb/{name}",
        kind,  # type: ignore[arg-type]
        auth,  # type: ignore[arg-type]
    )


def event(kind: str | None = "video", **body: Any) -> Event:
    return build_event(Envelope("d-1", route(kind), None, 1.0), body)


def job_result(kind: str = "video", job_id: str = "job-1", result: str = "SUCCEED",
               asset_id: str | None = "asset-1") -> Event:  # fmt: skip
    body: dict[str, Any] = {"job_id": job_id, "result": result}
    if asset_id is not None:
        body["asset_id"] = asset_id
    return event(kind, **body)


def live_event(
    job_id: str = "job-1", room_id: str = "room-1", event_type: str = "SHOOT_SCRIPT_SWITCH"
) -> Event:
    message = orjson.dumps({"room_id": room_id, "job_id": job_id}).decode()
    return event("live", event_type=event_type, message=message)
