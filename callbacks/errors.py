"""Every error the receiver raises on purpose, under one root.

``except CallbacksError`` catches anything avatar-callbacks means to raise; anything else that
escapes is a bug. Each class carries what a caller needs to act on it, never a secret.
Verification failures keep their own root, :class:`verify.VerificationError`, because the
``verify`` package is used on its own.
"""

from __future__ import annotations


class CallbacksError(Exception):
    """The root of avatar-callbacks' own errors."""


class ConfigError(CallbacksError):
    """The configuration cannot be used. The message names the file and the setting."""

    def __init__(self, source: str, setting: str, problem: str) -> None:
        self.source = source
        self.setting = setting
        self.problem = problem
        where = f"{source}: {setting}" if setting else source
        super().__init__(f"{where}: {problem}")


class KeyFileError(CallbacksError):
    """The key file is missing, unreadable, unsafe or malformed. Never carries a secret."""


class HandlerLoadError(CallbacksError):
    """A configured handler module or entry point cannot be loaded."""


class StoreUnavailable(CallbacksError):
    """The store cannot take or give events right now; the receiver answers 503."""


class SchemaOutOfDate(StoreUnavailable):
    """The database has no schema, or an older one: run ``callbacks db upgrade``."""


class Rejected(CallbacksError):
    """A request the receiver answers with a 4xx/5xx and a stable reason code."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(reason)


class DeliveryRefused(CallbacksError):
    """Raised by a handler or sink when retrying cannot help (an HTTP 410, say): that delivery is
    dead at once instead of after ``max_attempts``."""
