"""Key rotation: the platforms' procedure as rules, one safe step at a time.

``add`` a new key (a route's first key is its primary; later ones are ``next``, which verify
before they sign, so the receiver accepts the new key before the platform is switched to it),
``promote`` it (the old primary becomes ``previous`` and verifies until its ``retire_after``),
and ``retire`` the old one once it has been quiet: never the primary, never a key that verified
a callback within the quiet period, because the platform may still be signing with it.
"""

from __future__ import annotations

from datetime import datetime

from callbacks.errors import CallbacksError
from callbacks.keyfile import KeyEntry, KeyFile, KeyState
from verify import InvalidKey
from verify.metastudio import generate_key, validate_key
from verify.sensetime import generate_auth_key, validate_auth_key

__all__ = [
    "KeyStillInUse",
    "add_key",
    "check_key",
    "check_retirable",
    "generate_key_for",
]


class KeyStillInUse(CallbacksError):
    """Retiring this key could refuse callbacks the platform still signs with it: it is the
    route's primary key (``last_verified_at`` is None), or it verified a callback at
    ``last_verified_at``, less than ``quiet_period`` seconds ago."""

    def __init__(
        self, entry: KeyEntry, *, last_verified_at: float | None = None, quiet_period: float = 0
    ) -> None:
        self.entry = entry
        self.last_verified_at = last_verified_at
        self.quiet_period = quiet_period
        why = (
            "is its primary key"
            if last_verified_at is None
            else "verified a callback within the quiet period"
        )
        super().__init__(f"key {entry.id} of route {entry.route!r} {why}")

    @property
    def is_primary(self) -> bool:
        return self.last_verified_at is None


def generate_key_for(provider: str | None) -> str:
    """A fresh key for ``provider``; with none, one that satisfies both platforms' rules."""
    if provider == "metastudio":
        return generate_key()
    return generate_auth_key()


def check_key(provider: str, secret: str) -> None:
    """Raise InvalidKey (never naming the key) unless ``provider`` accepts ``secret``."""
    if not secret:
        raise InvalidKey("the key is empty")
    if secret != secret.strip():
        raise InvalidKey("the key starts or ends with whitespace (a copy-and-paste slip?)")
    if provider == "sensetime":
        validate_auth_key(secret)
    else:
        validate_key(secret)


def add_key(keys: KeyFile, route: str, secret: str, *, now: datetime) -> KeyFile:
    """``secret`` joins ``route``: as its primary if it has none, else as ``next``."""
    state: KeyState = "primary" if keys.primary(route) is None else "next"
    return keys.add(route, secret, state=state, now=now)


def check_retirable(
    entry: KeyEntry, *, last_verified_at: float | None, quiet_period: float, now: float
) -> None:
    """Raise :class:`KeyStillInUse` if ``entry`` is the primary key, or verified a callback
    less than ``quiet_period`` seconds before ``now``."""
    if entry.state == "primary":
        raise KeyStillInUse(entry)
    if last_verified_at is not None and now - last_verified_at < quiet_period:
        raise KeyStillInUse(entry, last_verified_at=last_verified_at, quiet_period=quiet_period)
