"""Prometheus metrics. One module holds every metric so the names are reviewed in one place.

With several worker processes set ``PROMETHEUS_MULTIPROC_DIR`` to an empty writable folder:
prometheus-client then keeps per-process files and ``/metrics`` aggregates them.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SKEW_BUCKETS = (-300, -60, -10, -2, 0, 2, 10, 30, 60, 120, 300, 600)

CALLBACKS = Counter(
    "avatar_callbacks_requests_total",
    "Callbacks received, by route and outcome (accepted, duplicate, rejected, error).",
    ["route", "outcome", "reason"],
)
VERIFIED_BY_KEY = Counter(
    "avatar_callbacks_verified_total",
    "Callbacks whose signature verified, by route and key id (never the key).",
    ["route", "key_id"],
)
CLOCK_SKEW = Histogram(
    "avatar_callbacks_clock_skew_seconds",
    "Receiver clock minus the platform's signed timestamp.",
    ["route"],
    buckets=_SKEW_BUCKETS,
)
REQUEST_LATENCY = Histogram(
    "avatar_callbacks_request_seconds",
    "Time from request start to response, by route.",
    ["route"],
    buckets=_LATENCY_BUCKETS,
)
STORE_WRITE_LATENCY = Histogram(
    "avatar_callbacks_store_write_seconds",
    "Time to store an accepted callback durably (including the group commit wait).",
    buckets=_LATENCY_BUCKETS,
)
INBOX_DEPTH = Gauge(
    "avatar_callbacks_inbox_depth",
    "Events stored and not yet delivered (pending), as last sampled.",
    multiprocess_mode="max",
)
LOG_LINES_DROPPED = Counter(
    "avatar_callbacks_log_lines_dropped_total",
    "Log lines that could not be written (stdout on a full disk, a closed pipe) and were dropped.",
)
KEY_RELOAD_FAILURES = Counter(
    "avatar_callbacks_key_reload_failures_total",
    "Key-file reloads that failed (the file was unreadable or invalid; the old keys stay).",
)
CONSOLE_SIGN_IN_FAILURES = Counter(
    "avatar_callbacks_console_sign_in_failures_total",
    "Console sign-ins and API calls refused: a wrong token, or an address refused (429) for "
    "too many wrong ones.",
    ["outcome"],
)
HANDLER_ATTEMPTS = Counter(
    "avatar_callbacks_handler_attempts_total",
    "Handler calls, by handler and outcome (ok, failed, dead).",
    ["handler", "outcome"],
)
DISPATCH_LAG = Histogram(
    "avatar_callbacks_dispatch_lag_seconds",
    "Time from receipt to a handler's first attempt.",
    buckets=(*_LATENCY_BUCKETS, 5.0, 10.0, 30.0, 60.0, 300.0),
)
DEAD_EVENTS = Gauge(
    "avatar_callbacks_dead_events",
    "Events dead (a handler gave up), by route, as last sampled: replay them once fixed.",
    ["route"],
    multiprocess_mode="max",
)
UNHANDLED_EVENTS = Gauge(
    "avatar_callbacks_unhandled_events",
    "Events no handler was registered for, by route, as last sampled.",
    ["route"],
    multiprocess_mode="max",
)
HANDLER_TIMEOUTS = Counter(
    "avatar_callbacks_handler_timeouts_total",
    "Handler calls that ran past their timeout (failed with reason timeout), by handler.",
    ["handler"],
)
LEASES_LOST = Counter(
    "avatar_callbacks_lease_renewals_lost_total",
    "Events whose lease this process lost while handling them (another dispatcher may run "
    "them; this one's outcome is not written), by where it was found: renew or finish.",
    ["at"],
)
SINK_SENDS = Histogram(
    "avatar_callbacks_sink_send_seconds",
    "Time one envelope took to reach a sink, by sink and outcome (ok, failed, refused).",
    ["sink", "outcome"],
    buckets=_LATENCY_BUCKETS,
)

CONNECTIONS_CLOSED = Counter(
    "avatar_callbacks_connections_closed_total",
    "Connections the server answered and closed, or dropped, at its edges, by reason "
    "(headers_too_large, header_timeout, body_timeout, too_many_connections, shutting_down).",
    ["reason"],
)


class RouteMetrics:
    """One route's labelled metrics, looked up once: ``labels()`` costs more than the update."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.latency = REQUEST_LATENCY.labels(route)
        self.clock_skew = CLOCK_SKEW.labels(route)
        self._outcomes: dict[tuple[str, str], Counter] = {}
        self._keys: dict[str, Counter] = {}

    def count(self, outcome: str, reason: str) -> None:
        child = self._outcomes.get((outcome, reason))
        if child is None:
            child = self._outcomes[outcome, reason] = CALLBACKS.labels(self.route, outcome, reason)
        child.inc()

    def verified(self, key_id: str) -> None:
        child = self._keys.get(key_id)
        if child is None:
            child = self._keys[key_id] = VERIFIED_BY_KEY.labels(self.route, key_id)
        child.inc()


def render() -> tuple[bytes, str]:
    """The exposition text for ``/metrics``, aggregated across processes when configured."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(DEFAULT_REGISTRY), CONTENT_TYPE_LATEST
