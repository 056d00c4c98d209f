"""How the client authenticates: AK/SK signing or an IAM token. Secrets never in a repr.

In the key file they are one table, written by ``callbacks keys metastudio set``::

    [metastudio_api]
    ak = "..."      # with sk; or token = "..." alone
    sk = "..."

:func:`credentials_from_table` reads that table (and the legacy ``credentials_file``, which
has the same shape); no error it raises repeats a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from callbacks.confirm.errors import ApiConfigurationError
from callbacks.keyfile import KeyFile

KEY_FILE_TABLE = "metastudio_api"
MAX_CREDENTIAL_LENGTH = 4096
"""Longer than any AK, SK or IAM token (tokens run to a few kilobytes at most)."""
_FIELDS = frozenset({"ak", "sk", "token"})


@dataclass(frozen=True)
class AkSk:
    """An access key pair from IAM; every request is signed (``SDK-HMAC-SHA256``)."""

    ak: str = field(repr=False)
    sk: str = field(repr=False)

    def __repr__(self) -> str:
        return "AkSk(ak='***', sk='***')"


@dataclass(frozen=True)
class IamToken:
    """An IAM user token (``X-Subject-Token`` of IAM's token API), sent as ``X-Auth-Token``."""

    token: str = field(repr=False)

    def __repr__(self) -> str:
        return "IamToken(token='***')"


Credentials = AkSk | IamToken


def check_credential(name: str, value: object, where: str) -> str:
    """``value`` as a credential: a non-empty printable string without spaces, bounded.

    The signature puts the AK in a header and the SK into an HMAC, so a stray newline or space
    (a paste) would fail every request with a 401 far from its cause: refused here instead.
    """
    if not isinstance(value, str) or not value:
        raise ApiConfigurationError(
            "credentials_malformed", f"{where}: {name} must be a non-empty string"
        )
    if len(value) > MAX_CREDENTIAL_LENGTH:
        raise ApiConfigurationError(
            "credentials_malformed", f"{where}: {name} is longer than {MAX_CREDENTIAL_LENGTH}"
        )
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ApiConfigurationError(
            "credentials_malformed", f"{where}: {name} holds spaces or control characters"
        )
    return value


def credentials_from_table(table: object, where: str) -> Credentials | None:
    """The credentials of a ``[metastudio_api]`` table: ``ak`` and ``sk``, or ``token``.

    ``None`` for an empty table; :class:`ApiConfigurationError` for any other shape.
    """
    if not isinstance(table, Mapping):
        raise ApiConfigurationError("credentials_malformed", f"{where} must be a table")
    unknown = sorted(set(table) - _FIELDS)
    if unknown:
        raise ApiConfigurationError(
            "credentials_malformed", f"{where}: unknown field {unknown[0]!r} (ak, sk, token)"
        )
    if not table:
        return None
    if "token" in table:
        if "ak" in table or "sk" in table:
            raise ApiConfigurationError(
                "credentials_malformed", f"{where}: give ak and sk, or token, not both"
            )
        return IamToken(check_credential("token", table["token"], where))
    if "ak" not in table or "sk" not in table:
        raise ApiConfigurationError("credentials_malformed", f"{where}: needs both ak and sk")
    return AkSk(
        check_credential("ak", table["ak"], where), check_credential("sk", table["sk"], where)
    )


def key_file_credentials(keyfile: KeyFile) -> Credentials | None:
    """The credentials in the key file's ``[metastudio_api]`` table, if it has one."""
    table = keyfile.sections.get(KEY_FILE_TABLE)
    if table is None:
        return None
    return credentials_from_table(table, f"key file [{KEY_FILE_TABLE}]")


def with_key_file_credentials(keyfile: KeyFile, credentials: Credentials | None) -> KeyFile:
    """The key file with its ``[metastudio_api]`` table replaced (dropped for ``None``)."""
    sections: dict[str, Any] = dict(keyfile.sections)
    if isinstance(credentials, AkSk):
        sections[KEY_FILE_TABLE] = {"ak": credentials.ak, "sk": credentials.sk}
    elif isinstance(credentials, IamToken):
        sections[KEY_FILE_TABLE] = {"token": credentials.token}
    else:
        sections.pop(KEY_FILE_TABLE, None)
    return KeyFile(keyfile.entries, sections)


def masked_ak(ak: str) -> str:
    """An access key id as shown to operators: enough to tell which one, never all of it."""
    if len(ak) <= 8:
        return "***"
    return f"{ak[:4]}***{ak[-2:]}"
