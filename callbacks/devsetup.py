"""A working development setup when no config is given: local SQLite, dev keys, two routes.

Everything lives in ``./.avatar-callbacks/`` and is created once; later runs reuse it, so the
keys stay the same and the CLI (``callbacks simulate``, ``callbacks events``) finds it too.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from callbacks.keyfile import read_key_file, write_key_file
from verify.metastudio import generate_key
from verify.sensetime import generate_auth_key

DEV_DIR = Path(".avatar-callbacks")
DEV_CONFIG = DEV_DIR / "callbacks.toml"

_TEMPLATE = """\
# Development setup written by `callbacks serve` (no config given). Edit freely.
[server]
host = "127.0.0.1"
port = {port}
log_format = "console"

[store]
url = "sqlite:///callbacks.db"     # relative to this file's folder

[keys]
file = "keys.toml"                 # relative to this file's folder; mode 0600

[[routes]]
name = "sensetime"
path = "/callbacks/sensetime"
provider = "sensetime"
public_url = "http://127.0.0.1:{port}/callbacks/sensetime"

[[routes]]
name = "metastudio-video"
path = "/callbacks/metastudio/video"
provider = "metastudio"
kind = "video"
auth = "MSS_A"
public_url = "http://127.0.0.1:{port}/callbacks/metastudio/video"
"""


def ensure_dev_setup(directory: Path = DEV_DIR, *, port: int = 8000) -> Path:
    """Create the dev config and key file if missing; return the config path."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "callbacks.toml"
    if not config.exists():
        config.write_text(_TEMPLATE.format(port=port), encoding="utf-8")
    keys_path = directory / "keys.toml"
    keys = read_key_file(keys_path, missing_ok=True)
    now = datetime.now(UTC)
    changed = False
    for route, secret in (
        ("sensetime", generate_auth_key()),
        ("metastudio-video", generate_key()),
    ):
        if not keys.for_route(route):
            keys = keys.add(route, secret, state="primary", now=now)
            changed = True
    if changed or not keys_path.exists():
        write_key_file(keys_path, keys)
    return config
