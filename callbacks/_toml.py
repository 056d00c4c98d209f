"""Reading a TOML file the one way the config and the key file both need.

The decoder's message names a line and column, never the text on it, so it is safe to repeat for
a file of secrets; every other failure is reduced to its kind. Each caller wraps
:class:`TomlUnreadable` in its own error, which names the file and what it is for.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from callbacks.errors import CallbacksError


class TomlUnreadable(CallbacksError):
    """The file is missing, unreadable, not UTF-8 or not TOML; ``problem`` says which."""

    def __init__(self, problem: str, *, missing: bool = False) -> None:
        self.problem = problem
        self.missing = missing
        super().__init__(problem)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TomlUnreadable("file not found", missing=True) from None
    except OSError as exc:
        raise TomlUnreadable(f"cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TomlUnreadable("cannot be read (not UTF-8 text)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlUnreadable(f"not valid TOML ({exc})") from None
