"""How the client authenticates: AK/SK signing or an IAM token. Secrets never in a repr."""

from __future__ import annotations

from dataclasses import dataclass, field


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
