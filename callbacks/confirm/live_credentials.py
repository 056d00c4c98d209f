"""The API credentials the running server signs with, picked up again when the key file changes.

``callbacks keys metastudio set`` rewrites the key file; the client asks :class:`LiveCredentials`
for the credentials on every request, which re-reads the file only when its identity (inode,
size, mtime) changed, so a rotated SK is used from the next request on, without a restart.
Credentials from the environment are fixed for the life of the process (they win over the files).
A change that leaves no usable credentials is logged (never a value) and the last good ones stay.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import structlog

from callbacks.confirm.credentials import Credentials
from callbacks.confirm.errors import ApiConfigurationError
from callbacks.confirm.settings import (
    FoundCredentials,
    MetaStudioApiSettings,
    environment_credentials,
    find_credentials,
)
from callbacks.keyfile import file_identity

log = structlog.get_logger("avatar_callbacks.confirm")


class LiveCredentials:
    def __init__(
        self,
        api: MetaStudioApiSettings,
        env: Mapping[str, str] | None = None,
        key_file: Path | None = None,
    ) -> None:
        self.api = api
        self.key_file = key_file
        self._from_env = environment_credentials(env)
        self._identity = file_identity(key_file) if key_file is not None else None
        self._found = self._from_env or find_credentials(api, {}, key_file)

    @property
    def source(self) -> str:
        """Where the credentials in use come from: environment, key_file or credentials_file."""
        return self._found.source

    def __call__(self) -> Credentials:
        """The credentials to sign this request with."""
        if self._from_env is None and self.key_file is not None:
            identity = file_identity(self.key_file)
            if identity != self._identity:
                self._identity = identity  # a broken file is not re-read until it changes
                self._reload()
        return self._found.credentials

    def _reload(self) -> None:
        try:
            found: FoundCredentials = find_credentials(self.api, {}, self.key_file)
        except ApiConfigurationError as exc:
            log.error("metastudio_credentials_reload_failed", reason=exc.reason, error=str(exc))
            return
        if found.credentials != self._found.credentials:
            log.info("metastudio_credentials_loaded", source=found.source)
        self._found = found
