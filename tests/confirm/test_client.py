"""The client against the fake API, through real HTTP on loopback."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import pytest

pytest.importorskip("httpx")

from callbacks.confirm.client import MetaStudioClient, RetryPolicy
from callbacks.confirm.credentials import AkSk, IamToken
from callbacks.confirm.errors import ApiConfigurationError, ApiUnavailable, JobQueryRejected
from callbacks.confirm.kinds import KINDS
from callbacks.confirm.testing import FakeMetaStudio

AK, SK, TOKEN = "TESTAK0123", "TESTSK-secret-4567", "MIIT-token-89ab"
FAST = RetryPolicy(attempts=3, backoff_initial=0.001, backoff_max=0.002)


@pytest.fixture
def api() -> Iterator[FakeMetaStudio]:
    with FakeMetaStudio(ak=AK, sk=SK, token=TOKEN) as fake:
        yield fake


def client(api: FakeMetaStudio, **kw: object) -> MetaStudioClient:
    options: dict[str, object] = {"retry": FAST, "rng": random.Random(7)} | kw
    credentials = options.pop("credentials", AkSk(AK, SK))
    return MetaStudioClient(api.endpoint, api.project_id, credentials, **options)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_queried_signed_and_parsed(api: FakeMetaStudio, kind: str) -> None:
    api.set_job(kind, "job/1 ü", state="SUCCESS", asset_id="asset-9", room_id="room 7")

    async def go() -> None:
        async with client(api) as c:
            details = await c.job(kind, "job/1 ü", room_id="room 7")
        assert details is not None
        assert details.kind == kind
        assert details.job_id == "job/1 ü"
        assert details.state == "SUCCEED"  # SUCCESS and SUCCEED are one state
        assert details.terminal
        if kind in ("video", "photo_video", "business_card"):
            assert details.asset_id == "asset-9"

    run(go())
    assert [r.auth for r in api.requests] == ["aksk"]


def test_iam_token_mode(api: FakeMetaStudio) -> None:
    api.set_job("video", "j1")

    async def go() -> None:
        async with client(api, credentials=IamToken(TOKEN)) as c:
            assert (await c.job("video", "j1")) is not None

    run(go())
    assert [r.auth for r in api.requests] == ["token"]


@pytest.mark.parametrize(
    "credentials", [AkSk(AK, SK + "x"), AkSk(AK + "x", SK), IamToken(TOKEN + "x")]
)
def test_wrong_credentials_are_a_configuration_error_without_secrets(
    api: FakeMetaStudio, credentials: AkSk | IamToken
) -> None:
    api.set_job("video", "j1")

    async def go() -> None:
        async with client(api, credentials=credentials) as c:
            await c.job("video", "j1")

    with pytest.raises(ApiConfigurationError) as caught:
        run(go())
    text = f"{caught.value!s} {caught.value!r} {credentials!r}"
    for secret in (SK, TOKEN, AK):
        assert secret not in text
    assert len(api.requests) == 1  # never retried


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_configuration_errors(api: FakeMetaStudio, status: int) -> None:
    api.fail_next(status)

    async def go() -> None:
        async with client(api) as c:
            await c.job("video", "j1")

    with pytest.raises(ApiConfigurationError, match=f"http_{status}"):
        run(go())


def test_unknown_job_is_none(api: FakeMetaStudio) -> None:
    async def go() -> object:
        async with client(api) as c:
            return await c.job("video", "nobody")

    assert run(go()) is None


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_failures_are_retried_until_the_api_recovers(
    api: FakeMetaStudio, status: int
) -> None:
    api.set_job("video", "j1")
    api.fail_next(status, times=2)

    async def go() -> object:
        async with client(api) as c:
            return await c.job("video", "j1")

    assert run(go()) is not None
    assert [r.status for r in api.requests] == [status, status, 200]


def test_transient_failures_past_the_retries_raise_unavailable(api: FakeMetaStudio) -> None:
    api.fail_always(503)

    async def go() -> None:
        async with client(api) as c:
            await c.job("video", "j1")

    with pytest.raises(ApiUnavailable, match="http_503"):
        run(go())
    assert len(api.requests) == FAST.attempts


def test_a_slow_api_times_out_as_unavailable(api: FakeMetaStudio) -> None:
    api.set_job("video", "j1")
    api.slow(0.5)

    async def go() -> None:
        async with client(
            api, timeout=0.05, retry=RetryPolicy(attempts=2, backoff_initial=0.001)
        ) as c:
            await c.job("video", "j1")

    with pytest.raises(ApiUnavailable, match="timeout"):
        run(go())


def test_other_4xx_is_a_rejected_query(api: FakeMetaStudio) -> None:
    api.fail_next(400)

    async def go() -> None:
        async with client(api) as c:
            await c.job("video", "j1")

    with pytest.raises(JobQueryRejected) as caught:
        run(go())
    assert caught.value.status == 400
    assert "MSS.00000003" in str(caught.value)


def test_an_unreachable_api_is_unavailable() -> None:
    async def go() -> None:
        async with MetaStudioClient(
            "http://127.0.0.1:9", "p", AkSk(AK, SK), retry=FAST, timeout=1.0
        ) as c:
            await c.job("video", "j1")

    with pytest.raises(ApiUnavailable, match="connection_failed"):
        run(go())


def test_concurrency_is_bounded(api: FakeMetaStudio) -> None:
    api.set_job("video", "j1")
    api.slow(0.05)
    in_flight = 0
    peak = 0
    import httpx

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await super().handle_async_request(request)
            finally:
                in_flight -= 1

    async def go() -> None:
        async with client(api, max_concurrency=3, transport=Counting()) as c:
            await asyncio.gather(*(c.job("video", "j1") for _ in range(12)))

    run(go())
    assert peak == 3
    assert len(api.requests) == 12


def test_backoff_has_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(attempts=10, backoff_initial=1.0, backoff_max=4.0)
    rng = random.Random(3)
    delays = [policy.delay(n, rng) for n in range(8) for _ in range(20)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) == len(delays)


def test_the_official_sdk_is_accepted_by_the_fake(api: FakeMetaStudio) -> None:
    """The fake checks signatures as the platform does: the SDK's own requests pass."""
    sdk = pytest.importorskip("huaweicloudsdkmetastudio.v1")
    credentials = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
    api.set_job("video", "j1", asset_id="a1")
    sdk_client = (
        sdk.MetaStudioClient.new_builder()
        .with_credentials(credentials.BasicCredentials(AK, SK, api.project_id))
        .with_endpoints([api.endpoint])
        .build()
    )
    answer = sdk_client.show2_d_digital_human_video(sdk.Show2DDigitalHumanVideoRequest(job_id="j1"))
    assert answer.output_asset_config.asset_id == "a1"
    assert [r.auth for r in api.requests] == ["aksk"]
