"""The callback lane: a POST to a callback route's path goes straight to its endpoint, and the
lane never takes a request that the router would have sent anywhere else."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Match

from callbacks import Handlers, create_app, parse_config
from callbacks.app import CallbackEndpoint, CallbackLane
from callbacks.keyfile import KeyFile

PATHS = ["/callbacks/sensetime", "/callbacks/ms", "/hooks/{job}/done", "/x.y+z"]


def make_app(tmp_path: Path) -> Starlette:
    routes: list[dict[str, Any]] = [
        {"name": f"r{n}", "provider": "sensetime", "path": path, "public_url": f"https://h/{n}"}
        for n, path in enumerate(PATHS)
    ]
    config = parse_config(
        {"store": {"url": "sqlite:///callbacks.db"}, "routes": routes},
        base_dir=tmp_path,
        source=str(tmp_path / "callbacks.toml"),
    )
    return create_app(config, handlers=Handlers(), keys=KeyFile())


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    return make_app(tmp_path_factory.mktemp("lane"))


def lane_endpoints(app: Starlette) -> Mapping[str, CallbackEndpoint]:
    """The endpoints ``create_app`` gave its lane."""
    for middleware in app.user_middleware:
        if middleware.cls is cast(Any, CallbackLane):
            return cast(Mapping[str, CallbackEndpoint], middleware.kwargs["endpoints"])
    raise AssertionError("the app has no callback lane")


def lane_pick(app: Starlette, scope: dict[str, Any]) -> CallbackEndpoint | None:
    """The endpoint the lane sends ``scope`` to, or None when it passes it on."""
    picked: list[CallbackEndpoint | None] = []
    recording = {p: _Recording(e, picked) for p, e in lane_endpoints(app).items()}
    lane = CallbackLane(_Recording(None, picked), cast(Any, recording))
    coroutine = lane(scope, _never, _never)
    with pytest.raises(StopIteration):
        coroutine.send(None)
    (choice,) = picked
    return choice


class _Recording:
    def __init__(
        self, endpoint: CallbackEndpoint | None, picked: list[CallbackEndpoint | None]
    ) -> None:
        self.endpoint = endpoint
        self.picked = picked

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.picked.append(self.endpoint)


async def _never(*args: Any) -> Any:
    raise AssertionError("the lane reads and sends nothing itself")


def router_pick(app: Starlette, scope: dict[str, Any]) -> Any:
    """The endpoint of the first route that fully matches ``scope``, as the router picks it."""
    for route in app.router.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return child["endpoint"]
    return None


def scope(method: str, path: str, root_path: str = "") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": root_path}


@pytest.mark.parametrize("path", [p for p in PATHS if "{" not in p])
@pytest.mark.parametrize("mount", ["", "/hooks", "/a/b"])
def test_a_post_to_a_callback_path_takes_the_lane_mounted_or_not(
    app: Starlette, path: str, mount: str
) -> None:
    request = scope("POST", mount + path, mount)
    picked = lane_pick(app, request)
    assert isinstance(picked, CallbackEndpoint)
    assert picked.route.path == path
    assert router_pick(app, request) is picked  # the router would have chosen the same


def test_everything_else_goes_on_to_the_router(app: Starlette) -> None:
    others = [
        scope("GET", "/callbacks/sensetime"),  # the router's 405
        scope("POST", "/callbacks/sensetime/"),  # its 404: trailing slashes are not redirected
        scope("POST", "/hooks/42/done"),  # a route with a parameter
        scope("POST", "/healthz"),
        scope("POST", "/callbacks/sensetime", "/callbacks/sensetime"),  # the mount point itself
        scope("POST", "/hookscallbacks/sensetime", "/hooks"),  # not below the mount point
        {"type": "websocket", "path": "/callbacks/sensetime", "root_path": ""},
    ]
    for request in others:
        assert lane_pick(app, request) is None, request


segments = st.sampled_from(["callbacks", "sensetime", "ms", "hooks", "x.y+z", "", "a", "done"])
paths = st.lists(segments, min_size=0, max_size=4).map(lambda parts: "/" + "/".join(parts))


@given(
    method=st.sampled_from(["POST", "GET", "PUT", "HEAD"]),
    path=st.one_of(paths, st.sampled_from(PATHS), st.text(max_size=30)),
    root_path=st.sampled_from(["", "/hooks", "/callbacks", "/callbacks/sensetime", "/a/"]),
    prefixed=st.booleans(),
)
def test_the_lane_never_takes_a_request_the_router_would_send_elsewhere(
    app: Starlette, method: str, path: str, root_path: str, prefixed: bool
) -> None:
    request = scope(method, (root_path + path) if prefixed else path, root_path)
    picked = lane_pick(app, request)
    if picked is not None:
        assert router_pick(app, request) is picked
