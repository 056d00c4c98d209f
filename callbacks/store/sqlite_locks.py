"""The two lock files beside a SQLite inbox that several serving processes share.

- ``<db>.server-lock``: every serving process holds it shared for as long as it serves. One that
  can take it exclusive at start knows no other serving process is alive, so every claim in the
  file is a dead process's and can be released at once (a whole service restarted after a crash
  delivers without waiting out the leases). Otherwise the claims of a dead worker come back when
  their leases lapse, as on PostgreSQL.
- ``<db>.write-lock``: held exclusive from ``BEGIN IMMEDIATE`` to ``COMMIT`` by whichever serving
  process writes. SQLite's own busy wait polls with sleeps of 1 to 100 ms, which lets a process
  that commits back to back starve another; a process blocked on this lock is woken by the kernel
  the moment the other's commit is done. Only serving processes take it: the CLI and the
  expected-jobs table wait on SQLite's lock alone, so no waiter holds one lock while it waits on
  the other without a time limit.

``flock`` locks belong to the open file, so two stores in one process exclude each other too.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def _open_lock_file(path: Path) -> int:
    return os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)


class ServerLock:
    """``<db>.server-lock``, shared by every serving process (see the module's docstring)."""

    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + ".server-lock")
        self._fd: int | None = None

    def join(self) -> bool:
        """Hold the lock; True if no other serving process holds it (then held exclusive until
        :meth:`share`). Blocks while another process is itself in its start-up release."""
        fd = _open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            alone = True
        except BlockingIOError:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except BaseException:
                os.close(fd)
                raise
            alone = False
        self._fd = fd
        return alone

    def share(self) -> None:
        """From exclusive to shared, once the start-up release is done."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class WriteLock:
    """``<db>.write-lock``: one serving process's transaction at a time (see the docstring)."""

    def __init__(self, db: Path) -> None:
        self.path = db.with_name(db.name + ".write-lock")
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = _open_lock_file(self.path)
        return self._fd

    def try_take(self) -> bool:
        """Take it if it is free (never blocks: this runs on the event loop)."""
        try:
            fcntl.flock(self._file(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def take(self) -> None:
        """Wait for it (in a thread: another process holds it for one commit)."""
        fcntl.flock(self._file(), fcntl.LOCK_EX)

    def give_back(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
