"""Signed tokens in callback URLs, for callbacks that carry no signature of their own.

MetaStudio jobs with ``auth_type`` ``NONE`` and async TTS jobs (whose ``callback_config`` has only a
URL) get no signature: "the URL contains authentication". So the receiver hands out callback URLs
that carry a token it signed itself, binding the route, an optional job reference and an expiry,
and checks the token when the callback arrives.

Tokens are itsdangerous ``URLSafeTimedSerializer`` strings (HMAC-SHA256, salt
``avatar-callbacks.callback-url``). They are signed, not encrypted: anyone holding the URL can read
the route and job reference, so put no secrets there. The primary key of the ring signs; every key
that may verify now is tried in turn, so a rotation loses no callback and the result names the key.
"""

from __future__ import annotations

import hashlib
import re
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote, unquote

from itsdangerous import BadData, BadSignature, TimestampSigner, URLSafeTimedSerializer

from verify._errors import BadToken, NoKeys, TokenExpired, TokenRouteMismatch
from verify._keyring import Key, KeyRing, as_key_ring
from verify._window import Clock
from verify.metastudio import _append_params

__all__ = [
    "DEFAULT_TOKEN_TTL",
    "MAX_TOKEN_LENGTH",
    "SALT",
    "TOKEN_PARAM",
    "CallbackToken",
    "mint_callback_url",
    "mint_token",
    "verify_callback_url_token",
    "verify_token",
]

SALT: Final = "avatar-callbacks.callback-url"
"""Domain separation: a key shared with other itsdangerous uses cannot forge callback tokens."""

TOKEN_PARAM: Final = "token"  # noqa: S105 - a parameter name, not a secret
DEFAULT_TOKEN_TTL: Final = 7 * 24 * 3600
"""A week: long enough for slow video jobs, short enough that a leaked URL goes stale."""

MAX_TOKEN_LENGTH: Final = 2048
"""Longer input is refused before any crypto: a minted token is far shorter."""

_MAX_FIELD_LENGTH: Final = 256  # route names and job references
# The shape of a minted token: [.]payload.timestamp.signature in base64url (the leading dot marks
# a compressed payload; timestamp 0 encodes as nothing). base64 decoding would skip other
# characters, so a token with them is refused up front, or ``sig:nature`` would pass for
# ``signature``.
_B64: Final = r"[A-Za-z0-9_\-]"
_TOKEN_SHAPE: Final = re.compile(rf"\.?{_B64}+\.{_B64}*\.{_B64}+")


@dataclass(frozen=True, slots=True)
class CallbackToken:
    """A verified token: what it was minted for, when, until when, and with which key."""

    route: str
    job: str | None
    issued_at: int
    expires_at: int
    key_id: str


class _ClockedSigner(TimestampSigner):
    """A TimestampSigner that reads the injected clock, so tests and replays can fix the time."""

    def __init__(self, secret_key: Any, *, clock: Clock, **kwargs: Any) -> None:
        super().__init__(secret_key, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


def _serializer(key: Key, clock: Clock) -> URLSafeTimedSerializer:
    # One serializer per key (not itsdangerous' own key list) so the matching key can be named.
    return URLSafeTimedSerializer(
        key.secret,
        salt=SALT,
        signer=_ClockedSigner,
        signer_kwargs={"clock": clock, "digest_method": hashlib.sha256},
        fallback_signers=[],
    )


def _check_field(value: object, what: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_FIELD_LENGTH:
        raise ValueError(f"{what} must be a str of 1 to {_MAX_FIELD_LENGTH} characters")
    return value


def mint_token(
    route: str,
    keys: KeyRing | Iterable[Key | str] | str,
    *,
    job: str | None = None,
    ttl: int = DEFAULT_TOKEN_TTL,
    clock: Clock = time.time,
) -> str:
    """A URL-safe token for ``route`` (and ``job``), valid for ``ttl`` seconds from now.

    Signed with the ring's primary key. The token is ASCII letters, digits, ``-``, ``_`` and ``.``.
    """
    _check_field(route, "route")
    if job is not None:
        _check_field(job, "job")
    if type(ttl) is not int or ttl <= 0:
        raise ValueError("ttl must be a positive int (seconds)")
    primary = as_key_ring(keys).primary
    issued_at = int(clock())
    payload = {"r": route, "j": job, "e": issued_at + ttl}
    token = _serializer(primary, lambda: issued_at).dumps(payload)
    assert isinstance(token, str)
    if len(token) > MAX_TOKEN_LENGTH:  # pragma: no cover - fields are bounded well below this
        raise ValueError("the token would be too long")
    return token


def mint_callback_url(
    base_url: str,
    route: str,
    keys: KeyRing | Iterable[Key | str] | str,
    *,
    job: str | None = None,
    ttl: int = DEFAULT_TOKEN_TTL,
    clock: Clock = time.time,
    param: str = TOKEN_PARAM,
) -> str:
    """``base_url`` with a fresh token appended as ``?token=...`` (or ``&token=...``).

    Hand the result to the platform as the job's callback URL. Any fragment of ``base_url`` is
    dropped: it would never reach the server, and parameters after it would be lost.
    """
    if not isinstance(base_url, str) or not base_url:
        raise ValueError("base_url must be a non-empty str")
    token = mint_token(route, keys, job=job, ttl=ttl, clock=clock)
    return _append_params(base_url, f"{quote(param, safe='')}={quote(token, safe='')}")


def _decode(payload: object, issued: object) -> tuple[str, str | None, int, int]:
    """Check the shape of a payload whose signature verified; a bad shape is still a bad token."""
    if not isinstance(payload, dict) or not isinstance(issued, datetime):
        raise BadToken("token payload has an unexpected shape")
    route, job, expires_at = payload.get("r"), payload.get("j"), payload.get("e")
    if (
        not isinstance(route, str)
        or not (job is None or isinstance(job, str))
        or type(expires_at) is not int
    ):
        raise BadToken("token payload has an unexpected shape")
    return route, job, int(issued.timestamp()), expires_at


def verify_token(
    token: object,
    route: str,
    keys: KeyRing | Iterable[Key | str] | str,
    *,
    clock: Clock = time.time,
) -> CallbackToken:
    """Check a token minted by :func:`mint_token` for ``route``; return what it carries.

    Raises :class:`BadToken` for anything that is not a genuine token (including ``None``, an empty
    or non-str value: a missing token is reported as a bad one), :class:`TokenRouteMismatch` for a
    genuine token minted for another route, and :class:`TokenExpired` once ``now > expires_at``
    (the expiry second itself still passes, as the timestamp windows' bounds do). The route is
    checked first. :class:`NoKeys` when no key of the ring may verify now, as for signatures.
    """
    if not isinstance(token, str) or not token:
        raise BadToken("no token")
    if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_SHAPE.fullmatch(token):
        raise BadToken("token is malformed")
    now = int(clock())
    candidates = as_key_ring(keys).verifying_keys(now)
    if not candidates:
        raise NoKeys("no key in the ring may verify at this time")
    for key in candidates:
        try:
            payload, issued = _serializer(key, clock).loads(token, return_timestamp=True)
        except BadSignature as exc:
            # itsdangerous keeps its errors in locals of the frames it raises them from: cycles
            # through the tracebacks, which hold this frame and its callers' (the request's),
            # for the garbage collector to find. A forged flood would run it every few dozen
            # requests; clearing those frames' locals frees them now.
            traceback.clear_frames(exc.__traceback__)
            continue
        except (BadData, ValueError, TypeError, OverflowError):
            raise BadToken("token is malformed") from None
        token_route, job, issued_at, expires_at = _decode(payload, issued)
        if token_route != route:
            raise TokenRouteMismatch("token was minted for another route")
        if now > expires_at:
            raise TokenExpired(f"token expired {now - expires_at} s ago")
        return CallbackToken(token_route, job, issued_at, expires_at, key.id)
    raise BadToken("token signature does not verify with any key")


def verify_callback_url_token(
    query_string: bytes | str,
    route: str,
    keys: KeyRing | Iterable[Key | str] | str,
    *,
    clock: Clock = time.time,
    param: str = TOKEN_PARAM,
) -> CallbackToken:
    """Find the token in a raw received query string and check it with :func:`verify_token`.

    A missing token raises :class:`BadToken`, as does a repeated one (which of two values the app
    would read is framework-dependent, so neither is trusted) and one whose percent-escapes are
    not UTF-8.
    """
    if isinstance(query_string, bytes | bytearray | memoryview):
        query_string = bytes(query_string).decode("utf-8", "surrogateescape")
    elif not isinstance(query_string, str):
        raise BadToken("no query string to read the token from")
    prefix = quote(param, safe="") + "="  # the name as mint_callback_url wrote it
    found = [pair[len(prefix) :] for pair in query_string.split("&") if pair.startswith(prefix)]
    if not found:
        raise BadToken(f"query has no {param} parameter")
    if len(found) > 1:
        raise BadToken(f"query has more than one {param} parameter")
    try:
        token = unquote(found[0], errors="strict")
    except UnicodeDecodeError:  # e.g. ``%ff``: no minted token decodes to anything but ASCII
        raise BadToken("token is malformed") from None
    return verify_token(token, route, keys, clock=clock)
