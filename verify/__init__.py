"""Signature verification for SenseTime SoftSugar and Huawei Cloud MetaStudio callbacks.

The names here are the supported surface; the protocol details (signing helpers, timestamp
parsers, key rules) live in :mod:`verify.sensetime`, :mod:`verify.metastudio` and
:mod:`verify.tokens`, and :mod:`verify.testing` helps users sign callbacks in their own tests.
Every verifier raises a :class:`VerificationError` subclass, and nothing else, for bad input.
"""

from verify._errors import (
    BadToken,
    InvalidKey,
    MalformedPayload,
    MalformedSignature,
    MalformedTimestamp,
    MissingSignature,
    NoKeys,
    SignatureMismatch,
    TimestampExpired,
    TimestampInFuture,
    TimestampOutOfWindow,
    TokenExpired,
    TokenRouteMismatch,
    UnsignedParameters,
    VerificationError,
)
from verify._keyring import Key, KeyRing, key_id
from verify._window import Clock
from verify.metastudio import Carrier, MetaStudioVerification, verify_metastudio_callback
from verify.sensetime import SenseTimeVerification, verify_sensetime_callback
from verify.tokens import CallbackToken, mint_callback_url, verify_callback_url_token, verify_token

__all__ = [
    "BadToken",
    "CallbackToken",
    "Carrier",
    "Clock",
    "InvalidKey",
    "Key",
    "KeyRing",
    "MalformedPayload",
    "MalformedSignature",
    "MalformedTimestamp",
    "MetaStudioVerification",
    "MissingSignature",
    "NoKeys",
    "SenseTimeVerification",
    "SignatureMismatch",
    "TimestampExpired",
    "TimestampInFuture",
    "TimestampOutOfWindow",
    "TokenExpired",
    "TokenRouteMismatch",
    "UnsignedParameters",
    "VerificationError",
    "key_id",
    "mint_callback_url",
    "verify_callback_url_token",
    "verify_metastudio_callback",
    "verify_sensetime_callback",
    "verify_token",
]
