"""The OpenAPI 3.1 description of ``/api/``, served at ``/api/openapi.json``.

Hand-written: the API is small, and a hand-kept schema says what each answer means, which
generated ones leave out. ``tests/admin`` checks it names every route the app serves.
"""

from __future__ import annotations

from typing import Any

_FILTERS = [
    ("route", "Only this route's events."),
    ("status", "pending, delivered, dead or duplicate."),
    ("type", "Only this event type (SenseTimeCallback, MetaStudioJobResult, ...)."),
    ("key_id", "Only events verified by this key id."),
    ("since", "Received at or after: an age (1h, 7d) or an ISO 8601 time (UTC unless given)."),
    ("until", "Received before: an age or an ISO 8601 time."),
    ("q", "Text in the job, task or room id the callback names."),
    ("before", "Keyset cursor: the next_before of the previous page."),
    ("limit", "Events per page, 1 to 500 (default 50)."),
]


_STRINGS = {"type": "array", "items": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_REFUSED = {
    "400": _json(_ref("Refusal"), "A filter or body the API cannot use."),
    "401": _json(_ref("Refusal"), "No valid token or session (reason unauthorized)."),
}
_ACT_REFUSED = {
    **_REFUSED,
    "403": _json(
        _ref("Refusal"),
        "read_only: the read-only token cannot act; csrf_failed: a session without its "
        "X-CSRF-Token header.",
    ),
}
_EVENT_ID = {
    "name": "event_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "An event id, or a unique prefix of one.",
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def schema() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/api/events": {
            "get": {
                "summary": "List events, newest first, filtered and paged",
                "parameters": [
                    {"name": n, "in": "query", "schema": {"type": "string"}, "description": d}
                    for n, d in _FILTERS
                ],
                "responses": {"200": _json(_ref("EventPage"), "One page."), **_REFUSED},
            }
        },
        "/api/events/{event_id}": {
            "get": {
                "summary": "One event: handler and sink state, body with credentials masked",
                "parameters": [_EVENT_ID],
                "responses": {
                    "200": _json(_ref("EventDetail"), "The event."),
                    "404": _json(_ref("Refusal"), "No single event has this id (prefix)."),
                    **_REFUSED,
                },
            }
        },
        "/api/events/{event_id}/replay": {
            "post": {
                "summary": "Re-queue one event for the handlers and sinks that have not succeeded",
                "parameters": [_EVENT_ID],
                "responses": {
                    "200": _json(_ref("Requeued"), "Re-queued."),
                    "404": _json(_ref("Refusal"), "No such event."),
                    "409": _json(_ref("Refusal"), "A duplicate: replay its original."),
                    **_ACT_REFUSED,
                },
            }
        },
        "/api/replay": {
            "post": {
                "summary": "Re-queue many events: by ids, every dead one, or a list filter",
                "requestBody": _body(
                    {
                        "oneOf": [
                            {
                                "type": "object",
                                "properties": {
                                    "ids": {"type": "array", "items": {"type": "string"}}
                                },
                                "required": ["ids"],
                            },
                            {
                                "type": "object",
                                "properties": {
                                    "dead": {"const": True},
                                    "route": {"type": "string"},
                                },
                                "required": ["dead"],
                            },
                            {
                                "type": "object",
                                "properties": {
                                    "filter": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    }
                                },
                                "required": ["filter"],
                            },
                        ]
                    }
                ),
                "responses": {"200": _json(_ref("Requeued"), "Re-queued."), **_ACT_REFUSED},
            }
        },
        "/api/purge": {
            "post": {
                "summary": "Delete settled events received before a moment (pending ones stay)",
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {"before": {"type": "string", "examples": ["30d"]}},
                        "required": ["before"],
                    }
                ),
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"purged": {"type": "integer"}}},
                        "How many were deleted.",
                    ),
                    **_ACT_REFUSED,
                },
            }
        },
        "/api/jobs/expected": {
            "get": {
                "summary": "Expected jobs (callbacks jobs list) and what polling found",
                "parameters": [
                    {
                        "name": "overdue",
                        "in": "query",
                        "schema": {"enum": ["true", "false"]},
                        "description": "true: only jobs that did not finish within their time.",
                    }
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"jobs": {"type": "array", "items": _ref("ExpectedJob")}},
                        },
                        "Oldest expectation first.",
                    ),
                    **_REFUSED,
                },
            },
            "post": {
                "summary": "Expect a job's result (callbacks jobs expect): polled if no callback",
                "description": (
                    "After the route's reconcile_after without a callback, the serving process "
                    "polls the MetaStudio API for the job until a terminal state (delivered as "
                    "an event) or `within` runs out (overdue). Expecting a job again re-arms it."
                ),
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "route": {"type": "string", "description": "A MetaStudio job route."},
                            "job_id": {"type": "string", "minLength": 1, "maxLength": 128},
                            "within": {
                                "oneOf": [
                                    {"type": "number", "exclusiveMinimum": 0},
                                    {"type": "string", "examples": ["30m", "2h", "7d"]},
                                ],
                                "description": "Seconds or a duration; default 24h.",
                            },
                        },
                        "required": ["route", "job_id"],
                        "additionalProperties": False,
                    }
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"ok": {"const": True}, "job": _ref("ExpectedJob")},
                        },
                        "Recorded.",
                    ),
                    **_ACT_REFUSED,
                    "400": _json(
                        _ref("Refusal"),
                        "malformed_json, json_not_an_object, bad_expect, bad_within, "
                        "unknown_route, not_pollable (not a MetaStudio job route), bad_job_id.",
                    ),
                    "409": _json(_ref("Refusal"), "no_metastudio_api: nothing to poll with."),
                },
            },
        },
        "/api/keys": {
            "get": {
                "summary": "Each route's keys by id: rotation state and what each verified",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"routes": {"type": "array", "items": _ref("RouteKeys")}},
                        },
                        "Never a key itself.",
                    ),
                    **_REFUSED,
                },
            }
        },
        "/api/health": {
            "get": {
                "summary": "Store reachable, every route has a verifying key, inbox depth",
                "responses": {
                    "200": _json(_ref("Health"), "Healthy."),
                    "503": _json(_ref("Health"), "Every reason found."),
                    **_REFUSED,
                },
            }
        },
        "/api/metrics": {
            "get": {
                "summary": "The numbers behind /metrics: callbacks per route and outcome, ...",
                "responses": {"200": _json({"type": "object"}, "Counters by label."), **_REFUSED},
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1."), **_REFUSED},
            }
        },
    }
    event_summary = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "received_at": {"type": "string"},
            "route": {"type": "string"},
            "provider": {"type": "string"},
            "event_type": {"type": "string"},
            "status": {"enum": ["pending", "delivered", "dead", "duplicate"]},
            "attempts": {"type": "integer"},
            "key_id": {"type": ["string", "null"]},
            "job_ids": {"type": "array", "items": {"type": "string"}},
            "last_error": {"type": ["string", "null"]},
            "duplicate_of": {"type": ["string", "null"]},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "avatar-callbacks console API",
            "version": "1",
            "description": (
                "Inspect, replay and purge stored callbacks; expected jobs; keys, health, metrics."
            ),
        },
        "paths": paths,
        "security": [{"bearer": []}, {"session": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "callbacks_console"},
            },
            "schemas": {
                "Refusal": {
                    "type": "object",
                    "properties": {
                        "ok": {"const": False},
                        "reason": {"type": "string"},
                        "message": {"type": "string"},
                    },
                    "required": ["ok", "reason"],
                },
                "EventSummary": event_summary,
                "EventPage": {
                    "type": "object",
                    "properties": {
                        "events": {"type": "array", "items": _ref("EventSummary")},
                        "next_before": {"type": ["string", "null"]},
                    },
                },
                "EventDetail": {
                    "allOf": [
                        _ref("EventSummary"),
                        {
                            "type": "object",
                            "properties": {
                                "handler_state": {"type": "object"},
                                "body": {"description": "Credentials replaced by ***."},
                            },
                        },
                    ]
                },
                "Requeued": {
                    "type": "object",
                    "properties": {"requeued": {"type": "integer"}, "more": {"type": "boolean"}},
                },
                "ExpectedJob": {
                    "type": "object",
                    "properties": {
                        "route": {"type": "string"},
                        "job_id": {"type": "string"},
                        "state": {"enum": ["waiting", "found", "overdue"]},
                        "polls": {"type": "integer"},
                        "last_state": {"type": ["string", "null"]},
                        "expected_at": {"type": "string"},
                        "poll_after": {"type": "string"},
                        "deadline": {"type": "string"},
                        "overdue": {"type": "boolean"},
                        "event_id": {"type": ["string", "null"]},
                    },
                },
                "RouteKeys": {
                    "type": "object",
                    "properties": {
                        "route": {"type": "string"},
                        "rotating": {"type": "boolean"},
                        "keys": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "state": {"enum": ["primary", "next", "previous"]},
                                    "last_verified_at": {"type": ["string", "null"]},
                                    "verified_24h": {"type": "integer"},
                                },
                            },
                        },
                    },
                },
                "Health": {
                    "type": "object",
                    "properties": {
                        "status": {"enum": ["ok", "unavailable"]},
                        "reasons": {"type": "array", "items": {"type": "string"}},
                        "inbox_depth": {"type": ["integer", "null"]},
                    },
                },
            },
        },
    }
