"""Huawei Cloud's AK/SK request signature (``SDK-HMAC-SHA256``), as the official SDK computes it.

The canonical request is the SDK's: method, the path with every segment percent-encoded (and a
trailing ``/``), the sorted query, the signed headers (every header whose name has no ``_``,
lower-cased, values stripped), and the SHA-256 of the body. ``tests/confirm/test_signer.py``
proves the result byte-identical to the SDK's signer. Pure standard library, so the fake API in
:mod:`callbacks.confirm.testing` checks signatures with the same code.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

QueryValue = str | bool | int | float | Sequence[str]


@dataclass(frozen=True)
class SignedRequest:
    """What to send: the headers to add (``Authorization``, ``X-Sdk-Date``, ``Host``)."""

    headers: dict[str, str]
    signature: str
    signed_headers: tuple[str, ...]


def sdk_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime(DATE_FORMAT)


def sign_request(
    *,
    ak: str,
    sk: str,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, QueryValue]] = (),
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    when: datetime | None = None,
) -> SignedRequest:
    """Sign one request; ``headers`` are those that will be sent (``Host`` added if absent)."""
    all_headers = dict(headers or {})
    if not any(name.lower() == "host" for name in all_headers):
        all_headers["Host"] = host
    date = _header(all_headers, DATE_HEADER)
    if date is None:
        date = sdk_date(when or datetime.now(UTC))
        all_headers[DATE_HEADER] = date
    signed = signed_header_names(all_headers)
    canonical = canonical_request(method, path, query, all_headers, signed, body)
    signature = string_signature(sk, date, canonical)
    added = {name: value for name, value in all_headers.items() if name not in (headers or {})}
    added["Authorization"] = authorization_value(ak, signed, signature)
    return SignedRequest(headers=added, signature=signature, signed_headers=signed)


def authorization_value(ak: str, signed_headers: Sequence[str], signature: str) -> str:
    return (
        f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
    )


def string_signature(sk: str, date: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    return hmac.new(sk.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def signed_header_names(headers: Mapping[str, str]) -> tuple[str, ...]:
    # The SDK leaves out any header with "_" in its name (proxies may drop them).
    return tuple(sorted({name.lower() for name in headers if "_" not in name}))


def canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, QueryValue]],
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    by_name = {name.lower(): str(value).strip() for name, value in headers.items()}
    canonical_headers = "".join(f"{name}:{by_name[name]}\n" for name in signed_headers)
    payload = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
    return "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            payload,
        )
    )


def canonical_uri(path: str) -> str:
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_query(query: Sequence[tuple[str, QueryValue]]) -> str:
    parts: list[str] = []
    for key, value in sorted(query, key=lambda kv: (kv[0], _sort_key(kv[1]))):
        name = _encode(key)
        if isinstance(value, bool):
            parts.append(f"{name}={_encode(str(value).lower())}")
        elif isinstance(value, str | int | float):
            parts.append(f"{name}={_encode(str(value))}")
        else:
            parts.extend(f"{name}={_encode(str(v))}" for v in sorted(value))
    return "&".join(parts)


def query_string(query: Sequence[tuple[str, QueryValue]]) -> str:
    """The query as sent: the canonical form (the SDK sends exactly what it signed)."""
    return canonical_query(query)


def _sort_key(value: QueryValue) -> str:
    return str(value)


def _encode(text: str) -> str:
    return quote(text, safe="~")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None
