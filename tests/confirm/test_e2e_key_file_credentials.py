"""Credentials only in the key file: a `callbacks serve` process confirms against the fake API
with what `callbacks keys metastudio set` stored, follows a change of them without a restart,
and never writes either half of a key pair to its log."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import tomli_w

from callbacks.confirm.testing import FakeMetaStudio
from tests.confirm.test_e2e_confirm import HANDLERS
from tests.e2e.dispatch_support import run_cli
from tests.support import Route, ServerProcess, Setup, keys_for, signed_request, wait_for

pytestmark = pytest.mark.slow

AK, SK = "KEYFILE-AK-19c3e0", "KEYFILE-SK-secret-5d7a2b9e01"
WRONG_SK = "KEYFILE-SK-wrong-0f4c6a1d88"
TOKEN = "KEYFILE-IAM-token-" + "7c" * 40
ROUTES = [Route("ms-video", "metastudio", "https://hooks.example.com/cb/v", "video", "MSS_A")]
KEYS = keys_for(ROUTES)


@pytest.fixture
def api() -> Iterator[FakeMetaStudio]:
    with FakeMetaStudio(ak=AK, sk=SK, token=TOKEN) as fake:
        yield fake


@pytest.fixture
def setup(tmp_path: Any, api: FakeMetaStudio) -> Setup:
    setup = Setup(tmp_path, ROUTES, KEYS, dispatch={"backoff_max": 0.3}).write()
    (setup.root / "confirm_handlers.py").write_text(HANDLERS)
    config = tomllib.loads(setup.config_path.read_text())
    config["handlers"]["modules"] = ["confirm_handlers"]
    config["metastudio_api"] = {
        "endpoint": api.endpoint,
        "project_id": api.project_id,
        "timeout": 2.0,
        "retry_attempts": 1,
    }
    setup.config_path.write_text(tomli_w.dumps(config))
    return setup


def set_credentials(setup: Setup, sk: str) -> None:
    out = run_cli(setup, "keys", "metastudio", "set", "--ak", AK, input=sk + "\n")
    assert out.returncode == 0, out.stderr
    assert sk not in out.stdout + out.stderr


def post(setup: Setup, job_id: str) -> None:
    body = {"job_id": job_id, "result": "SUCCEED", "asset_id": f"asset-{job_id}"}
    request = signed_request(setup.route("ms-video"), KEYS["ms-video"], body)
    with httpx.Client() as client:
        assert request.send(client, setup.base_url).status_code == 200


def delivered(setup: Setup, job_id: str) -> list[dict[str, Any]]:
    return [d for d in setup.delivered() if d["job_id"] == job_id]


def refused_for(api: FakeMetaStudio, job_id: str) -> bool:
    return any(r.status == 401 and r.path.endswith(f"/{job_id}") for r in api.requests)


def test_credentials_in_the_key_file_confirm_and_are_followed_without_a_restart(
    setup: Setup, api: FakeMetaStudio
) -> None:
    set_credentials(setup, SK)
    server = ServerProcess(setup).start()  # no CALLBACKS_* in its environment
    try:
        api.set_job("video", "job-1", asset_id="asset-job-1", duration=12.5)
        post(setup, "job-1")
        assert wait_for(lambda: delivered(setup, "job-1"))
        [first] = delivered(setup, "job-1")
        assert (first["state"], first["asset_id"], first["duration"]) == (
            "SUCCEED",
            "asset-job-1",
            12.5,
        )
        assert {r.auth for r in api.requests} == {"aksk"}

        # A wrong SK written while it runs is what the next query is signed with ...
        set_credentials(setup, WRONG_SK)
        api.set_job("video", "job-2", asset_id="asset-job-2")
        post(setup, "job-2")
        assert wait_for(lambda: refused_for(api, "job-2"))
        assert delivered(setup, "job-2") == []
        # ... and the right one, written back, delivers the event that waited.
        set_credentials(setup, SK)
        assert wait_for(lambda: delivered(setup, "job-2"))
    finally:
        server.stop()
    log = server.output()
    assert '"metastudio_credentials_loaded"' in log
    for secret in (SK, WRONG_SK, AK):
        assert secret not in log


def test_an_iam_token_in_the_key_file_confirms_too(setup: Setup, api: FakeMetaStudio) -> None:
    out = run_cli(setup, "keys", "metastudio", "set", "--token", input=TOKEN + "\n")
    assert out.returncode == 0, out.stderr
    server = ServerProcess(setup).start()
    try:
        api.set_job("video", "job-token", asset_id="asset-job-token", duration=3.0)
        post(setup, "job-token")
        assert wait_for(lambda: delivered(setup, "job-token"))
        assert delivered(setup, "job-token")[0]["duration"] == 3.0
        assert {r.auth for r in api.requests} == {"token"}
    finally:
        server.stop()
    assert TOKEN not in server.output()


def test_a_server_without_credentials_anywhere_does_not_start(setup: Setup) -> None:
    with pytest.raises(RuntimeError, match="keys metastudio set"):
        ServerProcess(setup).start()
