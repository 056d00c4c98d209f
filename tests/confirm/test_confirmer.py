"""The MetaStudio confirmer against the fake API (real HTTP), and confirmers loaded by path."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from callbacks.confirm.client import MetaStudioClient, RetryPolicy
from callbacks.confirm.confirmer import (
    Confirmer,
    ConfirmerLoadError,
    MetaStudioConfirmer,
    load_confirmer,
    metastudio_client,
)
from callbacks.confirm.credentials import AkSk
from callbacks.confirm.rule import Confirmation
from callbacks.confirm.settings import MetaStudioApiSettings
from callbacks.confirm.testing import FakeMetaStudio
from callbacks.events import Event
from tests.confirm.events import event, job_result, live_event, route

AK, SK = "AK-confirm", "SK-confirm"


@pytest.fixture
def api() -> Iterator[FakeMetaStudio]:
    with FakeMetaStudio(ak=AK, sk=SK) as fake:
        yield fake


def confirm(api: FakeMetaStudio, e: Event) -> Confirmation:
    async def go() -> Confirmation:
        retry = RetryPolicy(attempts=2, backoff_initial=0.001)
        async with MetaStudioClient(api.endpoint, api.project_id, AkSk(AK, SK), retry=retry) as c:
            confirmer: Confirmer = MetaStudioConfirmer(c)
            return await confirmer.confirm(e)

    return asyncio.run(go())


def test_genuine_callback_confirmed_with_details(api: FakeMetaStudio) -> None:
    api.set_job("video", "job-1", asset_id="asset-1", duration=12.5)
    c = confirm(api, job_result())
    assert c.outcome == "confirmed"
    assert c.details is not None
    assert c.details.duration == 12.5


def test_forged_asset_refuted(api: FakeMetaStudio) -> None:
    api.set_job("video", "job-1", asset_id="asset-1")
    assert confirm(api, job_result(asset_id="ATTACKER")).reason == "asset_mismatch"


def test_unknown_job_refuted(api: FakeMetaStudio) -> None:
    assert confirm(api, job_result()).reason == "unknown_job"


def test_api_down_is_retry_later(api: FakeMetaStudio) -> None:
    api.fail_always(500)
    assert confirm(api, job_result()).outcome == "retry_later"


def test_bad_credentials_are_retry_later_never_refuted(api: FakeMetaStudio) -> None:
    api.fail_always(401)
    c = confirm(api, job_result())
    assert (c.outcome, c.reason) == ("retry_later", "api_misconfigured")


def test_tts_and_live_are_asked_at_their_own_paths(api: FakeMetaStudio) -> None:
    api.set_job("tts", "t-1")
    api.set_job("live", "job-1", state="PROCESSING", room_id="room-1")
    assert confirm(api, event("tts", job_id="t-1", status="FINISHED")).outcome == "confirmed"
    assert confirm(api, live_event()).outcome == "confirmed"
    paths = [r.path for r in api.requests]
    assert any("/ttsc/async-jobs/t-1" in p for p in paths)
    assert any("/smart-live-rooms/room-1/smart-live-jobs/job-1" in p for p in paths)


def test_event_without_job_is_refuted_without_asking(api: FakeMetaStudio) -> None:
    assert confirm(api, event("video", result="SUCCEED")).reason == "no_job_to_confirm"
    assert api.requests == []


def test_client_built_from_settings(api: FakeMetaStudio) -> None:
    settings = MetaStudioApiSettings(api.endpoint, api.project_id)
    env = {"CALLBACKS_METASTUDIO_AK": AK, "CALLBACKS_METASTUDIO_SK": SK}
    api.set_job("video", "job-1", asset_id="asset-1")

    async def go() -> Confirmation:
        client = metastudio_client(settings, env)
        assert isinstance(client, MetaStudioClient)
        async with client:
            return await MetaStudioConfirmer(client).confirm(job_result())

    assert asyncio.run(go()).outcome == "confirmed"


@pytest.mark.parametrize("name", ["instance", "factory", "KnownTasks"])
def test_a_users_confirmer_by_import_path(name: str) -> None:
    st_route = route(None)
    confirmer = load_confirmer(f"tests.confirm.plugin:{name}", st_route)
    known = asyncio.run(confirmer.confirm(event(None, taskId=42, status="SUCCESS")))
    unknown = asyncio.run(confirmer.confirm(event(None, taskId=7, status="SUCCESS")))
    assert (known.outcome, unknown.outcome) == ("confirmed", "refuted")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.confirm.nowhere:x", "cannot import"),
        ("tests.confirm.plugin:missing", "has no"),
        ("tests.confirm.plugin:not_a_confirmer", "is not a confirmer"),
    ],
)
def test_a_bad_confirmer_path(path: str, message: str) -> None:
    with pytest.raises(ConfirmerLoadError, match=message):
        load_confirmer(path, route(None))
