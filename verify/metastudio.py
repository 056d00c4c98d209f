"""Huawei Cloud MetaStudio callbacks: an HMAC-SHA256 signature carried in the URL (``MSS_A``).

MetaStudio appends a hex ``time_stamp`` and ``secret = hmac_sha256(key, URI(callback_url) +
time_stamp)`` to the callback URL it was given. ``URI`` is host (with a non-default port), path and
the query sorted by parameter name, without the scheme; it is always rebuilt from the *configured*
URL, never from the request, because a proxy changes what the app sees. Live-room callbacks use the
same HMAC with other parameter names, or send the two values in headers (``MSS_A_HEAD``); the
:class:`Carrier` says which.

The signature covers only the configured query, so a received query with any other parameter is
refused: otherwise anyone holding one signed URL could add parameters the app would act on.
"""

from __future__ import annotations

import enum
import functools
import hmac
import secrets
import string
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final, NamedTuple

from verify._errors import (
    InvalidKey,
    MalformedSignature,
    MalformedTimestamp,
    MissingSignature,
    NoKeys,
    SignatureMismatch,
    UnsignedParameters,
)
from verify._keyring import Key, KeyRing, as_key_ring
from verify._window import DEFAULT_MAX_AGE, DEFAULT_MAX_FUTURE_SKEW, Clock, check_window

__all__ = [
    "MAX_KEY_LENGTH",
    "Carrier",
    "MetaStudioVerification",
    "canonical_uri",
    "format_timestamp",
    "generate_key",
    "parse_timestamp",
    "sign",
    "sign_headers",
    "sign_url",
    "validate_key",
    "verify_metastudio_callback",
]

MAX_KEY_LENGTH: Final = 32
"""MetaStudio accepts keys of 0 to 32 characters in ``callback_config.key``."""

_MAX_TIMESTAMP_DIGITS: Final = 16
_SECRET_HEX_LENGTH: Final = 64
_DIGEST_SIZE: Final = 32
_HEX_DIGITS: Final = frozenset(string.hexdigits)
_KEY_ALPHABET: Final = string.ascii_letters + string.digits
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_MAX_NAMES_IN_MESSAGE: Final = 5
_MAX_NAME_LENGTH_IN_MESSAGE: Final = 40


class Carrier(enum.Enum):
    """Where the signature and timestamp travel, with the names MetaStudio uses for them."""

    JOB_QUERY = ("secret", "time_stamp")
    """Jobs (videos, photo avatars, business cards, subtitles), ``auth_type`` ``MSS_A``."""
    LIVE_QUERY = ("hwSecret", "hwTime")
    """Live rooms and live jobs, ``auth_type`` ``MSS_A``."""
    HEADERS = ("x-hw-mss-secret", "x-hw-mss-time")
    """Live rooms and live jobs, ``auth_type`` ``MSS_A_HEAD``."""

    @property
    def secret_name(self) -> str:
        """Name of the query parameter or header holding the hex HMAC."""
        return self.value[0]

    @property
    def time_name(self) -> str:
        """Name of the query parameter or header holding the hex timestamp."""
        return self.value[1]


class MetaStudioVerification(NamedTuple):
    """What a successful verification established; ``key_id`` names the key that matched.

    A named tuple: immutable and the cheapest result to build on the request path.
    """

    key_id: str
    timestamp: int
    carrier: Carrier


_HEADERS: Final = Carrier.HEADERS


# --------------------------------------------------------------------------- timestamps


def format_timestamp(unix_seconds: int) -> str:
    """Unix seconds as MetaStudio sends them: lowercase hex, no padding, no ``0x``."""
    if type(unix_seconds) is not int or unix_seconds < 0:
        raise ValueError("unix_seconds must be a non-negative int")
    text = f"{unix_seconds:x}"
    if len(text) > _MAX_TIMESTAMP_DIGITS:
        raise ValueError(f"unix_seconds does not fit in {_MAX_TIMESTAMP_DIGITS} hex digits")
    return text


def _is_hex(text: str) -> bool:
    # ``int(text, 16)`` alone would also take signs, ``0x``, ``_`` and surrounding whitespace.
    return text.isascii() and _HEX_DIGITS.issuperset(text)


def parse_timestamp(value: object) -> int:
    """Return the Unix seconds in a received hex ``time_stamp``, or raise MalformedTimestamp.

    Accepts 1 to 16 ASCII hex digits in either case and nothing else: the string is signed exactly
    as sent, so only plain digits have an unambiguous meaning.
    """
    if not isinstance(value, str):
        raise MalformedTimestamp(f"timestamp must be a hex string, not {type(value).__name__}")
    if not 1 <= len(value) <= _MAX_TIMESTAMP_DIGITS or not _is_hex(value):
        raise MalformedTimestamp(f"timestamp must be 1 to {_MAX_TIMESTAMP_DIGITS} hex digits")
    return int(value, 16)


# --------------------------------------------------------------------------- the signed URI


class _Configured(NamedTuple):
    """What verification needs from a configured URL, computed once per URL."""

    uri: str
    uri_bytes: bytes  # encoded once here, so a URL that cannot be encoded fails at configuration
    pairs: tuple[str, ...]  # the query's raw ``name=value`` pairs, sorted by full text


def _query_pairs(query: str) -> list[str]:
    # Empty items (``a=1&&b=2``, a trailing ``&``) carry no parameter; they are skipped both here
    # and in received queries, so they neither change the URI nor count as unsigned parameters.
    return [pair for pair in query.split("&") if pair]


def _name(pair: str) -> str:
    return pair.partition("=")[0]


@functools.lru_cache(maxsize=512)
def _configure(callback_url: str) -> _Configured:
    if not isinstance(callback_url, str):
        raise TypeError("callback_url must be a str")
    base = callback_url.partition("#")[0]  # the fragment never reaches the server
    scheme, sep, rest = base.partition("://")
    default_port = _DEFAULT_PORTS.get(scheme.lower())
    if not sep or default_port is None:
        raise ValueError("callback_url must be an absolute http:// or https:// URL")
    end = len(rest)
    for stop in "/?":
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    authority, tail = rest[:end], rest[end:]
    if "@" in authority:
        # MetaStudio's rule for user:password@ is undocumented; refuse rather than guess.
        raise ValueError("callback_url must not contain user information")
    if authority.startswith("["):  # IPv6 literal: the port, if any, follows the bracket
        bracket = authority.find("]")
        host, port_part = authority[: bracket + 1], authority[bracket + 1 :]
        if bracket == -1 or (port_part and not port_part.startswith(":")):
            raise ValueError("callback_url has a malformed IPv6 host")
        port = port_part[1:]
    else:
        host, _, port = authority.partition(":")
    if not host:
        raise ValueError("callback_url has no host")
    if port and not (port.isascii() and port.isdigit()):
        raise ValueError("callback_url has a non-numeric port")
    # The port stays as typed unless it is the scheme's default (an empty port means default too).
    netloc = host if not port or int(port) == default_port else f"{host}:{port}"
    # Decision (no vector settles it): the path is kept exactly as configured, so a URL without a
    # path (``https://host?x=1``) contributes an empty path, not "/". Configure an explicit "/"
    # if that is what MetaStudio is given.
    path, _, query = tail.partition("?")
    pairs = _query_pairs(query)
    uri = netloc + path
    if pairs:
        # Stable sort by name only: values of one name keep their configured order.
        uri += "?" + "&".join(sorted(pairs, key=_name))
    return _Configured(uri=uri, uri_bytes=uri.encode("utf-8"), pairs=tuple(sorted(pairs)))


def canonical_uri(callback_url: str) -> str:
    """``URI(callback_url)`` as MetaStudio signs it: host[:port] + path + ``?`` + sorted query.

    No scheme; the scheme's default port is dropped, any other port kept; the fragment is dropped;
    the query's ``name=value`` pairs are sorted by name with a stable sort, each pair's characters
    kept as configured (no percent-decoding). No query, no ``?``. Raises ValueError for a URL that
    is not absolute http(s) or has user information.
    """
    return _configure(callback_url).uri


# --------------------------------------------------------------------------- keys and signing


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def validate_key(key: str) -> str:
    """Return ``key`` if MetaStudio accepts it (a str of at most 32 characters), else InvalidKey."""
    if not isinstance(key, str):
        raise InvalidKey("a MetaStudio key must be a str")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"a MetaStudio key must be at most {MAX_KEY_LENGTH} characters long")
    if not _encodable(key):
        raise InvalidKey("a MetaStudio key must be encodable as UTF-8")
    return key


def generate_key(length: int = MAX_KEY_LENGTH) -> str:
    """A fresh random key of ASCII letters and digits (1 to 32 characters; use 32)."""
    if type(length) is not int or not 1 <= length <= MAX_KEY_LENGTH:
        raise ValueError(f"length must be an int from 1 to {MAX_KEY_LENGTH}")
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(length))


def sign(callback_url: str, time_stamp: str, key: str) -> str:
    """The ``secret`` MetaStudio sends: hex HMAC-SHA256 of ``canonical_uri(url) + time_stamp``.

    ``time_stamp`` is the hex string exactly as sent (see :func:`format_timestamp`).
    """
    if not isinstance(time_stamp, str) or not 1 <= len(time_stamp) <= _MAX_TIMESTAMP_DIGITS:
        raise ValueError("time_stamp must be a string of 1 to 16 hex digits")
    if not _is_hex(time_stamp):
        raise ValueError("time_stamp must be a string of 1 to 16 hex digits")
    message = (canonical_uri(callback_url) + time_stamp).encode("utf-8")
    return hmac.digest(validate_key(key).encode("utf-8"), message, "sha256").hex()


def _append_params(url: str, params: str) -> str:
    """``url`` with ``params`` appended to its query, as MetaStudio appends its two parameters.

    ``?`` when there is no query, ``&`` otherwise, nothing when the query is empty or already
    ends with ``&``. The fragment is dropped: it never reaches the server.
    """
    base, has_query, query = url.partition("#")[0].partition("?")
    if not has_query:
        return f"{base}?{params}"
    if not query or query.endswith("&"):
        return f"{base}?{query}{params}"
    return f"{base}?{query}&{params}"


def sign_url(
    callback_url: str, key: str, timestamp: int, *, carrier: Carrier = Carrier.JOB_QUERY
) -> str:
    """The URL MetaStudio calls for ``callback_url``: secret, then time, appended to the query."""
    if carrier is Carrier.HEADERS:
        raise ValueError("the HEADERS carrier sends no query parameters: use sign_headers()")
    time_stamp = format_timestamp(timestamp)
    secret = sign(callback_url, time_stamp, key)
    params = f"{carrier.secret_name}={secret}&{carrier.time_name}={time_stamp}"
    return _append_params(callback_url, params)


def sign_headers(callback_url: str, key: str, timestamp: int) -> dict[str, str]:
    """The two headers MetaStudio sends with ``auth_type`` ``MSS_A_HEAD``."""
    time_stamp = format_timestamp(timestamp)
    return {
        Carrier.HEADERS.secret_name: sign(callback_url, time_stamp, key),
        Carrier.HEADERS.time_name: time_stamp,
    }


# --------------------------------------------------------------------------- verification


def _received_pairs(query_string: object) -> list[str]:
    if type(query_string) is not str:
        if isinstance(query_string, bytes | bytearray | memoryview):
            # Undecodable bytes become lone surrogates: they cannot equal a configured pair, so
            # they end up refused as unsigned parameters instead of raising UnicodeDecodeError.
            query_string = bytes(query_string).decode("utf-8", "surrogateescape")
        elif query_string is None:
            query_string = ""
        elif not isinstance(query_string, str):
            raise MissingSignature("the query string must be bytes or str")
    return [pair for pair in query_string.split("&") if pair]


def _header_text(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return value


def _from_headers(headers: object) -> tuple[list[object], list[object]]:
    """Collect every value of the two auth headers, matching names case-insensitively.

    ``items()`` of a Starlette ``Headers`` lists repeated headers separately, and a plain dict
    may hold one name in several spellings; either way a name seen twice is ambiguous.
    """
    if not isinstance(headers, Mapping):
        raise MissingSignature("no headers to read the signature from")
    secret_name, time_name = Carrier.HEADERS.value
    found_secrets: list[object] = []
    found_times: list[object] = []
    for name, value in headers.items():
        name = _header_text(name)
        if not isinstance(name, str) or not name.isascii():
            continue  # str.lower() maps some non-ASCII letters to ASCII ones: K (Kelvin) -> k
        lowered = name.lower()
        if lowered == secret_name:
            found_secrets.append(_header_text(value))
        elif lowered == time_name:
            found_times.append(_header_text(value))
    return found_secrets, found_times


def _describe(names: Iterable[str]) -> str:
    # Names only, never values; quoted with ascii() so odd bytes cannot forge log lines.
    unique = sorted(set(names))
    shown = [ascii(name[:_MAX_NAME_LENGTH_IN_MESSAGE]) for name in unique[:_MAX_NAMES_IN_MESSAGE]]
    more = len(unique) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _unsigned(received: list[str], configured: tuple[str, ...]) -> UnsignedParameters:
    extra = Counter(received) - Counter(configured)
    missing = Counter(configured) - Counter(received)
    parts = []
    if extra:
        parts.append(f"not covered by the signature: {_describe(map(_name, extra))}")
    if missing:
        parts.append(f"configured but missing: {_describe(map(_name, missing))}")
    return UnsignedParameters(
        "query parameters differ from the configured URL; " + "; ".join(parts)
    )


def _secret_bytes(secret: object) -> bytes:
    if not isinstance(secret, str) or len(secret) != _SECRET_HEX_LENGTH:
        raise MalformedSignature("secret must be a string of 64 hex digits")
    try:
        raw = bytes.fromhex(secret)
    except ValueError:
        raise MalformedSignature("secret must be a string of 64 hex digits") from None
    if len(raw) != _DIGEST_SIZE:  # fromhex skipped whitespace
        raise MalformedSignature("secret must be a string of 64 hex digits")
    return raw


def verify_metastudio_callback(
    callback_url: str,
    query_string: bytes | str,
    keys: KeyRing | Iterable[Key | str] | str,
    *,
    carrier: Carrier = Carrier.JOB_QUERY,
    headers: Mapping[str, str] | None = None,
    clock: Clock = time.time,
    max_age: int = DEFAULT_MAX_AGE,
    max_future_skew: int = DEFAULT_MAX_FUTURE_SKEW,
) -> MetaStudioVerification:
    """Check a MetaStudio callback against the configured URL and the route's keys.

    ``callback_url`` is the URL given to MetaStudio in ``callback_config``; ``query_string`` is the
    raw received query (``scope["query_string"]``, without ``?``). For :attr:`Carrier.HEADERS` the
    secret and time come from ``headers`` (any mapping; names match case-insensitively).

    Order of checks: presence of secret and time, a repeated one (ambiguous), timestamp form,
    secret form, query parameters against the configured ones, time window, then the HMAC
    against each key that may verify now. Only VerificationError subclasses are raised for
    anything a sender controls; a bad ``callback_url`` is a configuration error (ValueError).
    """
    configured = _configure(callback_url)
    pairs = _received_pairs(query_string)
    secret_name, time_name = carrier._value_  # the plain attribute behind the .value property
    if carrier is _HEADERS:
        found_secrets, found_times = _from_headers(headers)
        others = pairs
    else:
        found_secrets, found_times, others = [], [], []
        for pair in pairs:
            name, _, value = pair.partition("=")
            if name == secret_name:
                found_secrets.append(value)
            elif name == time_name:
                found_times.append(value)
            else:
                others.append(pair)

    if not found_secrets or not found_times:
        raise MissingSignature(f"callback carries no {secret_name} or no {time_name}")
    if len(found_times) > 1:
        raise MalformedTimestamp(f"{time_name} appears more than once")
    time_stamp = found_times[0]
    timestamp = parse_timestamp(time_stamp)
    assert isinstance(time_stamp, str)  # parse_timestamp accepted it
    if len(found_secrets) > 1:
        raise MalformedSignature(f"{secret_name} appears more than once")
    received = _secret_bytes(found_secrets[0])
    if tuple(sorted(others)) != configured.pairs:
        raise _unsigned(others, configured.pairs)
    now = check_window(timestamp, clock=clock, max_age=max_age, max_future_skew=max_future_skew)

    ring = keys if type(keys) is KeyRing else as_key_ring(keys)
    message = None
    # Same keys as ring.verifying_keys(now), without building a tuple: a key without
    # ``not_after`` always verifies, only the others need asking.
    for key in ring.keys:
        if key.not_after is not None and not key.verifies_at(now):
            continue
        if message is None:
            message = configured.uri_bytes + time_stamp.encode("ascii")
        if hmac.compare_digest(hmac.digest(key.secret.encode(), message, "sha256"), received):
            return MetaStudioVerification(key.id, timestamp, carrier)
    if message is None:
        raise NoKeys("no key in the ring may verify at this time")
    raise SignatureMismatch("secret does not match any key for this callback URL")
