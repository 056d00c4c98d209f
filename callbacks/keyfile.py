"""The key file: every route's keys with their rotation state, kept apart from the config.

A route's ring is ordered primary, then next, then previous. ``next`` keys verify before they are
primary (so the receiver accepts the new key before the platform is switched to it), ``previous``
keys verify until their ``retire_after`` moment. The file is private (created 0600; a rewrite keeps
its owner, group and mode) and always replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import tomli_w

from callbacks._toml import TomlUnreadable, read_toml
from callbacks.errors import KeyFileError
from verify import Key, KeyRing, key_id
from verify.metastudio import MAX_KEY_LENGTH
from verify.sensetime import MAX_AUTH_KEY_LENGTH

KeyState = Literal["primary", "next", "previous"]
KEY_STATES: tuple[str, ...] = ("primary", "next", "previous")
_STATE_ORDER = {"primary": 0, "next": 1, "previous": 2}

MAX_SECRET_LENGTH = min(MAX_AUTH_KEY_LENGTH, MAX_KEY_LENGTH)
"""The longest key either platform accepts (32 characters)."""
_TOO_LONG = f"key longer than the platforms' {MAX_SECRET_LENGTH}-character limit"

HEADER = (
    "# avatar-callbacks key file: secrets. Keep it private (chmod 600).\n"
    "# Edit it with `callbacks keys ...`; the receiver reloads it on change.\n\n"
)


@dataclass(frozen=True)
class KeyEntry:
    route: str
    secret: str = field(repr=False)
    state: KeyState
    added_at: datetime
    retire_after: datetime | None = None

    @property
    def id(self) -> str:
        return key_id(self.secret)

    def as_key(self) -> Key:
        not_after = None
        if self.state == "previous" and self.retire_after is not None:
            not_after = self.retire_after.timestamp()
        return Key(self.secret, id=self.id, not_after=not_after)


@dataclass(frozen=True)
class KeyFile:
    entries: tuple[KeyEntry, ...] = ()
    sections: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The file's other top-level tables (e.g. ``[sinks.NAME]``), kept as read on every rewrite."""

    def for_route(self, route: str) -> tuple[KeyEntry, ...]:
        mine = [e for e in self.entries if e.route == route]
        return tuple(sorted(mine, key=lambda e: (_STATE_ORDER[e.state], -e.added_at.timestamp())))

    def ring(self, route: str) -> KeyRing:
        return KeyRing(e.as_key() for e in self.for_route(route))

    def rings(self) -> dict[str, KeyRing]:
        return {route: self.ring(route) for route in sorted({e.route for e in self.entries})}

    def primary(self, route: str) -> KeyEntry | None:
        """The key that signs for ``route`` (what ``callbacks simulate`` and tokens use)."""
        entries = self.for_route(route)
        return entries[0] if entries and entries[0].state == "primary" else None

    def find(self, route: str, id_prefix: str) -> KeyEntry:
        """The route's key whose id starts with ``id_prefix`` (unique), as operators type it."""
        matches = [e for e in self.for_route(route) if e.id.startswith(id_prefix)]
        if not matches:
            raise KeyFileError(f"route {route!r} has no key with id {id_prefix!r}")
        if len(matches) > 1:
            raise KeyFileError(f"id prefix {id_prefix!r} matches several keys of {route!r}")
        return matches[0]

    def add(self, route: str, secret: str, *, state: KeyState, now: datetime) -> KeyFile:
        if len(secret) > MAX_SECRET_LENGTH:  # read_key_file would refuse the file written
            raise KeyFileError(f"route {route!r}: {_TOO_LONG}")
        if any(e.secret == secret for e in self.for_route(route)):
            raise KeyFileError(f"route {route!r} already has key {key_id(secret)}")
        if state == "primary" and any(e.state == "primary" for e in self.for_route(route)):
            raise KeyFileError(f"route {route!r} already has a primary key: add as next")
        return replace(self, entries=(*self.entries, KeyEntry(route, secret, state, now)))

    def promote(self, route: str, id_prefix: str, *, retire_after: datetime | None) -> KeyFile:
        """Make a key primary; the old primary becomes previous until ``retire_after``."""
        target = self.find(route, id_prefix)
        if target.state == "primary":
            raise KeyFileError(f"key {target.id} is already the primary key of {route!r}")
        entries: list[KeyEntry] = []
        for e in self.entries:
            if e.route == route and e.state == "primary":
                e = replace(e, state="previous", retire_after=retire_after)
            elif e is target:
                e = replace(e, state="primary", retire_after=None)
            entries.append(e)
        return replace(self, entries=tuple(entries))

    def remove(self, route: str, id_prefix: str) -> KeyFile:
        target = self.find(route, id_prefix)
        return replace(self, entries=tuple(e for e in self.entries if e is not target))


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten (inode, size, mtime); ``None`` when it is gone.

    Watchers compare it to re-read the file only when it changed: every rewrite here is a new
    inode, and Kubernetes' symlink swap of a mounted Secret changes it too.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_key_file(path: str | os.PathLike[str], *, missing_ok: bool = False) -> KeyFile:
    """Load and check the key file. Refuses a file that other users can read."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        if missing_ok:
            return KeyFile()
        raise KeyFileError(f"{p}: key file not found") from None
    if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
        raise KeyFileError(
            f"{p}: key file is readable or writable by every user; run `chmod 600 {p}`"
        )
    try:
        data = read_toml(p)
    except TomlUnreadable as exc:
        raise KeyFileError(f"{p}: {exc.problem}") from None
    return parse_key_file(data, source=str(p))


def parse_key_file(data: Mapping[str, Any], *, source: str = "<keys>") -> KeyFile:
    raw = data.get("keys", [])
    if not isinstance(raw, list):
        raise KeyFileError(f"{source}: 'keys' must be an array of tables ([[keys]])")
    entries = tuple(_parse_entry(item, f"{source}: keys[{i}]") for i, item in enumerate(raw))
    for route in {e.route for e in entries}:
        primaries = [e for e in entries if e.route == route and e.state == "primary"]
        if len(primaries) > 1:
            raise KeyFileError(f"{source}: route {route!r} has more than one primary key")
    return KeyFile(entries, {name: value for name, value in data.items() if name != "keys"})


def _parse_entry(item: object, at: str) -> KeyEntry:
    if not isinstance(item, dict):
        raise KeyFileError(f"{at}: must be a table")
    unknown = set(item) - {"route", "id", "secret", "state", "added_at", "retire_after"}
    if unknown:
        raise KeyFileError(f"{at}: unknown field(s) {', '.join(sorted(unknown))}")
    route, secret, state = item.get("route"), item.get("secret"), item.get("state", "primary")
    if not isinstance(route, str) or not route:
        raise KeyFileError(f"{at}.route: required, a route name")
    if not isinstance(secret, str):
        raise KeyFileError(f"{at}.secret: required, a string")
    if len(secret) > MAX_SECRET_LENGTH:
        raise KeyFileError(f"{at}.secret: {_TOO_LONG}")
    if state not in KEY_STATES:
        raise KeyFileError(f"{at}.state: must be one of {', '.join(KEY_STATES)}")
    added_at = _parse_time(item.get("added_at"), f"{at}.added_at", required=False)
    retire_after = _parse_time(item.get("retire_after"), f"{at}.retire_after", required=False)
    return KeyEntry(
        route=route,
        secret=secret,
        state=state,
        added_at=added_at or datetime.fromtimestamp(0, UTC),
        retire_after=retire_after,
    )


def _parse_time(value: object, at: str, *, required: bool) -> datetime | None:
    if value is None and not required:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise KeyFileError(f"{at}: must be a TOML date-time such as 2026-01-31T00:00:00Z")


def dump_key_file(keyfile: KeyFile) -> str:
    rows: list[dict[str, Any]] = []
    for e in sorted(keyfile.entries, key=lambda e: (e.route, _STATE_ORDER[e.state])):
        row: dict[str, Any] = {
            "route": e.route,
            "id": e.id,
            "state": e.state,
            "secret": e.secret,
            "added_at": e.added_at.replace(microsecond=0),
        }
        if e.retire_after is not None:
            row["retire_after"] = e.retire_after.replace(microsecond=0)
        rows.append(row)
    return HEADER + tomli_w.dumps({**keyfile.sections, "keys": rows})


def _take_over_ownership(fd: int, path: Path) -> None:
    """Give the open file ``fd`` the owner, group and mode of ``path`` (0600 if there is none)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        os.fchmod(fd, 0o600)
        return
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except PermissionError:
            raise KeyFileError(
                f"{path} belongs to uid {st.st_uid}, gid {st.st_gid}: rewritten by uid "
                f"{os.geteuid()} it would change hands and the receiver might not read it; run "
                "this as the file's owner or as root"
            ) from None
    mode = stat.S_IMODE(st.st_mode)
    # A mode that lets every user in was never meant: such a file becomes private, not kept.
    os.fchmod(fd, 0o600 if mode & 0o007 else mode)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise edits of one key file, so two operators never lose each other's change.

    The lock is a separate file: the key file itself is replaced on every write, and a lock on
    a replaced file protects nothing.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot lock the key file ({lock_path}: {exc.strerror})") from None
    try:
        with contextlib.suppress(OSError):  # the file's owner must be able to lock it next time
            st = path.stat()
            if os.geteuid() == 0 and os.fstat(fd).st_uid != st.st_uid:
                os.fchown(fd, st.st_uid, st.st_gid)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def update_key_file(
    path: str | os.PathLike[str],
    change: Callable[[KeyFile], KeyFile],
    *,
    missing_ok: bool = False,
) -> tuple[KeyFile, KeyFile]:
    """Read the key file, apply ``change`` and replace the file atomically, all under an
    exclusive lock; returns (before, after). Every failure is a :class:`KeyFileError`."""
    p = Path(path)
    with _locked(p):
        before = read_key_file(p, missing_ok=missing_ok)
        after = change(before)
        try:
            write_key_file(p, after)
        except OSError as exc:
            raise KeyFileError(f"cannot write the key file {p}: {exc.strerror}") from None
    return before, after


def write_key_file(path: str | os.PathLike[str], keyfile: KeyFile) -> None:
    """Replace the key file atomically (temp file in the same folder, fsync, rename).

    A new file is mode 0600. A rewrite keeps the file's owner, group and mode (0600 instead of a
    mode open to every user): ``sudo callbacks keys add`` must not hand a ``nobody``-owned file
    to root, where the service could no longer read it. Raises KeyFileError, before changing
    anything, when the owner cannot be kept.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = dump_key_file(keyfile)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        _take_over_ownership(fd, p)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
