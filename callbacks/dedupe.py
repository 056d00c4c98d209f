"""When two deliveries are "the same notification": the dedupe key the store keeps unique.

Platforms retry a callback they think was lost, with a fresh timestamp and signature; the store
keeps the first delivery as the event and every later one as a duplicate pointing at it.

Only a true retry may be a duplicate. A key built from a few fields (a MetaStudio job's
``job_id`` + ``result``) lets a forged body that reuses a captured signature but carries another
``asset_id`` take the slot of the genuine callback that follows, which would then be dropped as
its "duplicate". So every key covers all the content the platform sends: a digest of the whole
parsed body, less the fields that only authenticate it (SenseTime's ``timestamp`` and
``signature``, which change on every retry; MetaStudio authenticates in the URL or headers, so its
whole body is content).

Keys are encoded so that no two different inputs can give the same key: the parts go into a
JSON array, never joined with a separator a part may itself contain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # the store re-keys rows with this module, and the config imports the store
    from callbacks.config import RouteConfig

# Fields that carry authentication, not content: left out of the body digest.
SENSETIME_AUTH_FIELDS = frozenset({"timestamp", "signature"})
DIGEST = "sha256"


def dedupe_key(route: RouteConfig, raw: Mapping[str, Any]) -> str:
    """What makes two deliveries on ``route`` "the same notification": all their content."""
    return content_key(route.name, route.provider, raw)


def content_key(route_name: str, provider: str, raw: Mapping[str, Any]) -> str:
    """:func:`dedupe_key` from what the store keeps of a route (its name and provider), so stored
    rows can be re-keyed without the configuration they arrived under."""
    return encode_key(route_name, f"{DIGEST}:{content_digest(provider, raw)}")


def encode_key(*parts: str) -> str:
    """The parts as a JSON array: decodes back to exactly ``parts``, so distinct parts never
    share a key."""
    return orjson.dumps(parts).decode()


def content_digest(provider: str, raw: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the body's content as canonical JSON (sorted keys, no whitespace), so
    the same content gives the same digest however the sender ordered or spaced it."""
    content = raw
    if provider == "sensetime":
        content = {k: v for k, v in raw.items() if k not in SENSETIME_AUTH_FIELDS}
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def body_digest(route: RouteConfig, raw: Mapping[str, Any]) -> str:
    """:func:`content_digest` for ``route``."""
    return content_digest(route.provider, raw)
