"""`callbacks events forward` from a real receiver's store to a real loopback endpoint, signed
as the HTTP sink signs (checked with the ``standardwebhooks`` package)."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from click.testing import Result
from standardwebhooks import Webhook, WebhookVerificationError

from callbacks.sinks.envelope import EventEnvelope
from tests.support import (
    Cli,
    Route,
    ServerProcess,
    Setup,
    keys_for,
    sample_body,
    signed_request,
    wait_for,
)

pytestmark = pytest.mark.slow

ST = Route("st", "sensetime", "https://hooks.example.com/cb/st")
LIVE = Route("live", "metastudio", "https://hooks.example.com/cb/live", kind="live")
KEYS = keys_for([ST, LIVE])
SECRET = "whsec_" + base64.b64encode(b"forward-test-secret-32-bytes-ok!").decode()


@dataclass
class Endpoint:
    """A developer's local app: records what it is sent, answers ``status``."""

    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=state.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.server.shutdown()
        state.server.server_close()


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Setup, list[str]]]:
    """A receiver that has stored three callbacks (one live, with a stream key) and a retry."""
    setup = Setup(tmp_path_factory.mktemp("forward") / "receiver", [ST, LIVE], KEYS).write()
    server = ServerProcess(setup).start()
    ids: list[str] = []
    try:
        with httpx.Client(timeout=10) as client:
            for route, n in ((ST, 1), (LIVE, 2), (ST, 3), (ST, 3)):
                request = signed_request(route, KEYS[route.name], sample_body(route, n))
                answer = request.send(client, setup.base_url)
                assert answer.status_code == 200, answer.text
                ids.append(answer.json()["delivery_id"])
        assert wait_for(lambda: len(setup.delivered()) >= 6)
        yield setup, ids
    finally:
        server.stop()


def _forward(setup: Setup, *args: str, env: dict[str, str] | None = None) -> Result:
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        return Cli(setup.config_path).run("events", "forward", *args)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_forwards_every_original_oldest_first_signed_like_the_http_sink(
    receiver: tuple[Setup, list[str]], endpoint: Endpoint
) -> None:
    setup, ids = receiver
    result = _forward(
        setup,
        "--to",
        endpoint.url,
        "--secret-env",
        "FWD_SECRET",
        "--json",
        env={"FWD_SECRET": SECRET},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["forwarded"] == 3
    assert summary["failed"] == 0
    assert summary["skipped_duplicates"] == 1
    assert summary["signed"] is True
    assert [headers["webhook-id"] for headers, _ in endpoint.received] == ids[:3]
    verifier = Webhook(SECRET)
    for headers, body in endpoint.received:
        verifier.verify(body, headers)  # raises if the signature is not the sink's
        envelope = EventEnvelope.decode(body)
        assert envelope.delivery_id == headers["webhook-id"]
    live = EventEnvelope.decode(endpoint.received[1][1])
    assert live.route == "live"
    assert live.event_type == "RtmpStreamStateChange"
    assert SECRET not in result.output


def test_a_tampered_forward_does_not_verify(
    receiver: tuple[Setup, list[str]], endpoint: Endpoint
) -> None:
    setup, _ = receiver
    _forward(setup, "--to", endpoint.url, "--route", "st", "--secret-env", "S", env={"S": SECRET})
    headers, body = endpoint.received[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b'"st"', b'"xx"'), headers)


def test_filters_and_unsigned(receiver: tuple[Setup, list[str]], endpoint: Endpoint) -> None:
    setup, ids = receiver
    result = _forward(setup, "--to", endpoint.url, "--route", "live")
    assert result.exit_code == 0, result.output
    assert [h["webhook-id"] for h, _ in endpoint.received] == [ids[1]]
    assert "webhook-signature" not in endpoint.received[0][0]
    assert "(unsigned)" in result.output
    assert result.stdout.splitlines()[0].startswith("200 ok")


def test_refusing_endpoint_is_reported_per_event_and_exits_1(
    receiver: tuple[Setup, list[str]], endpoint: Endpoint
) -> None:
    setup, _ = receiver
    endpoint.status = 503
    result = _forward(setup, "--to", endpoint.url, "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["failed"] == 3
    assert summary["forwarded"] == 0
    assert summary["ok"] is False
    assert {r["status"] for r in summary["results"]} == {503}


def test_nothing_listening_is_one_clear_error(receiver: tuple[Setup, list[str]]) -> None:
    setup, _ = receiver
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        port = probe.server_address[1]
    result = _forward(setup, "--to", f"http://127.0.0.1:{port}/hooks?token=abc", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert "nothing listens" in error["message"]
    assert "token=abc" not in error["message"]


@pytest.mark.parametrize(
    ("args", "env", "code", "says"),
    [
        (("--to", "ftp://example.com/x"), {}, 2, "not an http(s) URL"),
        (("--to", "http://127.0.0.1:9/x", "--secret-env", "NOPE_UNSET"), {}, 1, "not set"),
        (("--to", "http://127.0.0.1:9/x", "--secret-env", "S"), {"S": "whsec_!!"}, 1, "base64"),
        (("--to", "http://127.0.0.1:9/x", "--sign-as", "nosink"), {}, 1, "no secret"),
        (("--to", "http://x/", "--sign-as", "a", "--secret-env", "S"), {}, 2, "not both"),
    ],
)
def test_bad_options_are_clear_errors(
    receiver: tuple[Setup, list[str]],
    args: tuple[str, ...],
    env: dict[str, str],
    code: int,
    says: str,
) -> None:
    setup, _ = receiver
    result = _forward(setup, *args, env=env)
    assert result.exit_code == code, result.output
    assert says in result.output
    assert "Traceback" not in result.output
