"""What every console request needs: the config, the tokens and sessions, and the store (opened
at the first request that needs it, so the console never races the receiver's own start-up)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from starlette.requests import Request

from callbacks.admin.auth import (
    SESSION_COOKIE,
    AdminTokens,
    Principal,
    Sessions,
    TokenSource,
    authenticate,
)
from callbacks.admin.throttle import FailedSignIns
from callbacks.config import Config
from callbacks.keyfile import KeyFile, read_key_file
from callbacks.store import Admin, Lifecycle


class ConsoleStore(Lifecycle, Admin, Protocol):
    """The store as the console uses it: the admin role, plus the pending count for health."""

    async def inbox_depth(self) -> int: ...


@dataclass
class Console:
    config: Config
    tokens: AdminTokens
    store: ConsoleStore
    clock: Callable[[], float] = time.time
    env: Mapping[str, str] | None = None
    """Given, the console follows the key file's ``[admin]`` tokens (the environment's win)."""
    throttle: FailedSignIns = field(default_factory=FailedSignIns)
    sessions: Sessions = field(init=False)
    _token_source: TokenSource | None = field(default=None, init=False)
    _opened: bool = field(default=False, init=False)
    _opening: asyncio.Lock | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.sessions = Sessions(self.tokens)
        if self.env is not None:
            self._token_source = TokenSource(self.config.keys.file, self.env, self.tokens)

    def refresh_tokens(self) -> None:
        """Take up changed tokens; new tokens sign new sessions, so the old sessions end."""
        if self._token_source is None:
            return
        current = self._token_source.current()
        if current is not self.tokens:
            self.tokens = current
            self.sessions = Sessions(current)

    async def admin_store(self) -> ConsoleStore:
        """The store, opened on first use; StoreUnavailable (a 503) until it can be."""
        if self._opened:
            return self.store
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if not self._opened:
                await self.store.open()
                self._opened = True
        return self.store

    async def close(self) -> None:
        if self._opened:
            await self.store.close()

    def keyfile(self) -> KeyFile:
        """Read each time: ``callbacks keys ...`` rewrites the file while the console runs."""
        return read_key_file(self.config.keys.file, missing_ok=True)

    def principal(self, request: Request) -> Principal | None:
        self.refresh_tokens()
        return authenticate(
            self.tokens,
            self.sessions,
            request.headers.get("authorization"),
            request.cookies.get(SESSION_COOKIE),
        )


def event_id_param(request: Request) -> str:
    """The ``{event_id}`` of the path: an id or a unique prefix, as on the command line;
    anything but letters and digits matches nothing."""
    event_id = str(request.path_params["event_id"])
    return event_id if event_id.isascii() and event_id.isalnum() else "-"


def client_address(request: Request) -> str:
    """Who failed sign-ins are counted against: the peer's address (behind a proxy, the proxy's:
    the console is meant for loopback or a private network, not the internet)."""
    return request.client.host if request.client is not None else "unknown"


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console
