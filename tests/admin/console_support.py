"""A receiver process with its console on a second port, and events to look at.

The handlers module fails an event whose body says ``"userData": "fail"`` while the flag file
exists, so a test can make an event dead, remove the flag, and replay it to delivery.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import tomli_w

from tests.support import (
    Route,
    ServerProcess,
    Setup,
    free_port,
    keys_for,
    sample_body,
    signed_request,
    wait_for,
)

ADMIN_TOKEN = "console-admin-token-0123456789"
READ_ONLY_TOKEN = "console-reader-token-0123456789"
STREAM_KEY = "rtmp-stream-key-SECRET-42"

CONSOLE_HANDLERS = """
import os
from pathlib import Path
from callbacks import Handlers

handlers = Handlers()
_FLAG = Path(os.environ["CONSOLE_FAIL_FLAG"])

@handlers.on_any
def deliver(event):
    if _FLAG.exists() and event.raw.get("userData") == "fail":
        raise RuntimeError("told to fail by the test's flag file")
"""


def console_routes() -> list[Route]:
    h = "https://hooks.example.com"
    return [
        Route("st", "sensetime", f"{h}/callbacks/sensetime"),
        Route("ms-video", "metastudio", f"{h}/callbacks/ms/video", "video", "MSS_A"),
        Route("ms-live", "metastudio", f"{h}/callbacks/ms/live", "live", "MSS_A"),
    ]


@dataclass
class Console:
    setup: Setup
    server: ServerProcess
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def fail_flag(self) -> Path:
        return self.setup.root / "fail.flag"

    def send(self, route_name: str, body: dict[str, Any]) -> str:
        route = self.setup.route(route_name)
        request = signed_request(route, self.setup.keys[route_name], body)
        with httpx.Client() as client:
            answer = request.send(client, self.setup.base_url)
        assert answer.status_code == 200, answer.text
        delivery_id: str = answer.json()["delivery_id"]
        return delivery_id

    def api(self, token: str = ADMIN_TOKEN) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"})

    def status_of(self, event_id: str) -> str:
        with self.api() as client:
            status: str = client.get(f"/api/events/{event_id}").json()["status"]
        return status

    def wait_status(self, event_id: str, status: str) -> bool:
        return wait_for(lambda: self.status_of(event_id) == status, timeout=20)

    def stop(self) -> None:
        self.server.stop()


def write_console_setup(
    root: Path, *, admin_port: int | None = None, store_url: str | None = None
) -> tuple[Setup, int]:
    routes = console_routes()
    setup = Setup(
        root, routes, keys_for(routes), store_url=store_url, dispatch={"max_attempts": 2}
    ).write()
    (setup.root / "console_handlers.py").write_text(CONSOLE_HANDLERS)
    config = tomllib.loads(setup.config_path.read_text())
    port = admin_port or free_port()
    # Tests send many wrong tokens from one address on purpose; the limit has its own test.
    config["admin"] = {"listen": f"127.0.0.1:{port}", "failed_sign_ins_per_minute": 10_000}
    config["handlers"] = {"modules": ["console_handlers"]}
    setup.config_path.write_text(tomli_w.dumps(config))
    return setup, port


def start_console(
    root: Path,
    *,
    store_url: str | None = None,
    env: dict[str, str] | None = None,
    configure: Callable[[Setup], None] | None = None,
) -> Console:
    """The console's server; ``configure`` may change the setup's files before it starts."""
    setup, port = write_console_setup(root, store_url=store_url)
    if configure is not None:
        configure(setup)
    env = {
        **(env or {}),
        "CALLBACKS_ADMIN_TOKEN": ADMIN_TOKEN,
        "CALLBACKS_ADMIN_READ_ONLY_TOKEN": READ_ONLY_TOKEN,
        "CONSOLE_FAIL_FLAG": str(root / "fail.flag"),
    }
    server = ServerProcess(setup, env=env).start()
    return Console(setup, server, port)


def live_body(n: int) -> dict[str, Any]:
    """A live-room event whose message (JSON text) carries an RTMP stream key."""
    message = (
        f'{{"room_id": "room-{n}", "job_id": "live-{n}", "state": "CONNECTED", '
        f'"stream_key": "{STREAM_KEY}"}}'
    )
    return {"event_type": "RTMP_STREAM_STATE_CHANGE", "message": message}


def seed(console: Console) -> dict[str, list[str]]:
    """Events on every route, one of them dead; ids by kind, oldest first."""
    ids: dict[str, list[str]] = {"st": [], "ms-video": [], "ms-live": [], "dead": []}
    for n in range(3):
        ids["st"].append(console.send("st", sample_body(console.setup.route("st"), n)))
        ids["ms-video"].append(
            console.send("ms-video", sample_body(console.setup.route("ms-video"), n))
        )
    ids["ms-live"].append(console.send("ms-live", live_body(7)))
    console.fail_flag.write_text("fail")
    dead = console.send("st", {"taskId": 999, "status": 2, "type": "video", "userData": "fail"})
    ids["dead"].append(dead)
    assert console.wait_status(dead, "dead")
    console.fail_flag.unlink()
    for event_id in ids["st"] + ids["ms-video"] + ids["ms-live"]:
        assert console.wait_status(event_id, "delivered")
    return ids


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: httpx.Client, token: str) -> httpx.Response:
    """Sign in through the form, as a browser does; the client keeps the cookies."""
    form = client.get("/login")
    nonce = re.search(r'name="nonce" value="([^"]+)"', form.text)
    assert nonce
    return client.post("/login", data={"token": token, "nonce": nonce.group(1), "next": "/"})
