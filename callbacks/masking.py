"""Bodies for display (``callbacks events show``): what may not be shown replaced by a mask.

Masking works on parsed values, never on text: a key spelled with an escape
(``"stream\\u005fkey"``) is ``stream_key`` once parsed, and a value that is itself JSON text (a
MetaStudio live ``message``, or a JSON string inside that) is parsed and masked too, at any depth.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

MASK = "***"
# Keys whose values are credentials, compared without case, '_' or '-': a live room's RTMP
# stream key, SenseTime's body signature, and the usual names for secrets and tokens.
MASKED_KEYS = frozenset(
    {
        "streamkey",
        "signature",
        "secret",
        "hwsecret",
        "token",
        "accesstoken",
        "password",
        "authkey",
        "secretkey",
    }
)
# Deeper than this, a value is shown as a placeholder: every nested value is masked or shown,
# and the display must stay printable as JSON (orjson writes at most 254 levels).
MAX_DEPTH = 64
TOO_DEEP = "(nested too deep to show)"


def masked(provider: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The body for display: credential fields replaced by :data:`MASK`, at any depth.

    ``provider`` is accepted for callers that have one; the same keys are masked for every
    provider, since a key that names a secret is a secret wherever it turns up.
    """
    shown = masked_value(dict(raw))
    assert isinstance(shown, dict)
    return shown


def is_masked_key(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in MASKED_KEYS


def masked_value(value: Any) -> Any:
    """``value`` with every masked key's value replaced; JSON text inside strings included."""
    return _mask(value, 0)[0]


def _mask(value: Any, depth: int) -> tuple[Any, bool]:
    """The value for display, and whether anything in it was replaced."""
    if depth >= MAX_DEPTH:
        return TOO_DEEP, True
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        changed = False
        for key, item in value.items():
            if is_masked_key(str(key)):
                out[key], hidden = MASK, True
            else:
                out[key], hidden = _mask(item, depth + 1)
            changed = changed or hidden
        return out, changed
    if isinstance(value, list | tuple):
        pairs = [_mask(item, depth + 1) for item in value]
        return [item for item, _ in pairs], any(hidden for _, hidden in pairs)
    if isinstance(value, str):
        return _mask_json_text(value, depth)
    return value, False


def _mask_json_text(text: str, depth: int) -> tuple[str, bool]:
    """A string that holds a JSON object or array is shown with that document masked."""
    if not text.lstrip().startswith(("{", "[")):
        return text, False
    try:
        inner = orjson.loads(text)
    except orjson.JSONDecodeError:
        return text, False
    shown, changed = _mask(inner, depth + 1)
    if not changed:
        return text, False  # nothing hidden: show the sender's own text
    return orjson.dumps(shown).decode(), True
