"""The console's JSON API through real HTTP, against a real ``callbacks serve`` process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from callbacks.masking import MASK
from tests.admin.console_support import (
    ADMIN_TOKEN,
    READ_ONLY_TOKEN,
    STREAM_KEY,
    Console,
    csrf_of,
    seed,
    sign_in,
    start_console,
)
from tests.support import sample_body

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    running = start_console(tmp_path_factory.mktemp("console"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def ids(console: Console) -> dict[str, list[str]]:
    return seed(console)


def _events(client: httpx.Client, **params: str) -> list[dict[str, object]]:
    answer = client.get("/api/events", params=params)
    assert answer.status_code == 200, answer.text
    events: list[dict[str, object]] = answer.json()["events"]
    return events


# -- auth ----------------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/api/events"),
    ("GET", "/api/events/0123"),
    ("POST", "/api/events/0123/replay"),
    ("POST", "/api/replay"),
    ("POST", "/api/purge"),
    ("GET", "/api/jobs/expected"),
    ("POST", "/api/jobs/expected"),
    ("GET", "/api/keys"),
    ("GET", "/api/health"),
    ("GET", "/api/metrics"),
    ("GET", "/api/openapi.json"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_every_endpoint_refuses_a_caller_without_a_valid_token(
    console: Console, method: str, path: str
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    ):
        answer = httpx.request(method, console.url + path, headers=headers, json={"dead": True})
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.json() == {"ok": False, "reason": "unauthorized"}
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert ADMIN_TOKEN not in answer.text


def test_the_callback_port_serves_no_console(console: Console) -> None:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert httpx.get(console.setup.base_url + "/api/events", headers=headers).status_code == 404
    assert httpx.get(console.setup.base_url + "/login").status_code == 404


def test_the_read_only_token_sees_but_cannot_act(
    console: Console, ids: dict[str, list[str]]
) -> None:
    with console.api(READ_ONLY_TOKEN) as reader:
        assert len(_events(reader)) >= 8
        assert reader.get(f"/api/events/{ids['st'][0]}").status_code == 200
        for path, body in (
            (f"/api/events/{ids['dead'][0]}/replay", None),
            ("/api/replay", {"dead": True}),
            ("/api/purge", {"before": "0d"}),
        ):
            answer = reader.post(path, json=body)
            assert answer.status_code == 403, path
            assert answer.json()["reason"] == "read_only"
    assert console.status_of(ids["dead"][0]) == "dead"


def test_a_session_action_without_its_csrf_token_is_refused(console: Console) -> None:
    with httpx.Client(base_url=console.url) as browser:
        signed_in = sign_in(browser, ADMIN_TOKEN)
        assert signed_in.status_code == 303
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert browser.get("/api/health").status_code == 200  # looking needs no CSRF token
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            answer = browser.post("/api/purge", json={"before": "3650d"}, headers=headers)
            assert answer.status_code == 403
            assert answer.json()["reason"] == "csrf_failed"
        token = csrf_of(browser.get("/").text)
        answer = browser.post(
            "/api/purge", json={"before": "3650d"}, headers={"X-CSRF-Token": token}
        )
        assert answer.status_code == 200, answer.text


def test_a_page_form_without_its_csrf_field_is_refused(
    console: Console, ids: dict[str, list[str]]
) -> None:
    with httpx.Client(base_url=console.url) as browser:
        sign_in(browser, ADMIN_TOKEN)
        answer = browser.post(f"/events/{ids['dead'][0]}/replay", data={"csrf": "forged"})
        assert answer.status_code == 403
        answer = browser.post(f"/events/{ids['dead'][0]}/replay", data={})
        assert answer.status_code == 403
    assert console.status_of(ids["dead"][0]) == "dead"


def test_a_forged_or_tampered_session_cookie_is_not_signed_in(console: Console) -> None:
    with httpx.Client(base_url=console.url) as browser:
        sign_in(browser, READ_ONLY_TOKEN)
        value = browser.cookies["callbacks_console"]
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    for cookie in (tampered, "junk", ""):
        answer = httpx.get(console.url + "/api/events", cookies={"callbacks_console": cookie})
        assert answer.status_code == 401


def test_a_wrong_token_at_sign_in_sets_no_session(console: Console) -> None:
    with httpx.Client(base_url=console.url) as browser:
        answer = sign_in(browser, "not-the-token-0123456789")
        assert answer.status_code == 401
        assert "callbacks_console" not in browser.cookies
        assert browser.get("/api/events").status_code == 401


# -- listing -------------------------------------------------------------------------------------


def test_filters(console: Console, ids: dict[str, list[str]]) -> None:
    with console.api() as client:
        st = _events(client, route="st")
        assert {e["id"] for e in st} == set(ids["st"] + ids["dead"])
        assert [e["id"] for e in _events(client, status="dead")] == ids["dead"]
        videos = _events(client, type="MetaStudioJobResult")
        assert {e["id"] for e in videos} == set(ids["ms-video"])
        assert [e["id"] for e in _events(client, q="job-1")] == [ids["ms-video"][1]]
        assert [e["id"] for e in _events(client, q="room-7")] == ids["ms-live"]
        assert _events(client, since="2000-01-01", until="2000-01-02") == []
        assert len(_events(client, since="1h")) == len(_events(client))
        key_id = st[0]["key_id"]
        assert isinstance(key_id, str)
        assert {e["id"] for e in _events(client, key_id=key_id)} == {e["id"] for e in st}
        for bad in ({"status": "lost"}, {"since": "yesterday"}, {"limit": "0"}, {"before": "zz"}):
            answer = client.get("/api/events", params=bad)
            assert answer.status_code == 400, bad
            assert answer.json()["reason"] == "bad_filter"


def test_paging_is_newest_first_and_covers_every_event_once(
    console: Console, ids: dict[str, list[str]]
) -> None:
    with console.api() as client:
        everything = [e["id"] for e in _events(client, limit="500")]
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            params = {"limit": "3", **({"before": cursor} if cursor else {})}
            page = client.get("/api/events", params=params).json()
            seen += [e["id"] for e in page["events"]]
            pages += 1
            cursor = page["next_before"]
            if cursor is None:
                break
    assert seen == everything
    assert seen == sorted(seen, reverse=True)
    assert pages == -(-len(everything) // 3)
    assert set(ids["st"]) <= set(seen)


# -- one event -----------------------------------------------------------------------------------


def test_show_masks_the_stream_key_as_events_show_does(
    console: Console, ids: dict[str, list[str]]
) -> None:
    with console.api() as client:
        answer = client.get(f"/api/events/{ids['ms-live'][0]}")
        sensetime = client.get(f"/api/events/{ids['st'][0]}").json()
    assert answer.status_code == 200
    assert STREAM_KEY not in answer.text
    assert f'\\"stream_key\\":\\"{MASK}\\"' in answer.text
    assert sensetime["body"]["signature"] == MASK
    sent = sample_body(console.setup.route("st"), 0)
    assert sensetime["body"]["taskId"] == sent["taskId"]  # what is not a secret stays as sent
    assert sensetime["handler_state"]["console_handlers.deliver"]["status"] == "ok"


def test_show_of_an_unknown_id_is_404(console: Console) -> None:
    with console.api() as client:
        for event_id in ("ffffffffffff", "not-hex", "%2e%2e"):
            answer = client.get(f"/api/events/{event_id}")
            assert answer.status_code == 404
            assert answer.json()["reason"] == "not_found"


# -- actions -------------------------------------------------------------------------------------


def test_replay_one_dead_event_delivers_it(console: Console) -> None:
    console.fail_flag.write_text("fail")
    dead = console.send("st", {"taskId": 4242, "status": 2, "userData": "fail"})
    assert console.wait_status(dead, "dead")
    console.fail_flag.unlink()
    with console.api() as client:
        answer = client.post(f"/api/events/{dead}/replay")
    assert answer.status_code == 200
    assert answer.json()["requeued"] == 1
    assert console.wait_status(dead, "delivered")


def test_replay_all_dead_and_by_filter(console: Console) -> None:
    console.fail_flag.write_text("fail")
    first = console.send("st", {"taskId": 5001, "status": 2, "userData": "fail"})
    second = console.send("st", {"taskId": 5002, "status": 2, "userData": "fail"})
    assert console.wait_status(first, "dead")
    assert console.wait_status(second, "dead")
    console.fail_flag.unlink()
    with console.api() as client:
        by_filter = client.post("/api/replay", json={"filter": {"q": "5001", "status": "dead"}})
        assert by_filter.json() == {"ok": True, "requeued": 1, "more": False}
        assert console.wait_status(first, "delivered")
        assert console.status_of(second) == "dead"
        every_dead = client.post("/api/replay", json={"dead": True, "route": "st"})
        assert every_dead.status_code == 200
        assert every_dead.json()["requeued"] >= 1
    assert console.wait_status(second, "delivered")


def test_bad_action_bodies_are_400(console: Console) -> None:
    with console.api() as client:
        for body in (b"not json", b"[1]", b'{"ids": [1]}', b'{"dead": false}', b"{}"):
            answer = client.post("/api/replay", content=body)
            assert answer.status_code == 400, body
        for body in (b'{"before": "soon"}', b"{}", b'{"before": 3}'):
            assert client.post("/api/purge", content=body).status_code == 400, body


def test_purge_by_age_keeps_recent_events(console: Console, ids: dict[str, list[str]]) -> None:
    with console.api() as client:
        answer = client.post("/api/purge", json={"before": "2000-01-01"})
        assert answer.json() == {"ok": True, "purged": 0}
        assert client.get(f"/api/events/{ids['st'][0]}").status_code == 200


# -- keys, health, metrics, schema ---------------------------------------------------------------


def test_keys_show_state_and_usage_never_the_key(
    console: Console, ids: dict[str, list[str]]
) -> None:
    with console.api(READ_ONLY_TOKEN) as client:
        answer = client.get("/api/keys")
    assert answer.status_code == 200
    for secret in console.setup.keys.values():
        assert secret not in answer.text
    routes = {r["route"]: r for r in answer.json()["routes"]}
    st_key = routes["st"]["keys"][0]
    assert st_key["state"] == "primary"
    assert st_key["verified_24h"] >= len(ids["st"]) + len(ids["dead"])
    assert st_key["last_verified_at"] is not None


def test_health_and_metrics(console: Console, ids: dict[str, list[str]]) -> None:
    with console.api(READ_ONLY_TOKEN) as client:
        health = client.get("/api/health")
        numbers = client.get("/api/metrics").json()
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert numbers["callbacks"]["ms-video"]["accepted"] >= 3
    assert numbers["inbox_depth"] == 0 or isinstance(numbers["inbox_depth"], int)
    assert any(v["route"] == "st" for v in numbers["verified_by_key"])


def test_openapi_lists_every_api_route(console: Console) -> None:
    from callbacks.admin import api

    with console.api(READ_ONLY_TOKEN) as client:
        document = client.get("/api/openapi.json").json()
    assert document["openapi"].startswith("3.")
    served = {(m, route.path) for route in api.routes for m in (route.methods or ()) if m != "HEAD"}
    described = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert described == served
    # ... and the auth test above tries every one of them.
    assert {(m, p.replace("0123", "{event_id}")) for m, p in ENDPOINTS} == served


# -- pages over plain HTTP (the browser tests drive them for real) -------------------------------


def test_pages_send_a_signed_out_browser_to_the_sign_in_form(console: Console) -> None:
    answer = httpx.get(console.url + "/events/0123?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fevents%2F0123%3Fx%3D1"


def test_sign_in_never_redirects_off_the_console(console: Console) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "keys"):
        with httpx.Client(base_url=console.url) as browser:
            form = browser.get("/login", params={"next": target})
            assert 'name="next" value="/"' in form.text
            nonce = form.text.split('name="nonce" value="')[1].split('"')[0]
            answer = browser.post(
                "/login", data={"token": ADMIN_TOKEN, "nonce": nonce, "next": target}
            )
            assert answer.status_code == 303
            assert answer.headers["location"] == "/"


def test_sign_in_without_the_form_nonce_is_refused(console: Console) -> None:
    answer = httpx.post(console.url + "/login", data={"token": ADMIN_TOKEN, "nonce": "x"})
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_pages_answer_bad_input_with_4xx(console: Console, ids: dict[str, list[str]]) -> None:
    with httpx.Client(base_url=console.url) as browser:
        sign_in(browser, READ_ONLY_TOKEN)
        assert browser.get("/", params={"status": "lost"}).status_code == 400
        assert browser.get("/", params={"since": "\x00"}).status_code == 400
        assert browser.get("/events/ffffffffffff").status_code == 404
        assert browser.get("/events/..%2f..").status_code == 404
        assert browser.get("/nowhere").status_code == 404
        assert browser.put("/api/events").status_code == 405
        page = browser.get(f"/events/{ids['ms-live'][0]}")
        assert page.status_code == 200
        assert STREAM_KEY not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        # A reader's page offers no action, and posting the form anyway is refused.
        assert "/replay" not in page.text
        token = csrf_of(page.text)
        answer = browser.post(f"/events/{ids['dead'][0]}/replay", data={"csrf": token})
        assert answer.status_code == 403
        assert answer.json()["reason"] == "read_only"


def test_sign_out_ends_the_session_in_the_browser(console: Console) -> None:
    with httpx.Client(base_url=console.url) as browser:
        sign_in(browser, ADMIN_TOKEN)
        token = csrf_of(browser.get("/").text)
        answer = browser.post("/logout", data={"csrf": token})
        assert answer.status_code == 303
        assert browser.get("/").status_code == 303
