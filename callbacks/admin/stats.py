"""The numbers behind the metrics, as JSON: the console runs in the receiver's process, so it
reads the same Prometheus registry ``/metrics`` renders (every worker's, when there are several).
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.registry import Collector

_REQUESTS = "avatar_callbacks_requests_total"
_VERIFIED = "avatar_callbacks_verified_total"
_HANDLERS = "avatar_callbacks_handler_attempts_total"
_RELOAD_FAILURES = "avatar_callbacks_key_reload_failures_total"


def _registry() -> CollectorRegistry | Collector:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def metric_numbers() -> dict[str, Any]:
    """Counters by their labels: callbacks per route and outcome (and reason), verifications per
    key id, handler and sink attempts per outcome."""
    routes: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"accepted": 0, "duplicate": 0, "rejected": 0, "error": 0, "reasons": {}}
    )
    verified: list[dict[str, Any]] = []
    handlers: dict[str, dict[str, int]] = defaultdict(dict)
    reload_failures = 0
    for metric in _registry().collect():
        for sample in metric.samples:
            labels, value = sample.labels, int(sample.value)
            if sample.name == _REQUESTS:
                row = routes[labels["route"]]
                outcome = labels["outcome"]
                row[outcome] = row.get(outcome, 0) + value
                if outcome != "accepted" and labels.get("reason"):
                    reasons = row["reasons"]
                    reasons[labels["reason"]] = reasons.get(labels["reason"], 0) + value
            elif sample.name == _VERIFIED:
                verified.append(
                    {"route": labels["route"], "key_id": labels["key_id"], "count": value}
                )
            elif sample.name == _HANDLERS:
                by_outcome = handlers[labels["handler"]]
                by_outcome[labels["outcome"]] = by_outcome.get(labels["outcome"], 0) + value
            elif sample.name == _RELOAD_FAILURES:
                reload_failures += value
    return {
        "callbacks": {route: routes[route] for route in sorted(routes)},
        "verified_by_key": sorted(verified, key=lambda v: (v["route"], v["key_id"])),
        "handler_attempts": {name: handlers[name] for name in sorted(handlers)},
        "key_reload_failures": reload_failures,
    }
