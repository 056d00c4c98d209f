"""The README's recipe for a host app under plain uvicorn: its access log keeps each line, and
loses the query string (MetaStudio's secret, callback-URL tokens), in a real uvicorn process."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from callbacks.access_log import StripQueryString
from tests.support import REPO, Route, Setup, free_port, wait_for

MS = Route("ms", "metastudio", "https://hooks.example.com/callbacks/ms", "video", "MSS_A")
SECRET = "f" * 64
TOKEN = "SECRETTOKENVALUE0123"

HOST_APP = """
import contextlib, logging, sys
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from callbacks import create_app, load_config
from callbacks.access_log import StripQueryString

receiver = create_app(load_config("callbacks.toml"))

@contextlib.asynccontextmanager
async def lifespan(app):
    async with receiver.router.lifespan_context(receiver):
        yield

app = Starlette(routes=[Mount("/hooks", app=receiver)], lifespan=lifespan)
if sys.argv[2] == "filter":
    logging.getLogger("uvicorn.access").addFilter(StripQueryString())
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]))
"""


def _host_log(tmp_path: Path, mode: str) -> str:
    setup = Setup(tmp_path, [MS], {"ms": "AccessLogKey2026xyz"}).write()
    (tmp_path / "host.py").write_text(textwrap.dedent(HOST_APP))
    port = free_port()
    out = tmp_path / "host.log"
    with out.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "host.py", str(port), mode],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PYTHONPATH": str(REPO), "E2E_EVENTS_FILE": str(setup.events_path)},
        )
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/hooks/healthz", timeout=1).is_success
            except httpx.TransportError:
                return False

        assert wait_for(ready, timeout=30), out.read_text()
        query = f"secret={SECRET}&time_stamp={int(time.time()):x}&token={TOKEN}"
        url = f"http://127.0.0.1:{port}/hooks{MS.path}?{query}"
        assert httpx.post(url, content=b"{}", timeout=10).status_code == 401
    finally:
        proc.terminate()
        proc.wait(20)
    return out.read_text()


@pytest.mark.slow
def test_the_filter_keeps_the_line_and_drops_the_query(tmp_path: Path) -> None:
    log = _host_log(tmp_path, "filter")
    assert f'"POST /hooks{MS.path} HTTP/1.1" 401' in log, log
    for secret in (SECRET, TOKEN, "secret=", "token="):
        assert secret not in log


@pytest.mark.slow
def test_without_it_plain_uvicorn_logs_the_secret(tmp_path: Path) -> None:
    """Why the recipe exists: the unfiltered host log carries MetaStudio's signature."""
    assert SECRET in _host_log(tmp_path, "plain")


def test_filter_leaves_other_records_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s?%s", ("a", "b?c"), None)
    assert StripQueryString().filter(record)
    assert record.getMessage() == "a?b?c"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "no args", None, None)
    assert StripQueryString().filter(plain)
    assert plain.getMessage() == "no args"
