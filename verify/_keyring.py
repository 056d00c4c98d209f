"""Key rings: several keys at once so a key can be rotated without losing a callback.

The first key of a ring is the primary: it is the one that signs. Every key whose time has not run
out verifies. A key is known to the outside world only by its id, a short fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

_KEY_ID_DOMAIN = b"avatar-callbacks key id\x00"


def key_id(secret: str) -> str:
    """A short, stable fingerprint that names a key in logs, metrics and CLI output.

    Domain-separated SHA-256 cut to 12 hex digits: enough to tell a route's keys apart, too short
    to serve as a stand-in for the key anywhere.
    """
    return hashlib.sha256(_KEY_ID_DOMAIN + secret.encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Key:
    """One secret with its id and, for a key being retired, the moment it stops verifying."""

    secret: str = field(repr=False)
    id: str = field(default="")
    not_after: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.secret, str):
            raise TypeError("a key's secret must be a str")
        if not self.id:
            object.__setattr__(self, "id", key_id(self.secret))

    def verifies_at(self, now: float) -> bool:
        return self.not_after is None or now <= self.not_after


@dataclass(frozen=True)
class KeyRing:
    """An ordered set of keys: ``keys[0]`` signs, all keys still in their time verify."""

    keys: tuple[Key, ...]

    def __init__(self, keys: Iterable[Key | str]) -> None:
        ring = tuple(k if isinstance(k, Key) else Key(k) for k in keys)
        object.__setattr__(self, "keys", ring)

    @property
    def primary(self) -> Key:
        if not self.keys:
            raise ValueError("the key ring is empty: there is no key to sign with")
        return self.keys[0]

    def verifying_keys(self, now: float) -> tuple[Key, ...]:
        return tuple(k for k in self.keys if k.verifies_at(now))

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)


def as_key_ring(keys: KeyRing | Iterable[Key | str] | str) -> KeyRing:
    """Accept a ring, a list of keys or one bare key string wherever a ring is expected."""
    if isinstance(keys, KeyRing):
        return keys
    if isinstance(keys, str):
        return KeyRing([keys])
    return KeyRing(keys)
