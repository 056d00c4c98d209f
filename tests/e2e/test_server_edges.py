"""The connection's edges through a real ``callbacks serve``: header size, slow clients, the
connection cap, and a slow client in flight at SIGTERM.

Memory is read from the server's /proc entry; slow clients are held past short configured
timeouts and must find their connection closed, while another client is served normally.
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Route, ServerProcess, Setup, keys_for, sample_body, signed_request

pytestmark = pytest.mark.slow

ST = Route("st", "sensetime", "https://hooks.example.com/callbacks/sensetime")
KEYS = keys_for([ST])
MAX_CONNECTIONS = 30  # room for the 20 slow clients below
TIMEOUT = 1.0  # header and body read timeouts of the test server, seconds
WAIT = 15.0  # how long a client waits for the server to act: far past TIMEOUT, never reached
EDGES = {"header_timeout": TIMEOUT, "body_timeout": TIMEOUT, "max_connections": MAX_CONNECTIONS}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Setup, ServerProcess]]:
    setup = Setup(tmp_path_factory.mktemp("edges"), [ST], KEYS, server=EDGES).write()
    proc = ServerProcess(setup).start()
    yield setup, proc
    proc.stop()


@pytest.fixture
def server(served: tuple[Setup, ServerProcess]) -> Setup:
    return served[0]


def connect(setup: Setup) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", setup.port))
    s.settimeout(WAIT)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def send_ignoring_reset(s: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server refused part-way and closed: as tested
        s.sendall(data)


def rss_bytes(pid: int) -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match is not None
    return int(match.group(1)) * 1024


def served_normally(setup: Setup) -> None:
    req = signed_request(ST, KEYS["st"], sample_body(ST, time.time_ns()))
    with httpx.Client(timeout=WAIT) as client:
        assert req.send(client, setup.base_url).status_code == 200


def test_an_8_mib_header_is_refused(server: Setup) -> None:
    with connect(server) as s:
        head = b"POST /cb/st HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * (8 << 20) + b"\r\n\r\n"
        send_ignoring_reset(s, head)
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert answer.endswith(b'{"ok":false,"reason":"headers_too_large"}')
    served_normally(server)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc for RSS")
def test_partial_headers_keep_memory_bounded(served: tuple[Setup, ServerProcess]) -> None:
    setup, proc = served
    assert proc.proc is not None
    before = rss_bytes(proc.proc.pid)
    chunk = b"a" * (256 << 10)
    connections = []
    try:
        for _ in range(20):  # all open at once, each sending a 4 MiB partial header
            s = connect(setup)
            connections.append(s)
            send_ignoring_reset(s, b"POST /cb/st HTTP/1.1\r\nHost: x\r\nX-Junk: ")
            for _ in range((4 << 20) // len(chunk)):
                send_ignoring_reset(s, chunk)
        growth = rss_bytes(proc.proc.pid) - before
    finally:
        for s in connections:
            s.close()
    assert growth < 40 << 20, f"RSS grew {growth / 2**20:.1f} MB"
    served_normally(setup)


def test_a_partial_header_is_dropped_while_others_are_served(server: Setup) -> None:
    with connect(server) as slow:
        slow.sendall(b"POST /cb/st HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        served_normally(server)
        assert read_all(slow) == b""  # closed without an answer after header_timeout


def test_a_slow_body_is_dropped_while_others_are_served(server: Setup) -> None:
    req = signed_request(ST, KEYS["st"], sample_body(ST, time.time_ns()))
    with connect(server) as slow:
        head = f"POST /cb/st HTTP/1.1\r\nHost: x\r\nContent-Length: {len(req.body)}\r\n\r\n"
        slow.sendall(head.encode() + req.body[:10])
        served_normally(server)
        assert read_all(slow) == b""  # closed after body_timeout, nothing stored
    served_normally(server)


def raw_request(setup: Setup, n: int) -> bytes:
    req = signed_request(ST, KEYS["st"], sample_body(ST, n))
    target = req.path + (f"?{req.query}" if req.query else "")
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(req.body)}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in req.headers.items())
    return head.encode() + b"\r\n" + req.body


def content_length(head: bytes) -> int:
    match = re.search(rb"(?im)^content-length: *(\d+)", head)
    assert match is not None, f"no Content-Length in {head!r}"
    return int(match.group(1))


def read_response(s: socket.socket) -> bytes:
    """One answer on a kept-alive connection: its head and Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"closed mid-answer after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = content_length(head)
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "closed mid-body"
        body += chunk
    assert len(body) == length, "more than one answer"
    return head


def test_a_connection_kept_busy_past_the_timeout_is_never_dropped(server: Setup) -> None:
    """Each request moves the read deadline on: a connection that keeps sending well within it
    is served for far longer than one timeout."""
    base = time.time_ns()
    with connect(server) as busy:
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 3 * TIMEOUT:
            busy.sendall(raw_request(server, base + n))
            assert read_response(busy).startswith(b"HTTP/1.1 200 ")
            n += 1
            time.sleep(TIMEOUT / 5)
        assert n >= 10


def test_after_an_answer_the_next_head_must_come_within_the_timeout(server: Setup) -> None:
    with connect(server) as slow:
        slow.sendall(raw_request(server, time.time_ns()))
        assert read_response(slow).startswith(b"HTTP/1.1 200 ")
        slow.sendall(b"POST /cb/st HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert read_all(slow) == b""  # closed after header_timeout, well before WAIT


def split_answers(data: bytes) -> list[tuple[bytes, bytes]]:
    """A connection's answers in order, each as (status line, body) by its Content-Length."""
    answers = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"an answer cut off: {data!r}"
        length = content_length(head)
        answers.append((head.split(b"\r\n", 1)[0], rest[:length]))
        data = rest[length:]
    return answers


def test_pipelined_requests_are_each_answered_whole_and_in_order(server: Setup) -> None:
    """Answers leave as one write each (a head waits for its body): sent back to back on one
    connection, four requests get four complete answers in their order, then the close."""
    base = time.time_ns()
    signed = raw_request(server, base + 1)
    at = signed.index(b'"signature":"') + len(b'"signature":"')
    forged = signed[:at] + (b"1" if signed[at : at + 1] == b"0" else b"0") + signed[at + 1 :]
    pipelined = (
        raw_request(server, base)
        + forged
        + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        + raw_request(server, base + 2).replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    )
    with connect(server) as s:
        s.sendall(pipelined)
        answers = split_answers(read_all(s))
    assert [status for status, _ in answers] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 401 Unauthorized",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 200 OK",
    ]
    assert b'"duplicate":false' in answers[0][1]
    assert answers[1][1] == b'{"ok":false,"reason":"signature_mismatch"}'
    assert answers[2][1] == b'{"status":"ok"}'
    assert b'"duplicate":false' in answers[3][1]


def test_connections_past_the_cap_are_refused_then_served_again(server: Setup) -> None:
    held = [connect(server) for _ in range(MAX_CONNECTIONS)]
    try:
        with connect(server) as extra:
            answer = read_all(extra)
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
        assert answer.endswith(b'{"ok":false,"reason":"too_many_connections"}')
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)  # let the server see the closes before the next connection
    served_normally(server)


def test_every_edge_closing_was_counted(server: Setup) -> None:
    """Runs after the tests above on the same server (pytest keeps file order)."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=WAIT).text
    counted = {}
    for line in text.splitlines():
        match = re.match(r'avatar_callbacks_connections_closed_total\{reason="(\w+)"\} (\S+)', line)
        if match:
            counted[match.group(1)] = float(match.group(2))
    for reason in ("headers_too_large", "header_timeout", "body_timeout", "too_many_connections"):
        assert counted.get(reason, 0) >= 1, (reason, counted)


def test_sigterm_answers_a_slow_body_and_does_not_wait_for_it(tmp_path: Path) -> None:
    setup = Setup(tmp_path, [ST], KEYS, server={"body_timeout": 60.0}).write()
    proc = ServerProcess(setup).start()
    assert proc.proc is not None
    req = signed_request(ST, KEYS["st"], sample_body(ST, 1))
    try:
        with connect(setup) as slow:
            head = f"POST /cb/st HTTP/1.1\r\nHost: x\r\nContent-Length: {len(req.body)}\r\n\r\n"
            slow.sendall(head.encode() + req.body[:10])
            time.sleep(0.3)  # the request is in the app, waiting for its body
            proc.proc.send_signal(signal.SIGTERM)
            answer = read_all(slow)
            # Far less than uvicorn's 20 s grace period, which the slow client used to hold.
            proc.proc.wait(timeout=10)
    finally:
        proc.kill()
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
    assert answer.endswith(b'{"ok":false,"reason":"shutting_down"}')
    log = proc.output()
    for unwanted in ("Traceback", "CancelledError", '"status":500', "Exception in ASGI"):
        assert unwanted not in log, log[-2000:]
