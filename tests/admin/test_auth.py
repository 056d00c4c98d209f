"""Console tokens and sessions: constant-time roles, signed cookies no mutation gets past."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbacks.admin.auth import (
    AdminTokens,
    ConsoleUnavailable,
    Principal,
    Sessions,
    authenticate,
    bearer_token,
    csrf_ok,
    load_tokens,
)
from callbacks.keyfile import KeyFile

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"
TOKENS = AdminTokens(ADMIN, READER)


def test_roles() -> None:
    assert TOKENS.role_for(ADMIN) == "admin"
    assert TOKENS.role_for(READER) == "read_only"
    assert TOKENS.role_for(ADMIN + "x") is None
    assert TOKENS.role_for("") is None
    assert AdminTokens(ADMIN).role_for("") is None


def test_tokens_never_show_in_repr() -> None:
    assert ADMIN not in repr(TOKENS)
    assert READER not in repr(TOKENS)


def test_environment_wins_over_the_key_file() -> None:
    keyfile = KeyFile(sections={"admin": {"token": "file-token-0123456789"}})
    assert load_tokens(keyfile, {}).admin == "file-token-0123456789"
    env = {"CALLBACKS_ADMIN_TOKEN": ADMIN, "CALLBACKS_ADMIN_READ_ONLY_TOKEN": READER}
    assert load_tokens(keyfile, env) == AdminTokens(ADMIN, READER)


@pytest.mark.parametrize(
    ("sections", "env", "says"),
    [
        ({}, {}, "needs a token"),
        ({"admin": {"token": "short"}}, {}, "at least 16"),
        ({"admin": {"token": ADMIN, "extra": 1}}, {}, "must hold only"),
        ({"admin": {"token": ADMIN, "read_only_token": ADMIN}}, {}, "must differ"),
        ({"admin": {"token": 12345678901234567}}, {}, "must be a string"),
        ({}, {"CALLBACKS_ADMIN_READ_ONLY_TOKEN": READER}, "needs a token"),
    ],
)
def test_no_usable_token_refuses_in_one_line(sections: dict, env: dict, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConsoleUnavailable) as refused:
        load_tokens(KeyFile(sections=sections), env)
    assert says in str(refused.value)
    assert "\n" not in str(refused.value)
    assert "short" not in str(refused.value)


def test_a_session_round_trips_and_carries_its_own_csrf_token() -> None:
    sessions = Sessions(TOKENS)
    value, issued = sessions.issue("admin")
    assert sessions.read(value) == issued
    assert issued.csrf
    _, other = sessions.issue("admin")
    assert other.csrf != issued.csrf
    assert ADMIN not in value


def test_changing_a_token_ends_every_session() -> None:
    value, _ = Sessions(TOKENS).issue("admin")
    assert Sessions(AdminTokens("another-admin-token-000", READER)).read(value) is None
    assert Sessions(AdminTokens(ADMIN, "another-reader-token-00")).read(value) is None


@given(st.data())
def test_every_single_mutation_of_a_session_cookie_is_refused(data: st.DataObject) -> None:
    sessions = Sessions(TOKENS)
    value, _ = sessions.issue("read_only")
    index = data.draw(st.integers(0, len(value) - 1))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
    replacement = data.draw(st.sampled_from(alphabet).filter(lambda c: c != value[index]))
    mutated = value[:index] + replacement + value[index + 1 :]
    principal = sessions.read(mutated)
    # Base64's last character can carry unused bits: a change there may decode to the same bytes.
    assert principal is None or principal == sessions.read(value)


@given(st.text(max_size=300))
def test_junk_cookies_read_as_signed_out(junk: str) -> None:
    assert Sessions(TOKENS).read(junk) is None


@given(st.text(max_size=200), st.text(max_size=200) | st.none())
def test_authenticate_never_raises_and_never_grants_on_junk(
    authorization: str, cookie: str | None
) -> None:
    principal = authenticate(TOKENS, Sessions(TOKENS), authorization, cookie)
    assert principal is None


def test_a_wrong_bearer_token_is_refused_even_with_a_session() -> None:
    sessions = Sessions(TOKENS)
    value, _ = sessions.issue("admin")
    assert authenticate(TOKENS, sessions, "Bearer nope-0123456789xx", value) is None
    assert authenticate(TOKENS, sessions, None, value) is not None
    assert authenticate(TOKENS, sessions, f"Bearer {READER}", value) == Principal("read_only")


def test_bearer_header_forms() -> None:
    assert bearer_token(None) is None
    assert bearer_token(f"bearer {ADMIN}") == ADMIN
    assert bearer_token(f"Basic {ADMIN}") == ""


def test_csrf() -> None:
    assert csrf_ok(Principal("admin"), None)  # a bearer caller: no cookie, nothing to forge
    session = Principal("admin", csrf="expected-token")
    assert csrf_ok(session, "expected-token")
    for wrong in (None, "", "expected-toke", "expected-token ", "\udcff"):
        assert not csrf_ok(session, wrong)


def test_the_sign_in_nonce_is_double_submitted() -> None:
    sessions = Sessions(TOKENS)
    nonce, cookie = sessions.sign_in_nonce()
    assert sessions.sign_in_nonce_matches(cookie, nonce)
    other_nonce, _ = sessions.sign_in_nonce()
    assert not sessions.sign_in_nonce_matches(cookie, other_nonce)
    assert not sessions.sign_in_nonce_matches(None, nonce)
    assert not sessions.sign_in_nonce_matches(nonce, nonce)
