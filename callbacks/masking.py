"""Bodies for display (``callbacks events show``): what may not be shown replaced by a mask."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from callbacks.events import decode_live_message


def masked(provider: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The body for display: authentication fields and stream keys replaced by a mask."""
    out = dict(raw)
    if provider == "sensetime" and "signature" in out:
        out["signature"] = "***"
    message = out.get("message")
    if isinstance(message, str) and "stream_key" in message:
        decoded = dict(decode_live_message(message))
        if "stream_key" in decoded:
            decoded["stream_key"] = "***"
            out["message"] = orjson.dumps(decoded).decode()
    return out
