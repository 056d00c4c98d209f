"""Requests at the edges of what the receiver accepts, through a real ``callbacks serve``.

Each answer is a 4xx with a stable reason, never a 500 or a redirect, and a refused request
leaves nothing in the store; what is accepted, every later step (``events show``) can handle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.support import REPO, Route, ServerProcess, Setup, keys_for, signed_request
from verify import sensetime

pytestmark = pytest.mark.slow

ST = Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime")
TTS = Route("tts", "metastudio", "https://hooks.example.com/callbacks/tts", "tts", "NONE")
LIVE = Route("live", "metastudio", "https://hooks.example.com/callbacks/live", "live", "MSS_A")
ROUTES = [ST, TTS, LIVE]
KEYS = keys_for(ROUTES)
CLI = [sys.executable, "-c", "from callbacks.cli import main; main()"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    setup = Setup(tmp_path_factory.mktemp("edges"), ROUTES, KEYS).write()
    proc = ServerProcess(setup).start()
    yield setup
    proc.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def cli(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBACKS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(setup.root), str(REPO)])
    return subprocess.run(
        [*CLI, *args, "--config", str(setup.config_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def stored_ids(setup: Setup) -> set[str]:
    listed = cli(setup, "events", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return {e["id"] for e in json.loads(listed.stdout)}


# --------------------------------------------------------------------------- job-bound tokens


@pytest.mark.parametrize(
    "body",
    [{"status": "FINISHED"}, {"status": "FINISHED", "job_id": None}, {}],
    ids=["no-job-id", "null-job-id", "empty"],
)
def test_job_bound_token_refuses_a_body_without_its_job(
    server: Setup, client: httpx.Client, body: dict[str, object]
) -> None:
    before = stored_ids(server)
    req = signed_request(TTS, KEYS["tts"], body, job="tts-job-1")
    response = req.send(client, server.base_url)
    assert response.status_code == 401, response.text
    assert response.json() == {"ok": False, "reason": "token_wrong_job"}
    assert stored_ids(server) == before


def test_job_bound_token_accepts_its_own_job(server: Setup, client: httpx.Client) -> None:
    body = {"status": "FINISHED", "job_id": f"tts-job-{time.time_ns()}"}
    req = signed_request(TTS, KEYS["tts"], body, job=str(body["job_id"]))
    assert req.send(client, server.base_url).status_code == 200


def test_token_without_a_job_accepts_a_body_without_one(
    server: Setup, client: httpx.Client
) -> None:
    req = signed_request(TTS, KEYS["tts"], {"status": "FINISHED", "n": time.time_ns()})
    assert req.send(client, server.base_url).status_code == 200


# --------------------------------------------------------------------------- JSON depth


def nested(depth: int) -> bytes:
    """A JSON value ``depth`` levels deep (``[]`` is one level)."""
    return b"[" * depth + b"]" * depth


def deep_sensetime_body(depth: int) -> bytes:
    """A correctly signed SenseTime body whose nesting is ``depth`` levels, the body included."""
    ts = int(time.time())
    signature = sensetime.sign(ST.public_url, ts, KEYS["st"])
    head = f'{{"taskId":{time.time_ns()},"timestamp":{ts},"signature":"{signature}","deep":'
    return head.encode() + nested(depth - 1) + b"}"


def deep_live_body(depth: int) -> bytes:
    """A live event whose ``message`` (JSON in a string) is ``depth`` levels deep."""
    message = b'{"room_id":"r1","stream_key":"k","deep":' + nested(depth - 1) + b"}"
    return orjson.dumps({"event_type": "RTMP_STREAM_STATE_CHANGE", "message": message.decode()})


def post_live(server: Setup, client: httpx.Client, body: bytes) -> httpx.Response:
    req = signed_request(LIVE, KEYS["live"], {})
    return client.post(f"{server.base_url}{req.path}?{req.query}", content=body)


@pytest.mark.parametrize("depth", [2, 253])
def test_a_body_as_deep_as_the_limit_is_stored_and_shown(
    server: Setup, client: httpx.Client, depth: int
) -> None:
    response = client.post(server.base_url + ST.path, content=deep_sensetime_body(depth))
    assert response.status_code == 200, response.text
    delivery_id = response.json()["delivery_id"]
    assert delivery_id in stored_ids(server)
    for extra in ([], ["--json"]):
        shown = cli(server, "events", "show", delivery_id, *extra)
        assert shown.returncode == 0, shown.stderr
        assert "Traceback" not in shown.stderr


@pytest.mark.parametrize("depth", [254, 255, 1000])
def test_a_body_deeper_than_the_limit_is_refused(
    server: Setup, client: httpx.Client, depth: int
) -> None:
    before = stored_ids(server)
    response = client.post(server.base_url + ST.path, content=deep_sensetime_body(depth))
    assert response.status_code == 400, response.text
    assert response.json() == {"ok": False, "reason": "body_too_deep"}
    assert stored_ids(server) == before


def test_a_live_message_as_deep_as_the_limit_is_stored_and_shown(
    server: Setup, client: httpx.Client
) -> None:
    response = post_live(server, client, deep_live_body(253))
    assert response.status_code == 200, response.text
    shown = cli(server, "events", "show", response.json()["delivery_id"], "--json")
    assert shown.returncode == 0, shown.stderr


@pytest.mark.parametrize("depth", [254, 1000])
def test_a_live_message_deeper_than_the_limit_is_refused(
    server: Setup, client: httpx.Client, depth: int
) -> None:
    response = post_live(server, client, deep_live_body(depth))
    assert response.status_code == 400, response.text
    assert response.json() == {"ok": False, "reason": "body_too_deep"}


# --------------------------------------------------------------------------- unknown paths


@pytest.mark.parametrize("path", [ST.path + "/", TTS.path + "/", "/nope", "/healthz/", "/"])
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_unknown_paths_are_404_json_never_a_redirect(
    server: Setup, client: httpx.Client, path: str, method: str
) -> None:
    response = client.request(method, server.base_url + path, content=b"{}")
    assert response.status_code == 404, (response.status_code, response.headers)
    assert "location" not in response.headers
    assert response.json() == {"ok": False, "reason": "not_found"}
