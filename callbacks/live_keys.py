"""The key rings the running server verifies with, reloaded when the key file changes.

Reload is by polling the file's identity (inode, size, mtime) every ``keys.reload_interval``
seconds, plus at once on SIGHUP. Polling also sees the symlink swap Kubernetes does for a mounted
Secret, which inotify-style watching on the file would miss. A reload swaps one reference, so a
request in flight keeps the rings it started with. A bad file is logged and counted, the old
keys stay, and :attr:`LiveKeys.reload_failed` says so (``/readyz`` reports it) until a reload
succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from pathlib import Path

import structlog

from callbacks import metrics
from callbacks.errors import KeyFileError
from callbacks.keyfile import KeyFile, read_key_file
from verify import KeyRing

log = structlog.get_logger("avatar_callbacks.keys")
_EMPTY = KeyRing([])


class LiveKeys:
    def __init__(self, path: Path, *, reload_interval: float = 1.0) -> None:
        self.path = path
        self.reload_interval = reload_interval
        self._rings: dict[str, KeyRing] = {}
        self._identity: tuple[int, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self.loaded = False
        self.reload_failed = False

    def ring(self, route: str) -> KeyRing:
        return self._rings.get(route, _EMPTY)

    def load(self) -> None:
        """First load, at start: a missing or unsafe file stops the server with a clear message."""
        self._install(read_key_file(self.path), self._stat())

    def use(self, keyfile: KeyFile) -> None:
        """Verify with these keys (embedding and tests); no file is read."""
        self._install(keyfile, None)

    def reload_if_changed(self) -> bool:
        identity = self._stat()
        if identity == self._identity:
            return False
        try:
            keyfile = read_key_file(self.path)
        except KeyFileError as exc:
            log.error("keys_reload_failed", error=str(exc))
            metrics.KEY_RELOAD_FAILURES.inc()
            self.reload_failed = True
            self._identity = identity  # do not retry the same broken file every second
            return False
        self._install(keyfile, identity)
        return True

    def _install(self, keyfile: KeyFile, identity: tuple[int, int, int] | None) -> None:
        self._rings = keyfile.rings()
        self._identity = identity
        self.loaded = True
        self.reload_failed = False
        log.info(
            "keys_loaded",
            key_ids={route: [k.id for k in ring] for route, ring in self._rings.items()},
        )

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def start_watching(self) -> None:
        if _can_handle_sighup():
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._task = asyncio.create_task(self._watch(), name="avatar-callbacks-key-watch")

    def _on_sighup(self) -> None:
        log.info("keys_reload_requested", signal="SIGHUP")
        self._identity = None
        self.reload_if_changed()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.reload_interval)
            try:
                self.reload_if_changed()
            except Exception:
                log.exception("keys_watch_failed")

    async def stop_watching(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if _can_handle_sighup():
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


def _can_handle_sighup() -> bool:
    """Signal handlers need a SIGHUP (not on Windows) and the main thread (not when the app is
    run by a test client or embedded in a loop on another thread); polling works everywhere."""
    return hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread()
