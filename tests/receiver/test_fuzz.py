"""Arbitrary junk against the app: bodies, queries and headers from hypothesis get only 4xx,
never a 5xx, never a stored event, never a handler call."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from callbacks import Event, Handlers, create_app, parse_config
from callbacks.keyfile import KeyFile
from callbacks.store import EventFilter
from tests.support import all_route_kinds, keys_for, signed_request

ROUTES = all_route_kinds()
KEYS = keys_for(ROUTES)
PATHS = [r.path for r in ROUTES]
AUTH_NAMES = ["secret", "time_stamp", "hwSecret", "hwTime", "token", "tenant", "env"]
AUTH_HEADERS = ["x-hw-mss-secret", "x-hw-mss-time", "content-length", "content-type"]

calls: list[Event] = []


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("fuzz")
    config = parse_config(
        {
            "store": {"url": f"sqlite:///{root / 'callbacks.db'}"},
            "dispatch": {"poll_interval": 0.05},
            "routes": [r.as_toml() for r in ROUTES],
        },
        base_dir=root,
        source=str(root / "callbacks.toml"),
    )
    keys = KeyFile()
    for name, secret in KEYS.items():
        keys = keys.add(name, secret, state="primary", now=datetime.now(UTC))
    handlers = Handlers()
    handlers.on_any(calls.append)
    with TestClient(create_app(config, handlers=handlers, keys=keys)) as c:
        yield c


def _stored(client: TestClient) -> int:
    store = client.app.state.receiver.intake.store  # type: ignore[attr-defined]
    events = client.portal.call(store.list_events, EventFilter(limit=10))  # type: ignore[union-attr]
    return len(events)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
query_pairs = st.lists(
    st.tuples(
        st.sampled_from(AUTH_NAMES) | st.text(max_size=8),
        st.text(max_size=70) | st.from_regex(r"[0-9a-fA-F]{1,64}", fullmatch=True),
    ),
    max_size=5,
)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=70)


def _junk_body(draw: Any) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return bytes(draw(st.binary(max_size=300)))
    if kind == 1:
        return json.dumps(draw(json_values)).encode()  # stdlib: big ints too
    if kind == 2:
        # Plausible SenseTime-shaped junk: right field names, wrong values.
        body = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3))
        body["timestamp"] = draw(json_values | st.integers(10**9, 10**10 - 1))
        body["signature"] = draw(json_values | st.from_regex(r"[0-9a-fA-F]{32}", fullmatch=True))
        return json.dumps(body).encode()
    text: str = draw(st.text(max_size=200))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def junk_requests(draw: Any) -> tuple[str, str, dict[str, str], bytes]:
    path = draw(st.sampled_from(PATHS))
    # Percent-encoded so any text survives the HTTP client; the server sees it as sent.
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in draw(query_pairs))
    if draw(st.booleans()):
        # Raw percent-escapes of arbitrary bytes: ``token=%ff`` is no UTF-8 once decoded.
        name = draw(st.sampled_from(AUTH_NAMES))
        escapes = "".join(f"%{b:02x}" for b in draw(st.binary(min_size=1, max_size=8)))
        query = f"{query}&{name}={escapes}" if query else f"{name}={escapes}"
    headers = draw(st.dictionaries(st.sampled_from(AUTH_HEADERS[:2]), header_values, max_size=2))
    return path, query, headers, _junk_body(draw)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=junk_requests())
def test_junk_gets_only_4xx_and_reaches_no_handler(
    client: TestClient, request: tuple[str, str, dict[str, str], bytes]
) -> None:
    path, query, headers, body = request
    response = client.post(path + (f"?{query}" if query else ""), content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    answer = response.json()
    assert answer["ok"] is False
    assert isinstance(answer["reason"], str)
    assert answer["reason"].replace("_", "").isalpha()


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_signed_url_with_junk_body_gets_4xx(client: TestClient, data: st.DataObject) -> None:
    """A genuine MetaStudio signature on an unparseable body is a payload error, not a 5xx."""
    route = data.draw(st.sampled_from([r for r in ROUTES if r.provider == "metastudio"]))
    body = data.draw(st.binary(max_size=200).filter(lambda b: not _is_json_object(b)))
    req = signed_request(route, KEYS[route.name], {}, timestamp=int(time.time()))
    url = req.path + (f"?{req.query}" if req.query else "")
    response = client.post(url, content=body, headers=req.headers)
    assert response.status_code == 400, response.text


def test_nothing_was_stored_or_delivered(client: TestClient) -> None:
    """Runs after the fuzz tests in this module (pytest keeps file order)."""
    time.sleep(0.2)
    assert _stored(client) == 0
    assert calls == []


def _is_json_object(body: bytes) -> bool:
    try:
        return isinstance(orjson.loads(body), dict)
    except orjson.JSONDecodeError:
        return False
