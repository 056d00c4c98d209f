"""Confirmation end to end: a ``callbacks serve`` process, real HTTP, the fake MetaStudio API.

The attack of the issue: one captured signature carries any body. With ``[metastudio_api]``
configured, what reaches the handlers is what the platform confirms, with its job details.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import tomli_w

from callbacks.confirm.testing import FakeMetaStudio
from tests.support import Route, ServerProcess, Setup, keys_for, signed_request, wait_for

pytestmark = pytest.mark.slow

AK, SK = "E2E-AK-7f3a9c", "E2E-SK-secret-b81d44e0"
ROUTES = [
    Route("ms-video", "metastudio", "https://hooks.example.com/cb/video", "video", "MSS_A"),
    Route("ms-tts", "metastudio", "https://hooks.example.com/cb/tts", "tts", "NONE"),
]
KEYS = keys_for(ROUTES)

HANDLERS = """
import json, os
from callbacks import Handlers

handlers = Handlers()

@handlers.on_any
def record(event):
    d = event.job_details
    line = {"id": event.delivery_id, "route": event.route, "job_id": event.raw.get("job_id"),
            "claimed_asset": event.raw.get("asset_id"),
            "state": d.state if d else None, "asset_id": d.asset_id if d else None,
            "duration": d.duration if d else None}
    fd = os.open(os.environ["E2E_EVENTS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(line) + "\\n").encode())
    finally:
        os.close(fd)
"""


@pytest.fixture(scope="module")
def api() -> Iterator[FakeMetaStudio]:
    with FakeMetaStudio(ak=AK, sk=SK) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, api: FakeMetaStudio) -> Iterator[Setup]:
    setup = Setup(tmp_path_factory.mktemp("confirm"), ROUTES, KEYS).write()
    (setup.root / "confirm_handlers.py").write_text(HANDLERS)
    config = tomllib.loads(setup.config_path.read_text())
    config["handlers"]["modules"] = ["confirm_handlers"]
    config["metastudio_api"] = {
        "endpoint": api.endpoint,
        "project_id": api.project_id,
        "timeout": 2.0,
        "retry_attempts": 1,
    }
    config["dispatch"]["backoff_max"] = 0.3
    for route in config["routes"]:
        route["reconcile_after"] = 0.3
    setup.config_path.write_text(tomli_w.dumps(config))
    env = {"CALLBACKS_METASTUDIO_AK": AK, "CALLBACKS_METASTUDIO_SK": SK}
    process = ServerProcess(setup, env=env).start()
    try:
        yield setup
    finally:
        process.stop()
        log = process.output()
        assert SK not in log
        assert AK not in log


def post(setup: Setup, route: str, body: dict[str, Any], *, job: str | None = None) -> str:
    """Send a correctly signed callback; its delivery id."""
    request = signed_request(setup.route(route), KEYS[route], body, job=job)
    with httpx.Client() as client:
        answer = request.send(client, setup.base_url)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["delivery_id"])


def delivered(setup: Setup, job_id: str) -> list[dict[str, Any]]:
    return [d for d in setup.delivered() if d["job_id"] == job_id]


def cli(setup: Setup, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", "from callbacks.cli import main; main()", *args,
         "--config", str(setup.config_path)],
        capture_output=True, text=True, check=True, cwd=setup.root,
    )  # fmt: skip
    return out.stdout


def events(setup: Setup, status: str) -> list[dict[str, Any]]:
    return list(json.loads(cli(setup, "events", "list", "--status", status, "--json")))


def jobs(setup: Setup, *flags: str) -> list[dict[str, Any]]:
    return list(json.loads(cli(setup, "jobs", "list", "--json", *flags)))


def refuted(setup: Setup) -> set[str]:
    return {e["id"] for e in events(setup, "refuted")}


def test_genuine_callback_is_delivered_with_the_platforms_details(
    server: Setup, api: FakeMetaStudio
) -> None:
    api.set_job("video", "job-genuine", asset_id="asset-g", duration=42.0)
    post(server, "ms-video", {"job_id": "job-genuine", "result": "SUCCEED", "asset_id": "asset-g"})
    assert wait_for(lambda: delivered(server, "job-genuine"))
    [d] = delivered(server, "job-genuine")
    assert (d["state"], d["asset_id"], d["duration"]) == ("SUCCEED", "asset-g", 42.0)


def test_forged_body_is_refuted_and_the_genuine_callback_still_delivered(
    server: Setup, api: FakeMetaStudio
) -> None:
    api.set_job("video", "job-forged", asset_id="asset-real")
    forged = post(
        server, "ms-video", {"job_id": "job-forged", "result": "SUCCEED", "asset_id": "ATTACKER"}
    )
    assert wait_for(lambda: forged in refuted(server))
    post(
        server, "ms-video", {"job_id": "job-forged", "result": "SUCCEED", "asset_id": "asset-real"}
    )
    assert wait_for(lambda: delivered(server, "job-forged"))
    assert [d["claimed_asset"] for d in delivered(server, "job-forged")] == ["asset-real"]


def test_unknown_job_is_refuted(server: Setup) -> None:
    nobody = post(server, "ms-video", {"job_id": "job-nobody", "result": "SUCCEED"})
    assert wait_for(lambda: nobody in refuted(server))
    [event] = [e for e in events(server, "refuted") if e["id"] == nobody]
    assert event["last_error"] == "refuted: unknown_job"
    assert delivered(server, "job-nobody") == []


def test_api_down_for_a_while_then_delivered_nothing_early(
    server: Setup, api: FakeMetaStudio
) -> None:
    api.set_job("tts", "tts-down")
    api.fail_always(503, job_id="tts-down")
    post(server, "ms-tts", {"job_id": "tts-down", "status": "FINISHED"}, job="tts-down")
    assert wait_for(lambda: sum(r.status == 503 for r in api.requests) >= 3)
    assert delivered(server, "tts-down") == []
    api.recover()
    assert wait_for(lambda: delivered(server, "tts-down"))
    assert delivered(server, "tts-down")[0]["state"] == "SUCCEED"


def test_bad_credentials_make_readyz_name_the_route(server: Setup, api: FakeMetaStudio) -> None:
    api.fail_always(401, job_id="job-401")
    post(server, "ms-video", {"job_id": "job-401", "result": "SUCCEED"})

    def not_ready() -> bool:
        answer = httpx.get(f"{server.base_url}/readyz")
        body = answer.json()
        return answer.status_code == 503 and body.get("routes_that_cannot_confirm") == ["ms-video"]

    assert wait_for(not_ready)
    assert delivered(server, "job-401") == []
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'avatar_callbacks_confirm_config_errors_total{route="ms-video"}' in metrics
    assert SK not in metrics
    assert AK not in metrics
    api.recover()
    api.set_job("video", "job-401")
    assert wait_for(lambda: delivered(server, "job-401"))
    assert httpx.get(f"{server.base_url}/readyz").status_code == 200


def test_genuine_callback_that_came_while_the_forged_one_waited_is_delivered(
    server: Setup, api: FakeMetaStudio
) -> None:
    api.set_job("video", "job-race", asset_id="asset-race")
    api.fail_always(503, job_id="job-race")
    forged = post(
        server, "ms-video", {"job_id": "job-race", "result": "SUCCEED", "asset_id": "ATTACKER"}
    )
    genuine = post(
        server, "ms-video", {"job_id": "job-race", "result": "SUCCEED", "asset_id": "asset-race"}
    )
    assert genuine != forged  # other content: never the forged one's duplicate
    assert delivered(server, "job-race") == []  # nothing delivered while the API is down
    api.recover()
    assert wait_for(lambda: delivered(server, "job-race"))
    assert forged in refuted(server)
    [d] = delivered(server, "job-race")
    assert (d["id"], d["claimed_asset"], d["asset_id"]) == (genuine, "asset-race", "asset-race")


def test_expected_job_without_callback_is_delivered_by_polling(
    server: Setup, api: FakeMetaStudio
) -> None:
    api.set_job("video", "job-silent", state="PROCESSING")
    cli(server, "jobs", "expect", "ms-video", "job-silent", "--within", "1h")
    assert wait_for(lambda: any(r.path.endswith("/job-silent") for r in api.requests))
    assert delivered(server, "job-silent") == []  # still processing: nothing to deliver
    api.set_job("video", "job-silent", state="SUCCEED", asset_id="asset-s")
    assert wait_for(lambda: delivered(server, "job-silent"))
    [d] = delivered(server, "job-silent")
    assert (d["state"], d["asset_id"]) == ("SUCCEED", "asset-s")
    [job] = [j for j in jobs(server) if j["job_id"] == "job-silent"]
    assert (job["state"], job["event_id"]) == ("found", d["id"])
    # The platform's callback, arriving late, is a duplicate: delivered once.
    late = post(
        server, "ms-video", {"job_id": "job-silent", "result": "SUCCEED", "asset_id": "asset-s"}
    )
    assert wait_for(lambda: late in {e["id"] for e in events(server, "duplicate")})
    assert len(delivered(server, "job-silent")) == 1


def test_expected_job_that_never_finishes_is_overdue(server: Setup, api: FakeMetaStudio) -> None:
    api.set_job("video", "job-stuck", state="PROCESSING")
    cli(server, "jobs", "expect", "ms-video", "job-stuck", "--within", "2s")
    assert wait_for(lambda: any(j["job_id"] == "job-stuck" for j in jobs(server, "--overdue")))
    assert delivered(server, "job-stuck") == []
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'avatar_callbacks_expected_jobs_total{outcome="overdue",route="ms-video"}' in metrics
