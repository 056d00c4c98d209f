"""When two deliveries are "the same notification": the dedupe key the store keeps unique.

Platforms retry a callback they think was lost, with a fresh timestamp and signature; the store
keeps the first delivery as the event and every later one as a duplicate pointing at it. The key
is built from signed or content material only, never from what a sender may change freely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from callbacks.config import RouteConfig

# Fields that carry authentication, not content: left out of the body digest.
SENSETIME_AUTH_FIELDS = frozenset({"timestamp", "signature"})


def dedupe_key(route: RouteConfig, raw: Mapping[str, Any]) -> str:
    """What makes two deliveries "the same notification", from signed or content material only.

    MetaStudio job results: route + job id + result (the platform retries with a new timestamp and
    secret). Everything else: route + a digest of the body without its authentication fields.
    """
    if route.provider == "metastudio" and route.kind not in ("live", "tts"):
        job, result = raw.get("job_id"), raw.get("result")
        if _key_part(job) and _key_part(result):
            return f"{route.name}:job:{job}:{result}"
    if route.provider == "metastudio" and route.kind == "tts":
        job, status = raw.get("job_id"), raw.get("status")
        if _key_part(job) and _key_part(status):
            return f"{route.name}:tts:{job}:{status}"
    return f"{route.name}:body:{body_digest(route, raw)}"


def _key_part(value: object) -> bool:
    """Only short printable text goes into a key as is (a NUL, say, is unstorable in PostgreSQL)."""
    return isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable()


def body_digest(route: RouteConfig, raw: Mapping[str, Any]) -> str:
    content = raw
    if route.provider == "sensetime":
        content = {k: v for k, v in raw.items() if k not in SENSETIME_AUTH_FIELDS}
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()[:32]
