"""The one exception hierarchy every verifier raises.

Each class carries a stable, machine-readable ``reason`` that the receiver puts in its 4xx body and
its log lines. Messages and context never hold a key, a received signature or an expected one:
they name what was wrong, not the secret material involved.
"""

from __future__ import annotations

from typing import ClassVar


class VerificationError(Exception):
    """Base of everything a verifier raises. Catch this one to reject a callback."""

    reason: ClassVar[str] = "verification_failed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.reason.replace("_", " ")
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class MissingSignature(VerificationError):
    """The callback carries no signature (or no timestamp) where one is required."""

    reason = "missing_signature"


class MalformedSignature(VerificationError):
    """The signature is present but is not the expected number of hex digits."""

    reason = "malformed_signature"


class MalformedTimestamp(VerificationError):
    """The timestamp is not in the strict form the protocol uses."""

    reason = "malformed_timestamp"


class TimestampOutOfWindow(VerificationError):
    """The timestamp is well formed but outside the accepted window."""

    reason = "timestamp_out_of_window"

    def __init__(self, message: str | None = None, *, timestamp: int, now: int) -> None:
        self.timestamp = timestamp
        self.now = now
        super().__init__(message)


class TimestampExpired(TimestampOutOfWindow):
    """Older than ``max_age`` seconds: a replay, or a retry that arrived too late."""

    reason = "timestamp_expired"

    def __init__(self, *, timestamp: int, now: int, max_age: int) -> None:
        self.max_age = max_age
        super().__init__(
            f"timestamp is {now - timestamp} s old, more than the allowed {max_age} s",
            timestamp=timestamp,
            now=now,
        )


class TimestampInFuture(TimestampOutOfWindow):
    """Further ahead than ``max_future_skew`` seconds: a clock problem or a forgery."""

    reason = "timestamp_in_future"

    def __init__(self, *, timestamp: int, now: int, max_future_skew: int) -> None:
        self.max_future_skew = max_future_skew
        super().__init__(
            f"timestamp is {timestamp - now} s ahead, more than the allowed {max_future_skew} s",
            timestamp=timestamp,
            now=now,
        )


class SignatureMismatch(VerificationError):
    """Well formed, in the window, but no key in the ring produces this signature."""

    reason = "signature_mismatch"


class UnsignedParameters(VerificationError):
    """The received query carries parameters the signature does not cover."""

    reason = "unsigned_parameters"


class MalformedPayload(VerificationError):
    """The body is not the JSON document the protocol requires."""

    reason = "malformed_payload"


class NoKeys(VerificationError):
    """The key ring has no key that may verify now, so nothing can be accepted."""

    reason = "no_verifying_key"


class BadToken(VerificationError):
    """A callback-URL token is missing, malformed, or its signature does not verify."""

    reason = "bad_token"


class TokenExpired(BadToken):
    """The token's signature is good but it is older than its time to live."""

    reason = "token_expired"


class TokenRouteMismatch(BadToken):
    """The token is genuine but was minted for another route."""

    reason = "token_wrong_route"


class InvalidKey(ValueError):
    """A key breaks the platform's key rules. Raised when configuring, never when verifying."""
