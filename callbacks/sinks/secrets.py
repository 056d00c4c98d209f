"""HTTP sinks' signing secrets: ``whsec_`` secrets in the key file, several at once to rotate.

    [sinks.hooks]
    secrets = ["whsec_NEW...", "whsec_OLD..."]

Every secret listed signs every message (Standard Webhooks puts one ``v1,`` signature per secret
in ``webhook-signature``), so a consumer switched to the new secret and one still on the old
both verify while the rotation is under way: add the new one, move the consumers, retire the old.
The secrets live in the key file, never in the config, and are shown only by id.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets as random_source
from collections.abc import Sequence
from pathlib import Path

import structlog

from callbacks.errors import KeyFileError
from callbacks.keyfile import KeyFile, read_key_file
from verify import key_id

PREFIX = "whsec_"
SECTION = "sinks"
log = structlog.get_logger("avatar_callbacks.sinks")
_MIN_BYTES, _MAX_BYTES = 24, 64


def generate_secret() -> str:
    """A fresh secret: 32 random bytes, base64, with the ``whsec_`` prefix."""
    return PREFIX + base64.b64encode(random_source.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for; KeyFileError (never naming it) otherwise."""
    if not secret.startswith(PREFIX):
        raise KeyFileError("a sink secret must start with whsec_")
    try:
        raw = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError("a sink secret must be whsec_ followed by base64") from None
    if not _MIN_BYTES <= len(raw) <= _MAX_BYTES:
        raise KeyFileError(f"a sink secret must hold {_MIN_BYTES} to {_MAX_BYTES} bytes")
    return raw


def secret_id(secret: str) -> str:
    return key_id(secret)


def sink_secrets(keyfile: KeyFile, sink: str) -> tuple[str, ...]:
    """The secrets ``sink`` signs with, newest first, each checked."""
    section = keyfile.sections.get(SECTION, {})
    if not isinstance(section, dict):
        raise KeyFileError("key file: [sinks] must be a table of [sinks.NAME] tables")
    table = section.get(sink, {})
    if not isinstance(table, dict) or set(table) - {"secrets"}:
        raise KeyFileError(f"key file: [sinks.{sink}] must hold only secrets = [...]")
    values = table.get("secrets", [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise KeyFileError(f"key file: sinks.{sink}.secrets must be a list of whsec_ strings")
    for value in values:
        try:
            secret_bytes(value)
        except KeyFileError as exc:
            raise KeyFileError(f"key file: sinks.{sink}.secrets: {exc}") from None
    return tuple(values)


def with_sink_secrets(keyfile: KeyFile, sink: str, values: Sequence[str]) -> KeyFile:
    """The key file with ``sink``'s secrets replaced (its section dropped when none are left)."""
    sections = dict(keyfile.sections)
    section = dict(sections.get(SECTION, {}))
    if values:
        section[sink] = {"secrets": list(values)}
    else:
        section.pop(sink, None)
    if section:
        sections[SECTION] = section
    else:
        sections.pop(SECTION, None)
    return KeyFile(keyfile.entries, sections)


class SecretSource:
    """A sink's secrets as the key file holds them now: re-read when the file changes, so a
    rotation takes effect without a restart. A broken file keeps the secrets last read."""

    def __init__(self, path: Path, sink: str) -> None:
        self.path = path
        self.sink = sink
        self._identity: tuple[int, int, int] | None = None
        self._keys: tuple[bytes, ...] = ()

    def load(self) -> None:
        """First read, at start: a missing or bad file, or no secret at all, is an error."""
        self._read(self._stat())
        if not self._keys:
            raise KeyFileError(
                f"HTTP sink {self.sink!r} has no signing secret in {self.path}: run "
                f"`callbacks keys sink add {self.sink}`"
            )

    def keys(self) -> tuple[bytes, ...]:
        identity = self._stat()
        if identity != self._identity:
            try:
                self._read(identity)
            except KeyFileError as exc:
                log.error("sink_secrets_reload_failed", sink=self.sink, error=str(exc))
                self._identity = identity  # not again until the file changes
        return self._keys

    def _read(self, identity: tuple[int, int, int] | None) -> None:
        values = sink_secrets(read_key_file(self.path), self.sink)
        self._identity = identity
        if values:
            self._keys = tuple(secret_bytes(v) for v in values)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)
