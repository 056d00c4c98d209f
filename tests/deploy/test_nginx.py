"""The shipped nginx snippet: no query string in its access log, and it runs on the nginx at hand
(Debian 12's 1.22 here), forwarding the request target byte for byte.

The real-nginx tests need ``nginx`` and ``openssl`` on PATH and skip without them; they run the
snippet as shipped, with only addresses, ports and file paths replaced.
"""

from __future__ import annotations

import http.server
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port, wait_for

SNIPPET = (
    Path(__file__).resolve().parent.parent.parent / "deploy" / "nginx" / "avatar-callbacks.conf"
)
QUERY_SECRETS = ("SECRETVALUE0123", "TOKENVALUE4567")
TARGET = (
    f"/callbacks/metastudio/video?tenant=acme&secret={QUERY_SECRETS[0]}"
    f"&time_stamp=19a2b3c4d5&token={QUERY_SECRETS[1]}%2Fx"
)

needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None or shutil.which("openssl") is None,
    reason="needs nginx and openssl on PATH (apt-get install nginx-light openssl)",
)


def _directives(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_access_log_format_has_no_query_string() -> None:
    text = _directives(SNIPPET.read_text(encoding="utf-8"))
    formats = dict(re.findall(r"\blog_format\s+(\w+)\s+((?:'[^']*'\s*)+);", text))
    assert len(formats) == 1, "one log_format, defined in the snippet"
    ((name, fmt),) = formats.items()
    for variable in ("request", "request_uri", "args", "query_string", "is_args", r"arg_\w+"):
        # Whole variable names only: $request_time is fine, $request is not.
        assert not re.search(rf"\$(?:{variable})(?!\w)", fmt), f"${variable} logs the query"
    logs = re.findall(r"^\s*access_log\s+([^;]+);", text, re.MULTILINE)
    assert logs, "the server block must name its access log and format"
    for log in logs:
        assert log.split()[-1] in {name, "off"}, f"access_log {log} uses another format"


def test_no_directive_needs_a_newer_nginx_than_debian_12() -> None:
    text = _directives(SNIPPET.read_text(encoding="utf-8"))
    assert not re.search(r"^\s*http2\s+on\s*;", text, re.MULTILINE), "needs nginx >= 1.25.1"


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[str]]]:
    """A receiver stand-in that answers 200 and records each request target it was sent."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(self.path)
            self.rfile.read(int(self.headers.get("content-length", "0")))
            body = b'{"ok":true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()
    server.server_close()


def _nginx_config(tmp_path: Path, listen: int, upstream_port: int) -> Path:
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=hooks.example.com"),
            *("-keyout", str(certs / "privkey.pem"), "-out", str(certs / "fullchain.pem")),
        ],
        check=True,
        capture_output=True,
    )
    snippet = SNIPPET.read_text(encoding="utf-8")
    snippet = re.sub(r"server receiver-\d:8000", f"server 127.0.0.1:{upstream_port}", snippet)
    snippet = snippet.replace("listen 443 ", f"listen 127.0.0.1:{listen} ")
    snippet = snippet.replace("/etc/nginx/certs/", f"{certs}/")
    snippet = snippet.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "snippet.conf").write_text(snippet, encoding="utf-8")
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\n"
        "worker_processes 1;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"  client_body_temp_path {tmp_path}/body;\n"
        f"  proxy_temp_path {tmp_path}/proxy;\n"
        f"  include {tmp_path}/snippet.conf;\n"
        "}\n",
        encoding="utf-8",
    )
    return main


@needs_nginx
def test_nginx_accepts_the_snippet(tmp_path: Path) -> None:
    config = _nginx_config(tmp_path, free_port(), free_port())
    result = subprocess.run(
        ["nginx", "-t", "-c", str(config), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@needs_nginx
def test_query_string_reaches_the_receiver_but_not_the_access_log(
    tmp_path: Path, upstream: tuple[int, list[str]]
) -> None:
    upstream_port, seen = upstream
    listen = free_port()
    config = _nginx_config(tmp_path, listen, upstream_port)
    nginx = subprocess.Popen(
        ["nginx", "-c", str(config), "-e", str(tmp_path / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"https://127.0.0.1:{listen}"

        def up() -> bool:
            try:
                httpx.get(url, verify=False, timeout=1)  # noqa: S501 - a throwaway test cert
            except httpx.TransportError:
                return False
            return True

        assert wait_for(up, timeout=10), "nginx did not start"
        with httpx.Client(verify=False, timeout=10) as client:  # noqa: S501
            response = client.post(url + TARGET, content=b'{"job_id":"j"}')
        assert response.status_code == 200
        assert seen == [TARGET], "the request target must reach the receiver unchanged"
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful: the access log is flushed
        nginx.wait(10)
    access = (tmp_path / "access.log").read_text(encoding="utf-8")
    assert '"POST /callbacks/metastudio/video HTTP/' in access
    for value in (*QUERY_SECRETS, "secret=", "token=", "?"):
        assert value not in access, f"{value!r} reached the access log"
