"""SenseTime SoftSugar callbacks: an MD5 signature carried in the JSON body.

The platform adds ``timestamp`` (10-digit Unix seconds) and ``signature`` (32 hex digits) to the
body it POSTs, where ``signature = md5(callback_url + timestamp + auth_key)``. The callback URL is
the one configured on the account, verbatim: it is rebuilt from configuration, never from the
request line, because a proxy changes what the app sees. The body itself is *not* signed, so a
replay within the window can swap the body: see the protocol notes.

Verification sits on the request path of every callback, so the code below avoids work it does not
need: a ``Mapping`` body is used as is, hex is decoded once and raw digests are compared.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import secrets
import string
import time
from collections.abc import Iterable, Mapping
from hmac import compare_digest
from typing import Any, Final, NamedTuple

import orjson

from verify._errors import (
    InvalidKey,
    MalformedPayload,
    MalformedSignature,
    MalformedTimestamp,
    MissingSignature,
    NoKeys,
    SignatureMismatch,
)
from verify._keyring import Key, KeyRing, as_key_ring
from verify._window import DEFAULT_MAX_AGE, DEFAULT_MAX_FUTURE_SKEW, Clock, check_window

__all__ = [
    "MAX_AUTH_KEY_LENGTH",
    "SIGNATURE_FIELD",
    "TIMESTAMP_FIELD",
    "SenseTimeVerification",
    "canonical_string",
    "generate_auth_key",
    "parse_timestamp",
    "sign",
    "validate_auth_key",
    "verify_sensetime_callback",
]

TIMESTAMP_FIELD: Final = "timestamp"
SIGNATURE_FIELD: Final = "signature"

MAX_AUTH_KEY_LENGTH: Final = 32
"""The platform's upper bound on an AuthKey's length."""

_MIN_TIMESTAMP: Final = 1_000_000_000  # smallest 10-digit integer
_MAX_TIMESTAMP: Final = 9_999_999_999  # largest 10-digit integer
_SIGNATURE_HEX_LENGTH: Final = 32
_DIGEST_SIZE: Final = 16
_KEY_ALPHABET: Final = string.ascii_letters + string.digits
_MISSING: Final = object()
_BAD_SIGNATURE: Final = "signature must be a string of 32 hex digits"


def _pick_md5() -> Any:
    """The fastest MD5 constructor available; all give the same digests.

    CPython's built-in ``_md5`` skips the OpenSSL context set-up that dominates ``hashlib.md5``
    for messages this short (about half the cost per hash). Builds without it use OpenSSL, marked
    ``usedforsecurity=False`` so FIPS-mode systems allow it: this MD5 is the platform's choice,
    not ours, and nothing here depends on MD5's collision resistance.
    """
    try:
        return importlib.import_module("_md5").md5
    except ImportError:  # pragma: no cover - CPython built without its own hash modules
        return functools.partial(hashlib.md5, usedforsecurity=False)


_md5: Final = _pick_md5()
_MAX_CACHED_URLS: Final = 256
_URL_STATES: dict[str, Any] = {}


class SenseTimeVerification(NamedTuple):
    """What a successful verification established.

    ``key_id`` names the key that matched, so operators can watch an old key fall out of use
    before removing it; ``payload`` is the parsed body, auth fields included. A named tuple:
    immutable and the cheapest result to build on the request path.
    """

    key_id: str
    timestamp: int
    payload: Mapping[str, Any]

    def __repr__(self) -> str:
        # The payload is left out: it holds the received signature and can be large.
        return f"SenseTimeVerification(key_id={self.key_id!r}, timestamp={self.timestamp!r})"


def parse_timestamp(value: object) -> int:
    """Return the Unix seconds in ``value``, or raise :class:`MalformedTimestamp`.

    Strict on purpose: the value is part of the signed string, so only forms that have exactly one
    spelling are accepted — a JSON integer (not a bool) of 10 digits, or a string of 10 ASCII
    digits. A string with a leading zero is refused: its integer has 9 digits, so the canonical
    string the platform signed cannot be rebuilt from it unambiguously.
    """
    if type(value) is int:  # exact type: bool and int subclasses are not JSON integers
        if _MIN_TIMESTAMP <= value <= _MAX_TIMESTAMP:
            return value
        raise MalformedTimestamp("timestamp must be a 10-digit integer")
    if isinstance(value, str):
        if len(value) == 10 and value.isascii() and value.isdigit() and value[0] != "0":
            return int(value)
        raise MalformedTimestamp("timestamp string must be exactly 10 ASCII digits")
    raise MalformedTimestamp(
        f"timestamp must be a 10-digit integer or string, not {type(value).__name__}"
    )


def _require_timestamp(timestamp: int) -> int:
    """Configuration-side check: signing helpers take a real 10-digit integer or fail loudly."""
    if type(timestamp) is not int or not _MIN_TIMESTAMP <= timestamp <= _MAX_TIMESTAMP:
        raise ValueError("timestamp must be a 10-digit int (Unix seconds)")
    return timestamp


def canonical_string(callback_url: str, timestamp: int, auth_key: str) -> str:
    """The string the platform hashes: URL, 10-digit timestamp and AuthKey, no separators.

    Useful when comparing against the platform's documentation or debugging a mismatch; it contains
    the key, so never log it.
    """
    return f"{callback_url}{_require_timestamp(timestamp)}{auth_key}"


def sign(callback_url: str, timestamp: int, auth_key: str) -> str:
    """The signature the platform sends: lowercase hex MD5 of :func:`canonical_string`."""
    data = canonical_string(callback_url, timestamp, auth_key).encode("utf-8")
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _load_payload(body: object) -> Mapping[str, Any]:
    if isinstance(body, Mapping):
        return body
    if isinstance(body, bytes | bytearray | memoryview | str):
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise MalformedPayload("body is not valid JSON") from None
        if isinstance(payload, dict):
            return payload
        raise MalformedPayload(f"body is JSON {type(payload).__name__}, expected an object")
    raise MalformedPayload(f"body must be bytes, str or a mapping, not {type(body).__name__}")


def _url_state(callback_url: str) -> Any:
    """MD5 state after absorbing ``callback_url``, computed once per configured URL.

    The URL leads the signed string and is constant per route, so each verification starts
    from a copy of this state instead of hashing the URL again. The cached object is never
    updated in place, only copied, so sharing it between threads is safe.
    """
    state = _URL_STATES.get(callback_url)
    if state is None:
        if not isinstance(callback_url, str):
            raise TypeError("callback_url must be a str")
        if len(_URL_STATES) >= _MAX_CACHED_URLS:
            _URL_STATES.clear()
        try:
            encoded = callback_url.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no configuration can hold them
            raise ValueError("callback_url must be encodable as UTF-8") from None
        state = _md5(encoded)
        _URL_STATES[callback_url] = state
    return state


def verify_sensetime_callback(
    callback_url: str,
    body: bytes | str | Mapping[str, Any],
    keys: KeyRing | Iterable[Key | str] | str,
    *,
    clock: Clock = time.time,
    max_age: int = DEFAULT_MAX_AGE,
    max_future_skew: int = DEFAULT_MAX_FUTURE_SKEW,
) -> SenseTimeVerification:
    """Check a SenseTime callback body against the configured URL and the route's keys.

    ``callback_url`` is the URL configured on the SenseTime account, exactly as typed there.
    ``body`` is the raw request body (parsed with orjson) or an already parsed JSON object. Checks
    run cheapest and most informative first: payload shape, presence of the auth fields, timestamp
    form, signature form, time window, then the signature against each key that may verify now
    (``not_after`` compared with the clock in whole seconds, as the window is). The received hex
    is decoded to bytes and compared with each raw MD5 digest in constant time, which is the same
    test as comparing lowercased hex, with less work.

    Only :class:`~verify.VerificationError` subclasses are raised for anything a sender controls;
    an unusable ``callback_url`` or key ring is a configuration error (TypeError/ValueError).
    """
    # This runs for every callback: the common cases (a dict body, an int timestamp, a KeyRing)
    # take inline fast paths; everything else goes through the general helpers above.
    payload = body if type(body) is dict else _load_payload(body)
    signature = payload.get(SIGNATURE_FIELD, _MISSING)
    raw_timestamp = payload.get(TIMESTAMP_FIELD, _MISSING)
    if signature is _MISSING or raw_timestamp is _MISSING:
        raise MissingSignature("body has no signature or no timestamp field")
    if type(raw_timestamp) is int and _MIN_TIMESTAMP <= raw_timestamp <= _MAX_TIMESTAMP:
        timestamp: int = raw_timestamp
    else:
        timestamp = parse_timestamp(raw_timestamp)
    # Decode the received hex once: case stops mattering and comparison is over raw bytes.
    # fromhex skips ASCII whitespace between pairs, hence the length check after it.
    if type(signature) is not str or len(signature) != _SIGNATURE_HEX_LENGTH:
        raise MalformedSignature(_BAD_SIGNATURE)
    try:
        received = bytes.fromhex(signature)
    except ValueError:
        raise MalformedSignature(_BAD_SIGNATURE) from None
    if len(received) != _DIGEST_SIZE:
        raise MalformedSignature(_BAD_SIGNATURE)
    now = check_window(timestamp, clock=clock, max_age=max_age, max_future_skew=max_future_skew)

    ring = keys if type(keys) is KeyRing else as_key_ring(keys)
    state = None
    # Same keys as ring.verifying_keys(now), without building a tuple: a key without
    # ``not_after`` always verifies, only the others need asking.
    for key in ring.keys:
        if key.not_after is not None and not key.verifies_at(now):
            continue
        if state is None:
            state = _URL_STATES.get(callback_url) or _url_state(callback_url)
            state = state.copy()
            state.update(b"%d" % timestamp)
        keyed = state.copy()
        keyed.update(key.secret.encode())
        if compare_digest(keyed.digest(), received):
            return SenseTimeVerification(key.id, timestamp, payload)
    if state is None:
        raise NoKeys("no key in the ring may verify at this time")
    raise SignatureMismatch("signature does not match any key for this callback URL")


def validate_auth_key(key: str) -> str:
    """Return ``key`` if it follows the platform's AuthKey rules, else raise :class:`InvalidKey`.

    The rules (1 to 32 characters, at least one ASCII uppercase letter, lowercase letter and digit)
    are the console's; a key that breaks them could not be entered there, so refusing it early
    saves a confusing rotation. Messages name the rule, never the key.
    """
    if not isinstance(key, str):
        raise InvalidKey("an AuthKey must be a str")
    if not 1 <= len(key) <= MAX_AUTH_KEY_LENGTH:
        raise InvalidKey(f"an AuthKey must be 1 to {MAX_AUTH_KEY_LENGTH} characters long")
    if not any(c in string.ascii_uppercase for c in key):
        raise InvalidKey("an AuthKey must contain an ASCII uppercase letter")
    if not any(c in string.ascii_lowercase for c in key):
        raise InvalidKey("an AuthKey must contain an ASCII lowercase letter")
    if not any(c in string.digits for c in key):
        raise InvalidKey("an AuthKey must contain an ASCII digit")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        raise InvalidKey("an AuthKey must be encodable as UTF-8") from None
    return key


def generate_auth_key(length: int = MAX_AUTH_KEY_LENGTH) -> str:
    """A fresh random AuthKey of letters and digits that satisfies :func:`validate_auth_key`.

    Drawn uniformly from all valid keys by rejection sampling (redraw until the rules hold), which
    keeps every character independent and uniform rather than forcing positions.
    """
    if type(length) is not int or not 3 <= length <= MAX_AUTH_KEY_LENGTH:
        raise ValueError(f"length must be an int from 3 to {MAX_AUTH_KEY_LENGTH}")
    while True:
        key = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(length))
        try:
            return validate_auth_key(key)
        except InvalidKey:
            continue
