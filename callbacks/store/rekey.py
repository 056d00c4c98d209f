"""Schema 2's data step: stored events re-keyed with today's dedupe keys (:mod:`callbacks.dedupe`).

Schema 1 keys were ambiguous (``route:job:JOB:RESULT``) and too coarse (a MetaStudio job key left
out everything but ``job_id`` and ``result``). Both backends run this over their rows in id order,
a page at a time, inside their upgrade transaction. New keys are finer than old ones, so two
events can only end up with the same new key if they came under different route settings; the
earlier keeps it and the later one loses its key (it stays an event, it is just no longer what
retries are matched against). A body that is not a JSON object keeps the key it has.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from callbacks.dedupe import content_key

PAGE = 64  # rows per page: bodies are up to the body limit each, and all of a page is in memory


def rekeyed(
    rows: Iterable[tuple[str, str, str, Any]], seen: set[str]
) -> list[tuple[str | None, str]]:
    """``(new key, id)`` for each ``(id, route, provider, body)`` row whose key changes.

    ``seen`` holds the keys given out so far (across pages) and is updated.
    """
    updates: list[tuple[str | None, str]] = []
    for event_id, route, provider, body in rows:
        try:
            raw = orjson.loads(bytes(body))
            key: str | None = content_key(route, provider, raw) if isinstance(raw, dict) else None
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            key = None
        if key is None:
            continue
        if key in seen:
            updates.append((None, event_id))
            continue
        seen.add(key)
        updates.append((key, event_id))
    return updates
