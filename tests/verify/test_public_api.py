"""The curated public surface of ``verify``: exactly the intended names, all importable."""

from __future__ import annotations

import importlib
import inspect

import pytest

import verify

EXPECTED = {
    # errors
    "VerificationError",
    "MissingSignature",
    "MalformedSignature",
    "MalformedTimestamp",
    "TimestampOutOfWindow",
    "TimestampExpired",
    "TimestampInFuture",
    "SignatureMismatch",
    "UnsignedParameters",
    "MalformedPayload",
    "NoKeys",
    "BadToken",
    "TokenExpired",
    "TokenRouteMismatch",
    "InvalidKey",
    # keys and time
    "Key",
    "KeyRing",
    "key_id",
    "Clock",
    # verifiers and their results
    "verify_sensetime_callback",
    "SenseTimeVerification",
    "verify_metastudio_callback",
    "MetaStudioVerification",
    "Carrier",
    "mint_callback_url",
    "verify_token",
    "verify_callback_url_token",
    "CallbackToken",
}

ERRORS = {
    "MissingSignature",
    "MalformedSignature",
    "MalformedTimestamp",
    "TimestampOutOfWindow",
    "TimestampExpired",
    "TimestampInFuture",
    "SignatureMismatch",
    "UnsignedParameters",
    "MalformedPayload",
    "NoKeys",
    "BadToken",
    "TokenExpired",
    "TokenRouteMismatch",
}


def test_all_is_exactly_the_intended_set() -> None:
    assert len(verify.__all__) == len(set(verify.__all__))
    assert set(verify.__all__) == EXPECTED


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from verify import *", namespace)  # noqa: S102 - the point of the test
    namespace.pop("__builtins__")
    assert set(namespace) == EXPECTED


def test_no_other_public_attributes_besides_submodules() -> None:
    public = {name for name in vars(verify) if not name.startswith("_")}
    submodules = {"sensetime", "metastudio", "tokens", "testing"}
    assert public - EXPECTED <= submodules


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "verify.sensetime",
            {
                "sign",
                "canonical_string",
                "parse_timestamp",
                "verify_sensetime_callback",
                "SenseTimeVerification",
                "MAX_AUTH_KEY_LENGTH",
                "validate_auth_key",
                "generate_auth_key",
            },
        ),
        (
            "verify.metastudio",
            {
                "canonical_uri",
                "format_timestamp",
                "parse_timestamp",
                "sign",
                "sign_url",
                "sign_headers",
                "Carrier",
                "MetaStudioVerification",
                "verify_metastudio_callback",
                "MAX_KEY_LENGTH",
                "validate_key",
                "generate_key",
            },
        ),
        (
            "verify.tokens",
            {
                "TOKEN_PARAM",
                "DEFAULT_TOKEN_TTL",
                "CallbackToken",
                "mint_token",
                "mint_callback_url",
                "verify_token",
                "verify_callback_url_token",
            },
        ),
        (
            "verify.testing",
            {
                "FIXED_NOW",
                "fixed_clock",
                "signed_sensetime_body",
                "signed_metastudio_url",
                "signed_metastudio_headers",
            },
        ),
    ],
)
def test_submodules_are_importable_with_their_names(module: str, names: set[str]) -> None:
    mod = importlib.import_module(module)
    for name in names:
        assert hasattr(mod, name), name
    assert names <= set(mod.__all__)
    for name in mod.__all__:
        assert hasattr(mod, name), name


def test_reexports_are_the_submodule_objects() -> None:
    from verify import metastudio, sensetime, tokens

    assert verify.verify_sensetime_callback is sensetime.verify_sensetime_callback
    assert verify.verify_metastudio_callback is metastudio.verify_metastudio_callback
    assert verify.Carrier is metastudio.Carrier
    assert verify.verify_token is tokens.verify_token


def test_error_hierarchy() -> None:
    for name in ERRORS:
        cls = getattr(verify, name)
        assert issubclass(cls, verify.VerificationError), name
        assert cls.reason
    reasons = [getattr(verify, name).reason for name in ERRORS]
    assert len(reasons) == len(set(reasons))
    assert issubclass(verify.TimestampExpired, verify.TimestampOutOfWindow)
    assert issubclass(verify.TokenExpired, verify.BadToken)
    assert issubclass(verify.InvalidKey, ValueError)
    assert not issubclass(verify.InvalidKey, verify.VerificationError)


@pytest.mark.parametrize(
    ("func", "positional", "keyword"),
    [
        (
            "verify_sensetime_callback",
            ["callback_url", "body", "keys"],
            ["clock", "max_age", "max_future_skew"],
        ),
        (
            "verify_metastudio_callback",
            ["callback_url", "query_string", "keys"],
            ["carrier", "headers", "clock", "max_age", "max_future_skew"],
        ),
        ("verify_token", ["token", "route", "keys"], ["clock"]),
        ("verify_callback_url_token", ["query_string", "route", "keys"], ["clock", "param"]),
        ("mint_callback_url", ["base_url", "route", "keys"], ["job", "ttl", "clock", "param"]),
    ],
)
def test_signatures(func: str, positional: list[str], keyword: list[str]) -> None:
    params = inspect.signature(getattr(verify, func)).parameters.values()
    assert [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD] == positional
    assert [p.name for p in params if p.kind is p.KEYWORD_ONLY] == keyword
