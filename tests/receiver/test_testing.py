"""``callbacks.testing``: what users' tests import, and proof that it signs as the platforms do.

Every route kind's signed sample is accepted by the real receiver app (its own verification, not
a copy of it), and every tampered one is refused with the 401 a forgery gets.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.testclient import TestClient

import callbacks.testing
from callbacks import create_app, parse_config
from callbacks.keyfile import KeyFile
from callbacks.testing import SignedCallback, sample_body, sample_events, sign_callback
from tests.support import Route, all_route_kinds, keys_for

PUBLIC = {"SignedCallback", "sample_body", "sample_events", "sign_callback"}

ROUTES = all_route_kinds()
KEYS = keys_for(ROUTES)
CASES = [(r, event) for r in ROUTES for event in sample_events(r.config)]


def test_the_public_names_are_pinned() -> None:
    assert set(callbacks.testing.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(callbacks.testing, name) is not None


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root: Path = tmp_path_factory.mktemp("testing")
    config = parse_config(
        {
            "store": {"url": "sqlite:///callbacks.db"},
            "dispatch": {"enabled": False},
            "routes": [r.as_toml() for r in ROUTES],
        },
        base_dir=root,
        source=str(root / "callbacks.toml"),
        env={},
    )
    keys = KeyFile()
    for name, secret in KEYS.items():
        keys = keys.add(name, secret, state="primary", now=datetime.now(UTC))
    with TestClient(create_app(config, keys=keys)) as c:
        yield c


def _post(client: TestClient, path: str, signed: SignedCallback) -> tuple[int, dict[str, object]]:
    url = signed.url(f"http://testserver{path}")
    response = client.post(url, content=signed.body, headers=signed.headers)
    return response.status_code, response.json()


@pytest.mark.parametrize(("route", "event"), CASES, ids=[f"{r.name}-{e}" for r, e in CASES])
def test_every_sample_is_accepted_and_every_forgery_refused(
    client: TestClient, route: Route, event: str
) -> None:
    config = route.config
    body = sample_body(config, event)
    status, answer = _post(client, route.path, sign_callback(config, KEYS[route.name], body))
    assert (status, answer["ok"], answer["duplicate"]) == (200, True, False), answer
    forged = sign_callback(config, KEYS[route.name], body, tamper=True)
    status, answer = _post(client, route.path, forged)
    assert status == 401
    assert answer["reason"] in ("signature_mismatch", "bad_token")


def test_the_same_seq_is_a_retry_of_the_same_notification(client: TestClient) -> None:
    route = next(r for r in ROUTES if r.name == "ms-video")
    key = KEYS[route.name]
    body = sample_body(route.config, seq=7)
    first = _post(client, route.path, sign_callback(route.config, key, body))
    retry = sign_callback(route.config, key, sample_body(route.config, seq=7))
    again = _post(client, route.path, retry)
    assert first[1]["duplicate"] is False
    assert again[1]["duplicate"] is True
    assert again[1]["delivery_id"] != first[1]["delivery_id"]


@given(st.sampled_from(ROUTES), st.integers(0, 10**9), st.integers(0, 10**9))
def test_sample_bodies_differ_exactly_when_their_seq_does(route: Route, a: int, b: int) -> None:
    config = route.config
    assert (sample_body(config, seq=a) == sample_body(config, seq=b)) == (a == b)
    assert sample_body(config) != sample_body(config), "without seq, ids are fresh"


def test_an_unknown_event_is_refused() -> None:
    with pytest.raises(ValueError, match="not an event of route"):
        sample_body(ROUTES[0].config, "SUCCEED")


def test_url_replaces_the_query_and_drops_a_fragment() -> None:
    signed = SignedCallback(b"{}", "secret=ab&time_stamp=1")
    assert signed.url("http://127.0.0.1:8000/cb/x?old=1#frag") == (
        "http://127.0.0.1:8000/cb/x?secret=ab&time_stamp=1"
    )
