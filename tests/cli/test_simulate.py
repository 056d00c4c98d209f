"""`callbacks simulate`, `callbacks url mint` and key reloads, against a real receiver process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner

from callbacks.cli import main
from callbacks.config import load_config
from callbacks.keyfile import read_key_file
from callbacks.testing import sign_callback
from tests.support import Cli, Route, free_port, write_config

pytestmark = pytest.mark.slow

H = "https://hooks.example.com"
ROUTES = [
    Route("st", "sensetime", f"{H}/cb/st"),
    Route("rot", "sensetime", f"{H}/cb/rot"),
    Route("expiring", "sensetime", f"{H}/cb/expiring"),
    Route("video", "metastudio", f"{H}/cb/video?tenant=acme&env=prod", kind="video"),
    Route("live", "metastudio", f"{H}:8443/cb/live", kind="live"),
    Route("live-head", "metastudio", f"{H}/cb/live-head", kind="live", auth="MSS_A_HEAD"),
    Route("tts", "metastudio", f"{H}/cb/tts?k=v", kind="tts"),
]

ALL_ROUTES = ("st", "rot", "expiring", "video", "live", "live-head", "tts")
SIGNED_ROUTES = ("st", "video", "live", "live-head", "tts")


def callbacks_command() -> list[str]:
    script = Path(sys.executable).parent / "callbacks"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from callbacks.cli import main; main()"]


@dataclass
class Receiver(Cli):
    root: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def add(self, route: str) -> tuple[str, str]:
        data = self.json("keys", "add", route, "--generate")
        return data["id"], data["key"]

    def url(self, path: str, query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}" + (f"?{query}" if query else "")

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def loaded_key_ids(self) -> list[dict[str, list[str]]]:
        loaded = []
        for line in self.log_text().splitlines():
            if '"keys_loaded"' in line:
                loaded.append(json.loads(line)["key_ids"])
        return loaded

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*callbacks_command(), "serve", "--config", str(self.config)],
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the receiver exited at start:\n{self.log_text()}")
            try:
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"the receiver did not answer /healthz within 20 s:\n{self.log_text()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def make_receiver(root: Path, *, reload_interval: float = 1.0) -> Receiver:
    port = free_port()
    config = write_config(root, ROUTES, port=port, keys={"reload_interval": reload_interval})
    return Receiver(config, root, port, root / "receiver.log")


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    server = make_receiver(tmp_path_factory.mktemp("receiver"))
    for route in ALL_ROUTES:
        server.add(route)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def wait_for(condition: Callable[[], bool], *, timeout: float = 10, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def post_sensetime(server: Receiver, route: str, secret: str) -> httpx.Response:
    """A callback for ``route`` signed with ``secret`` (not necessarily its primary key)."""
    config = load_config(server.config).route(route)
    signed = sign_callback(config, secret, {"taskId": time.time_ns()})
    return httpx.post(signed.url(server.url(config.path)), content=signed.body, timeout=5)


# --------------------------------------------------------------------------- simulate


@pytest.mark.parametrize("route", SIGNED_ROUTES)
def test_simulate_sends_a_correctly_signed_callback(receiver: Receiver, route: str) -> None:
    result = receiver.ok("simulate", route)
    status, outcome, delivery = result.stdout.split()
    assert (status, outcome) == ("200", "stored")
    event_id = delivery.removeprefix("delivery_id=")
    shown = json.loads(receiver.ok("events", "show", event_id, "--json").stdout)
    primary = read_key_file(receiver.root / "keys.toml").for_route(route)[0]
    assert shown["key_id"] == primary.id
    assert primary.secret not in result.output


@pytest.mark.parametrize("route", SIGNED_ROUTES)
def test_simulate_tamper_is_rejected(receiver: Receiver, route: str) -> None:
    result = receiver.run("simulate", route, "--tamper")
    assert result.exit_code == 0, result.output
    expected = "bad_token" if route == "tts" else "signature_mismatch"
    assert result.stdout.strip() == f"401 {expected}"


@pytest.mark.parametrize(
    ("route", "event", "event_type"),
    [
        ("st", "live_room", "SenseTimeCallback"),
        ("video", "failed", "MetaStudioJobResult"),
        ("tts", "ERROR", "MetaStudioTtsResult"),
        ("live", "SHOOT_SCRIPT_SWITCH", "ShootScriptSwitch"),
        ("live", "RTMP_STREAM_STATE_CHANGE", "RtmpStreamStateChange"),
        ("live-head", "REPLY_COMMAND_FINISH", "ReplyCommandFinish"),
    ],
)
def test_simulate_event_shapes(receiver: Receiver, route: str, event: str, event_type: str) -> None:
    data = json.loads(receiver.ok("simulate", route, "--event", event, "--json").stdout)
    assert data["status"] == 200
    assert data["ok"] is True
    shown = json.loads(
        receiver.ok("events", "show", data["response"]["delivery_id"], "--json").stdout
    )
    assert shown["event_type"] == event_type
    if event == "RTMP_STREAM_STATE_CHANGE":
        assert json.loads(shown["body"]["message"])["stream_key"] == "***"


def test_simulate_body_file_and_duplicates(receiver: Receiver, tmp_path: Path) -> None:
    body = tmp_path / "result.json"
    body.write_text('{"result": "SUCCEED", "asset_id": "a-1", "job_id": "job-from-file"}')
    first = receiver.ok("simulate", "video", "--body", str(body))
    assert first.stdout.startswith("200 stored ")
    again = receiver.ok("simulate", "video", "--body", str(body))
    assert again.stdout.startswith("200 duplicate "), "the platform's retry is recognised"
    st_body = tmp_path / "st.json"
    st_body.write_text('{"taskId": 7, "timestamp": 1, "signature": "forged"}')
    assert receiver.ok("simulate", "st", "--body", str(st_body)).stdout.startswith("200 ")


def test_simulate_explicit_url(receiver: Receiver) -> None:
    result = receiver.ok("simulate", "video", "--url", receiver.url("/cb/video", "ignored=1"))
    assert result.stdout.startswith("200 stored ")
    wrong_path = receiver.run("simulate", "video", "--url", receiver.url("/nowhere"))
    assert wrong_path.exit_code == 1
    assert wrong_path.stdout.strip() == "404 not_found"
    assert "no route at /cb/video" in wrong_path.output


def test_simulate_without_a_receiver(receiver: Receiver) -> None:
    url = f"http://127.0.0.1:{free_port()}/cb/st"
    result = receiver.run("simulate", "st", "--url", url)
    assert result.exit_code == 1
    assert f"no receiver at {url}: start one with `callbacks serve`" in result.output


def test_simulate_usage_errors(receiver: Receiver, tmp_path: Path) -> None:
    body = tmp_path / "b.json"
    body.write_text("[1, 2]")
    cases = [
        (("simulate", "video", "--event", "BOGUS"), "SUCCEED, FAILED"),
        (("simulate", "video", "--body", str(body), "--event", "SUCCEED"), "not both"),
        (("simulate", "video", "--body", str(body)), "must hold a JSON object"),
        (("simulate", "video", "--body", str(tmp_path / "missing.json")), "does not exist"),
        (("simulate", "video", "--url", "ftp://example.com/x"), "not an http(s) URL"),
        (("simulate",), "Missing argument"),
    ]
    for args, message in cases:
        result = receiver.run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output
    unknown = receiver.run("simulate", "nope")
    assert unknown.exit_code == 1
    assert "routes: st, rot" in unknown.output


# --------------------------------------------------------------------------- url mint


def test_url_mint_token_is_accepted_for_its_job_only(receiver: Receiver) -> None:
    data = json.loads(receiver.ok("url", "mint", "tts", "--job", "job-7", "--json").stdout)
    assert data["url"].startswith("https://hooks.example.com/cb/tts?k=v&token=")
    assert data["job"] == "job-7"
    query = urlsplit(data["url"]).query
    good = {"status": "FINISHED", "job_id": "job-7"}
    answer = httpx.post(receiver.url("/cb/tts", query), json=good, timeout=5)
    assert answer.status_code == 200
    other = httpx.post(receiver.url("/cb/tts", query), json={**good, "job_id": "x"}, timeout=5)
    assert other.status_code == 401
    assert other.json()["reason"] == "token_wrong_job"


def test_url_mint_plain_output_and_ttl(receiver: Receiver) -> None:
    result = receiver.ok("url", "mint", "tts", "--ttl", "30m")
    assert result.stdout.strip().startswith("https://hooks.example.com/cb/tts?k=v&token=")
    assert "valid until" in result.output
    assert receiver.run("url", "mint", "tts", "--ttl", "forever").exit_code == 2
    assert receiver.run("url", "mint", "tts", "--ttl", "0").exit_code == 2


def test_url_mint_only_for_none_auth_routes(receiver: Receiver) -> None:
    sensetime = receiver.run("url", "mint", "st")
    assert sensetime.exit_code == 1
    assert "SenseTime route" in sensetime.output
    signed = receiver.run("url", "mint", "video")
    assert signed.exit_code == 1
    assert "uses MSS_A" in signed.output


# --------------------------------------------------------------------------- rotation


def test_rotation_reloads_keys_without_restart(receiver: Receiver) -> None:
    old_id = read_key_file(receiver.root / "keys.toml").for_route("rot")[0].id
    assert receiver.ok("simulate", "rot").stdout.startswith("200 stored ")  # signed by old key

    new_id, new_secret = receiver.add("rot")
    wait_for(
        lambda: any(new_id in ids.get("rot", []) for ids in receiver.loaded_key_ids()),
        what="keys_loaded with the new key id",
    )
    receiver.ok("keys", "promote", "rot", new_id)
    wait_for(
        lambda: receiver.run("simulate", "rot").exit_code == 0,
        what="a callback signed with the new primary key to verify",
    )
    listed = {r["id"]: r for r in json.loads(receiver.ok("keys", "list", "--json").stdout)}
    assert listed[new_id]["state"] == "primary"
    assert listed[new_id]["verified_24h"] >= 1
    assert listed[old_id]["state"] == "previous"
    assert listed[old_id]["verified_24h"] == 1

    refused = receiver.run("keys", "retire", "rot", old_id)
    assert refused.exit_code == 1
    assert "verified a callback" in refused.output
    assert "quiet period of 24h" in refused.output
    receiver.ok("keys", "retire", "rot", old_id, "--force")
    wait_for(
        lambda: any(ids.get("rot") == [new_id] for ids in receiver.loaded_key_ids()),
        what="keys_loaded without the retired key",
    )
    assert receiver.process is not None
    assert receiver.process.poll() is None, "no restart"
    assert new_secret not in receiver.log_text(), "the log names keys by id only"


def test_previous_key_stops_verifying_after_retire_after(receiver: Receiver) -> None:
    (old,) = read_key_file(receiver.root / "keys.toml").for_route("expiring")
    assert post_sensetime(receiver, "expiring", old.secret).status_code == 200
    new_id, _ = receiver.add("expiring")
    receiver.ok("keys", "promote", "expiring", new_id, "--retire-after", "2000-01-01")
    wait_for(
        lambda: post_sensetime(receiver, "expiring", old.secret).status_code == 401,
        what="the expired previous key to stop verifying",
    )
    assert receiver.ok("simulate", "expiring").stdout.startswith("200 stored ")


def test_sighup_reloads_at_once(tmp_path: Path) -> None:
    server = make_receiver(tmp_path, reload_interval=3600)
    server.add("st")
    server.start()
    try:
        new_id, _ = server.add("st")
        assert server.process is not None
        time.sleep(0.2)
        assert not any(new_id in ids.get("st", []) for ids in server.loaded_key_ids())
        server.process.send_signal(signal.SIGHUP)
        wait_for(
            lambda: any(new_id in ids.get("st", []) for ids in server.loaded_key_ids()),
            timeout=5,
            what="keys_loaded after SIGHUP",
        )
    finally:
        server.stop()


@pytest.mark.parametrize("command", [["simulate"], ["url"], ["url", "mint"]])
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output
