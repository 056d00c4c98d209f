"""Standard Webhooks signing, shared by the HTTP sink and ``callbacks events forward``.

Headers: ``webhook-id`` (the delivery id, so the receiver can de-duplicate), ``webhook-timestamp``
(seconds) and ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one per
secret, space-separated, so a rotation is invisible to consumers. Any Standard Webhooks library
verifies it (e.g. Python's ``standardwebhooks``). No HTTP client here: the base install forwards
with the standard library's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence


def signature_header(keys: Sequence[bytes], msg_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,`` signature for each key."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        for key in keys
    )


def webhook_headers(
    keys: Sequence[bytes], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The headers of one message; without keys, unsigned (no ``webhook-signature``)."""
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if keys:
        headers["webhook-signature"] = signature_header(keys, msg_id, str(timestamp), body)
    return headers
