"""Who is asking: bearer tokens, browser sessions, and the CSRF token every browser action carries.

Two roles: ``admin`` acts (replay, purge), ``read_only`` only looks. A script sends
``Authorization: Bearer TOKEN``; a browser signs in once with the token and then holds a session
cookie (signed with itsdangerous, ``HttpOnly``, ``SameSite=Strict``). A cookie is sent by the
browser whoever made the page, so every action on a session must also carry the session's CSRF
token (a form field or the ``X-CSRF-Token`` header); a bearer token is never sent by a browser on
its own, so it needs none.

The tokens are read from the key file's ``[admin]`` table (``token``, ``read_only_token``) or
the environment (``CALLBACKS_ADMIN_TOKEN``, ``CALLBACKS_ADMIN_READ_ONLY_TOKEN``, which win).
A running console follows the key file (:class:`TokenSource`): a changed token takes effect at
the next request, without a restart, and ends the sessions signed with the old one.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog
from itsdangerous import BadSignature, URLSafeTimedSerializer

from callbacks.errors import CallbacksError, KeyFileError
from callbacks.keyfile import KeyFile, read_key_file

ADMIN_TOKEN_ENV = "CALLBACKS_ADMIN_TOKEN"  # noqa: S105 - the variable's name, not a token
READ_ONLY_TOKEN_ENV = "CALLBACKS_ADMIN_READ_ONLY_TOKEN"  # noqa: S105
SECTION = "admin"
MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "callbacks_console"
SIGN_IN_COOKIE = "callbacks_console_sign_in"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SESSION_SECONDS = 12 * 3600
SIGN_IN_SECONDS = 3600

Role = Literal["admin", "read_only"]


class ConsoleUnavailable(CallbacksError):
    """The console cannot start (no token, a bad token, its port taken). Never names a token."""


@dataclass(frozen=True)
class AdminTokens:
    admin: str = field(repr=False)
    read_only: str | None = field(default=None, repr=False)

    def role_for(self, presented: str) -> Role | None:
        """The role ``presented`` grants, compared in constant time against every token."""
        offered = _digest(presented)
        is_admin = hmac.compare_digest(offered, _digest(self.admin))
        is_reader = self.read_only is not None and hmac.compare_digest(
            offered, _digest(self.read_only)
        )
        if is_admin:
            return "admin"
        return "read_only" if is_reader else None

    @property
    def session_key(self) -> bytes:
        """Sessions are signed with a key derived from the tokens: changing a token ends them."""
        material = f"{self.admin}\0{self.read_only or ''}".encode()
        return hashlib.sha256(b"avatar-callbacks console sessions\0" + material).digest()


def _digest(token: str) -> bytes:
    # Equal-length digests: compare_digest's time then says nothing about the token's length.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def load_tokens(keyfile: KeyFile, env: Mapping[str, str]) -> AdminTokens:
    """The console's tokens; ConsoleUnavailable (one line, no secret) when there is none."""
    section = keyfile.sections.get(SECTION, {})
    if not isinstance(section, Mapping) or set(section) - {"token", "read_only_token"}:
        raise ConsoleUnavailable(
            "key file: [admin] must hold only token = ... and read_only_token = ..."
        )
    admin = env.get(ADMIN_TOKEN_ENV) or section.get("token")
    reader = env.get(READ_ONLY_TOKEN_ENV) or section.get("read_only_token")
    if not admin:
        raise ConsoleUnavailable(
            f"the console ([admin] listen) needs a token: set {ADMIN_TOKEN_ENV} or token = "
            "in the key file's [admin] table; not starting"
        )
    for name, value in (("token", admin), ("read_only_token", reader)):
        if value is None:
            continue
        if not isinstance(value, str) or len(value) < MIN_TOKEN_LENGTH:
            raise ConsoleUnavailable(
                f"the console's {name} must be a string of at least {MIN_TOKEN_LENGTH} "
                "characters; not starting"
            )
    if reader is not None and reader == admin:
        raise ConsoleUnavailable("the console's read_only_token must differ from its token")
    return AdminTokens(admin=admin, read_only=reader)


class TokenSource:
    """The console's tokens as the key file gives them now: the file is looked at (one ``stat``)
    on each request and re-read when it changed. A file that no longer gives valid tokens keeps
    the last good ones and logs why (never a token); tokens from the environment stay fixed."""

    def __init__(self, path: Path, env: Mapping[str, str], tokens: AdminTokens) -> None:
        self.path = path
        self.env = env
        self.tokens = tokens
        self._identity = _file_identity(path)

    def current(self) -> AdminTokens:
        identity = _file_identity(self.path)
        if identity == self._identity:
            return self.tokens
        self._identity = identity
        try:
            fresh = load_tokens(read_key_file(self.path, missing_ok=True), self.env)
        except (KeyFileError, ConsoleUnavailable) as exc:
            _log.error("console_tokens_reload_failed", error=str(exc))
            return self.tokens
        if fresh != self.tokens:
            _log.info("console_tokens_loaded", read_only=fresh.read_only is not None)
            self.tokens = fresh
        return self.tokens


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


_log = structlog.get_logger("avatar_callbacks.admin")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its role, and the CSRF token its actions must carry (sessions)."""

    role: Role
    csrf: str | None = field(default=None, repr=False)

    @property
    def can_act(self) -> bool:
        return self.role == "admin"


class Sessions:
    """Browser sessions and the sign-in form's own anti-forgery nonce, as signed cookie values."""

    def __init__(self, tokens: AdminTokens) -> None:
        self.tokens = tokens
        self._sessions = URLSafeTimedSerializer(tokens.session_key, salt="console.session")
        self._sign_in = URLSafeTimedSerializer(tokens.session_key, salt="console.sign-in")

    def issue(self, role: Role) -> tuple[str, Principal]:
        principal = Principal(role=role, csrf=secrets.token_urlsafe(32))
        return self._sessions.dumps({"role": role, "csrf": principal.csrf}), principal

    def read(self, value: str) -> Principal | None:
        try:
            data = self._sessions.loads(value, max_age=SESSION_SECONDS)
        except BadSignature:  # tampered, expired (SignatureExpired is a BadSignature) or junk
            return None
        if not isinstance(data, dict):
            return None
        role, csrf = data.get("role"), data.get("csrf")
        if role not in ("admin", "read_only") or not isinstance(csrf, str):
            return None
        return Principal(role=role, csrf=csrf)

    def sign_in_nonce(self) -> tuple[str, str]:
        """A nonce for the sign-in form, and its signed cookie value (double submit)."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._sign_in.dumps(nonce)

    def sign_in_nonce_matches(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted:
            return False
        try:
            nonce = self._sign_in.loads(cookie, max_age=SIGN_IN_SECONDS)
        except BadSignature:
            return False
        return isinstance(nonce, str) and hmac.compare_digest(nonce, submitted)


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer ...`` header; None when there is no such header."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return ""  # an Authorization header of another kind: present, and wrong
    return token.strip()


def authenticate(
    tokens: AdminTokens,
    sessions: Sessions,
    authorization: str | None,
    session_cookie: str | None,
) -> Principal | None:
    """The caller, from its bearer token or else its session cookie; None: not signed in.

    A request that sends a bearer token is judged by it alone, so a wrong token is refused even
    from a browser that also holds a session.
    """
    token = bearer_token(authorization)
    if token is not None:
        role = tokens.role_for(token)
        return Principal(role=role) if role else None
    if session_cookie:
        return sessions.read(session_cookie)
    return None


def csrf_ok(principal: Principal, submitted: str | None) -> bool:
    """Whether an action may go ahead as far as forgery goes: bearer callers always; session
    callers only with their session's token."""
    if principal.csrf is None:
        return True
    return submitted is not None and hmac.compare_digest(
        submitted.encode("utf-8", "surrogatepass"), principal.csrf.encode()
    )
