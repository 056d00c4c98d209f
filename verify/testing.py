"""Helpers for *your* tests: build callbacks exactly as the platforms would sign them.

Each helper is one call that returns what the platform would send, so a test can post it to the
receiver (or hand it to a verifier) without repeating the signing rules. Pair them with
:func:`fixed_clock` so the timestamp is inside the window no matter when the test runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from verify import metastudio, sensetime
from verify._window import Clock
from verify.metastudio import Carrier

__all__ = [
    "FIXED_NOW",
    "fixed_clock",
    "signed_metastudio_headers",
    "signed_metastudio_url",
    "signed_sensetime_body",
]

FIXED_NOW: Final = 1763856000
"""2025-11-23 00:00:00 UTC: the default timestamp of every helper here."""


def fixed_clock(now: float = FIXED_NOW) -> Clock:
    """A clock that always says ``now``; pass it as ``clock=`` to a verifier.

    >>> from verify.testing import FIXED_NOW, fixed_clock
    >>> clock = fixed_clock()
    >>> clock() == FIXED_NOW
    True
    """

    def clock() -> float:
        return now

    return clock


def signed_sensetime_body(
    callback_url: str,
    auth_key: str,
    payload: Mapping[str, Any] | None = None,
    *,
    timestamp: int = FIXED_NOW,
) -> bytes:
    """A SenseTime callback body: ``payload`` plus ``timestamp`` (an integer) and ``signature``.

    >>> from verify import verify_sensetime_callback
    >>> from verify.testing import fixed_clock, signed_sensetime_body
    >>> url = "https://hooks.example.com/sensetime"
    >>> body = signed_sensetime_body(url, "Secret1Key", {"taskId": 42, "status": 2})
    >>> result = verify_sensetime_callback(url, body, ["Secret1Key"], clock=fixed_clock())
    >>> result.payload["taskId"]
    42
    """
    document = dict(payload or {})
    document[sensetime.TIMESTAMP_FIELD] = timestamp
    document[sensetime.SIGNATURE_FIELD] = sensetime.sign(callback_url, timestamp, auth_key)
    return orjson.dumps(document)


def signed_metastudio_url(
    callback_url: str,
    key: str,
    *,
    timestamp: int = FIXED_NOW,
    carrier: Carrier = Carrier.JOB_QUERY,
) -> str:
    """The URL MetaStudio would call for ``callback_url`` (query carriers only).

    >>> from urllib.parse import urlsplit
    >>> from verify import verify_metastudio_callback
    >>> from verify.testing import fixed_clock, signed_metastudio_url
    >>> url = "https://hooks.example.com/metastudio?tenant=acme"
    >>> called = signed_metastudio_url(url, "my-key")
    >>> called.startswith(url + "&secret=")
    True
    >>> result = verify_metastudio_callback(
    ...     url, urlsplit(called).query, ["my-key"], clock=fixed_clock()
    ... )
    >>> result.timestamp
    1763856000
    """
    return metastudio.sign_url(callback_url, key, timestamp, carrier=carrier)


def signed_metastudio_headers(
    callback_url: str, key: str, *, timestamp: int = FIXED_NOW
) -> dict[str, str]:
    """The ``x-hw-mss-secret`` / ``x-hw-mss-time`` headers of an ``MSS_A_HEAD`` callback.

    >>> from verify import Carrier, verify_metastudio_callback
    >>> from verify.testing import fixed_clock, signed_metastudio_headers
    >>> url = "https://hooks.example.com/metastudio/live"
    >>> headers = signed_metastudio_headers(url, "my-key")
    >>> sorted(headers)
    ['x-hw-mss-secret', 'x-hw-mss-time']
    >>> result = verify_metastudio_callback(
    ...     url, b"", ["my-key"], carrier=Carrier.HEADERS, headers=headers, clock=fixed_clock()
    ... )
    >>> result.carrier is Carrier.HEADERS
    True
    """
    return metastudio.sign_headers(callback_url, key, timestamp=timestamp)
