"""End to end through real HTTP: a ``callbacks serve`` process on loopback, every route kind and
carrier, good and bad requests. Handlers record deliveries to a file the test reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from callbacks.keyfile import KeyFile, read_key_file, write_key_file
from tests.support import (
    Route,
    ServerProcess,
    Setup,
    all_route_kinds,
    keys_for,
    sample_body,
    signed_request,
    wait_for,
)
from verify import key_id

pytestmark = pytest.mark.slow

ROUTES = [
    *all_route_kinds(),
    Route("st-open", "sensetime", "https://hooks.example.com/open", allow_unsigned=True),
]
KEYS = keys_for(ROUTES)
NEXT_KEY = "NextKey2026abcXYZ"
RETIRED_KEY = "RetiredKey2025abc9"
PREVIOUS_KEY = "PreviousKey2025xY1"
WRONG_KEY = "WrongKey0000abcXYZ"
ROUTE_NAMES = [r.name for r in all_route_kinds()]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    now = datetime.now(UTC)
    extra = (
        KeyFile()
        .add("st", NEXT_KEY, state="next", now=now)
        .add("st", PREVIOUS_KEY, state="next", now=now)
        .add("st", RETIRED_KEY, state="next", now=now)
    )
    # Mark the last two as previous keys: one still in its grace period, one past it.
    entries = []
    for e in extra.entries:
        if e.secret == PREVIOUS_KEY:
            e = type(e)(e.route, e.secret, "previous", e.added_at, now + timedelta(days=1))
        elif e.secret == RETIRED_KEY:
            e = type(e)(e.route, e.secret, "previous", e.added_at, now - timedelta(minutes=1))
        entries.append(e)
    setup = Setup(
        tmp_path_factory.mktemp("e2e"), ROUTES, KEYS, extra_keys=KeyFile(tuple(entries))
    ).write()
    proc = ServerProcess(setup).start()
    yield setup
    proc.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


_counter = iter(range(10**9))


def fresh_body(route: Route) -> dict[str, object]:
    return sample_body(route, next(_counter) + int(time.time() * 1000) % 10**6 * 1000)


def delivered_ids(setup: Setup) -> list[str]:
    return [r["id"] for r in setup.delivered() if r["phase"] == "end"]


@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_good_callback_is_stored_and_delivered_as_typed_event(
    server: Setup, client: httpx.Client, name: str
) -> None:
    route = server.route(name)
    req = signed_request(route, KEYS[name], fresh_body(route))
    response = req.send(client, server.base_url)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["ok"] is True
    assert answer["duplicate"] is False
    delivery_id = answer["delivery_id"]
    assert wait_for(lambda: delivery_id in delivered_ids(server))
    record = next(r for r in server.delivered() if r["id"] == delivery_id)
    expected_type = {
        "sensetime": "SenseTimeCallback",
        "tts": "MetaStudioTtsResult",
        "live": "RtmpStreamStateChange",
    }.get(route.kind or route.provider, "MetaStudioJobResult")
    assert record["type"] == expected_type
    assert record["route"] == name
    assert record["key_id"] == key_id(KEYS[name])


@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_forged_signature_is_rejected(server: Setup, client: httpx.Client, name: str) -> None:
    route = server.route(name)
    req = signed_request(route, KEYS[name], fresh_body(route))
    forged = _flip_signature(req.query, req.headers, req.body)
    response = client.post(
        f"{server.base_url}{route.path}" + (f"?{forged[0]}" if forged[0] else ""),
        content=forged[2],
        headers=forged[1],
    )
    assert response.status_code in (400, 401), response.text
    assert response.json()["reason"] in ("signature_mismatch", "bad_token")


@pytest.mark.parametrize("name", [n for n in ROUTE_NAMES if n != "ms-tts"])
def test_wrong_key_is_rejected(server: Setup, client: httpx.Client, name: str) -> None:
    route = server.route(name)
    response = signed_request(route, WRONG_KEY, fresh_body(route)).send(client, server.base_url)
    assert response.status_code == 401
    assert response.json() == {"ok": False, "reason": "signature_mismatch"}


def test_token_minted_with_wrong_key_is_rejected(server: Setup, client: httpx.Client) -> None:
    route = server.route("ms-tts")
    response = signed_request(route, WRONG_KEY, fresh_body(route)).send(client, server.base_url)
    assert response.status_code == 401
    assert response.json()["reason"] == "bad_token"


def test_token_bound_to_another_job_is_rejected(server: Setup, client: httpx.Client) -> None:
    route = server.route("ms-tts")
    req = signed_request(route, KEYS["ms-tts"], {"status": "FINISHED", "job_id": "b"}, job="a")
    response = req.send(client, server.base_url)
    assert response.status_code == 401
    assert response.json()["reason"] == "token_wrong_job"


@pytest.mark.parametrize("name", [n for n in ROUTE_NAMES if n != "ms-tts"])
@pytest.mark.parametrize(
    ("offset", "reason"), [(-301, "timestamp_expired"), (301, "timestamp_in_future")]
)
def test_stale_and_future_timestamps_are_rejected(
    server: Setup, client: httpx.Client, name: str, offset: int, reason: str
) -> None:
    route = server.route(name)
    ts = int(time.time()) + offset + (-2 if offset < 0 else 2)
    response = signed_request(route, KEYS[name], fresh_body(route), timestamp=ts).send(
        client, server.base_url
    )
    assert response.status_code == 401
    assert response.json()["reason"] == reason


@pytest.mark.parametrize(
    ("secret", "accepted"),
    [(NEXT_KEY, True), (PREVIOUS_KEY, True), (RETIRED_KEY, False)],
    ids=["next-key", "previous-key-in-grace", "previous-key-past-retire-after"],
)
def test_rotated_keys(server: Setup, client: httpx.Client, secret: str, accepted: bool) -> None:
    route = server.route("st")
    response = signed_request(route, secret, fresh_body(route)).send(client, server.base_url)
    if not accepted:
        assert response.status_code == 401
        return
    assert response.status_code == 200
    delivery_id = response.json()["delivery_id"]
    assert wait_for(lambda: delivery_id in delivered_ids(server))
    record = next(r for r in server.delivered() if r["id"] == delivery_id)
    assert record["key_id"] == key_id(secret)


@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_unsigned_callbacks_are_refused_by_default(
    server: Setup, client: httpx.Client, name: str
) -> None:
    route = server.route(name)
    response = client.post(
        f"{server.base_url}{route.path}", content=orjson.dumps(fresh_body(route))
    )
    assert response.status_code == 401
    assert response.json()["reason"] in ("missing_signature", "bad_token")


def test_unsigned_callback_accepted_where_explicitly_allowed(
    server: Setup, client: httpx.Client
) -> None:
    route = server.route("st-open")
    response = client.post(
        f"{server.base_url}{route.path}", content=orjson.dumps(fresh_body(route))
    )
    assert response.status_code == 200
    delivery_id = response.json()["delivery_id"]
    assert wait_for(lambda: delivery_id in delivered_ids(server))


@pytest.mark.parametrize("name", ROUTE_NAMES)
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"[1, 2]", "json_not_an_object"),
        (b"", "empty_body"),
        (b"\xff\xfe{}", "malformed_json"),
    ],
)
def test_malformed_json_gets_400(
    server: Setup, client: httpx.Client, name: str, body: bytes, reason: str
) -> None:
    route = server.route(name)
    req = signed_request(route, KEYS[name], {})
    response = client.post(
        f"{server.base_url}{route.path}" + (f"?{req.query}" if req.query else ""),
        content=body,
        headers=req.headers,
    )
    assert response.status_code == 400
    assert response.json() == {"ok": False, "reason": reason}


@pytest.mark.parametrize("name", ["st", "ms-video"])
def test_oversize_body_gets_413(server: Setup, client: httpx.Client, name: str) -> None:
    route = server.route(name)
    req = signed_request(route, KEYS[name], {"pad": "x" * (1024 * 1024 + 10)})
    response = req.send(client, server.base_url)
    assert response.status_code == 413
    assert response.json()["reason"] == "body_too_large"


def test_oversize_chunked_body_without_length_gets_413(server: Setup, client: httpx.Client) -> None:
    route = server.route("ms-video")
    req = signed_request(route, KEYS["ms-video"], {})

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b"x" * 65536

    response = client.post(
        f"{server.base_url}{route.path}?{req.query}", content=chunks(), headers=req.headers
    )
    assert response.status_code == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_gets_405(server: Setup, client: httpx.Client, method: str) -> None:
    route = server.route("st")
    req = signed_request(route, KEYS["st"], fresh_body(route))
    response = req.send(client, server.base_url, method=method)
    assert response.status_code == 405
    assert response.json() == {"ok": False, "reason": "method_not_allowed"}


def test_unknown_path_gets_404(server: Setup, client: httpx.Client) -> None:
    response = client.post(f"{server.base_url}/cb/nope", content=b"{}")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "reason": "not_found"}


def test_extra_unsigned_query_parameter_is_rejected(server: Setup, client: httpx.Client) -> None:
    route = server.route("ms-video")
    req = signed_request(route, KEYS["ms-video"], fresh_body(route))
    response = client.post(
        f"{server.base_url}{route.path}?{req.query}&amount=1000000", content=req.body
    )
    assert response.status_code == 401
    assert response.json()["reason"] == "unsigned_parameters"


@pytest.mark.parametrize("name", ROUTE_NAMES)
def test_platform_retry_reaches_handler_once(
    server: Setup, client: httpx.Client, name: str
) -> None:
    """A retry has a new timestamp and signature but the same content: stored, not re-delivered."""
    route = server.route(name)
    payload = fresh_body(route)
    first = signed_request(route, KEYS[name], payload).send(client, server.base_url).json()
    retry = signed_request(route, KEYS[name], payload, timestamp=int(time.time()) - 5)
    second = retry.send(client, server.base_url)
    assert second.status_code == 200
    assert second.json()["duplicate"] is True
    assert wait_for(lambda: first["delivery_id"] in delivered_ids(server))
    time.sleep(0.3)  # give a wrong second delivery the chance to show up
    ids = delivered_ids(server)
    assert first["delivery_id"] in ids
    assert second.json()["delivery_id"] not in ids


def test_health_and_readiness(server: Setup, client: httpx.Client) -> None:
    assert client.get(f"{server.base_url}/healthz").json() == {"status": "ok"}
    assert client.get(f"{server.base_url}/readyz").json() == {"status": "ready"}
    metrics = client.get(f"{server.base_url}/metrics").text
    assert "avatar_callbacks_requests_total" in metrics


def test_key_file_change_is_picked_up_without_restart(server: Setup, client: httpx.Client) -> None:
    route = server.route("ms-photo")
    new_key = "FreshPhotoKey2026x"
    assert (
        signed_request(route, new_key, fresh_body(route)).send(client, server.base_url).status_code
        == 401
    )
    keyfile = read_key_file(server.keys_path)
    write_key_file(
        server.keys_path, keyfile.add("ms-photo", new_key, state="next", now=datetime.now(UTC))
    )
    assert wait_for(
        lambda: (
            signed_request(route, new_key, fresh_body(route))
            .send(client, server.base_url)
            .status_code
            == 200
        ),
        timeout=10,
        interval=0.2,
    )


def _flip_signature(
    query: str, headers: dict[str, str], body: bytes
) -> tuple[str, dict[str, str], bytes]:
    """Change one hex digit of whatever carries the signature (or one character of a token)."""

    def flip(text: str) -> str:
        # Not the last character: in a base64 token its low bits may be unused padding.
        i = len(text) - 5
        return text[:i] + ("0" if text[i] != "0" else "1") + text[i + 1 :]

    if headers:
        name = next(k for k in headers if k.endswith("secret"))
        return query, {**headers, name: flip(headers[name])}, body
    pairs = query.split("&") if query else []
    for i, pair in enumerate(pairs):
        name = pair.split("=", 1)[0]
        if name in ("secret", "hwSecret", "token"):
            pairs[i] = flip(pair)
            return "&".join(pairs), headers, body
    data = orjson.loads(body)
    data["signature"] = flip(data["signature"])
    return query, headers, orjson.dumps(data)
