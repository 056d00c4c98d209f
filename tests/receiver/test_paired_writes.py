"""PairedWritesTransport: a response's head and body in one send, nothing lost or reordered,
nothing held past the loop's turn that wrote it; and the server's protocol uses it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.server import ServerState

from callbacks.http_guard import GuardedHttpToolsProtocol
from callbacks.paired_writes import PairedWritesTransport
from callbacks.turn_output import turn_output


class RecordingTransport(asyncio.Transport):
    """What reached the connection: one entry per send, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False
        self.reading = True
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: Any) -> None:
        assert not self.closing, "written after close"
        self.sends.append(bytes(data))

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        assert not self.closing, "written after close"
        self.sends.append(b"".join(bytes(d) for d in list_of_data))

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.calls.append("close")
        self.closing = True

    def abort(self) -> None:
        self.calls.append("abort")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self.protocol is not None
        return self.protocol


def run(body: Callable[[PairedWritesTransport, RecordingTransport], Awaitable[None]]) -> None:
    async def main() -> None:
        inner = RecordingTransport()
        await body(PairedWritesTransport(inner, turn_output(asyncio.get_running_loop())), inner)

    asyncio.run(main())


def test_a_head_and_the_body_written_in_the_same_turn_leave_in_one_send_at_its_end() -> None:
    async def body(paired: PairedWritesTransport, inner: RecordingTransport) -> None:
        paired.write(b"HTTP/1.1 200 OK\r\n\r\n")
        paired.write(b'{"ok":true}')
        assert inner.sends == []
        assert paired.get_write_buffer_size() == 7 + 19 + 11
        await asyncio.sleep(0)
        assert inner.sends == [b'HTTP/1.1 200 OK\r\n\r\n{"ok":true}']
        await asyncio.sleep(0)
        assert inner.sends == [b'HTTP/1.1 200 OK\r\n\r\n{"ok":true}']

    run(body)


def test_a_lone_write_leaves_at_the_end_of_the_loops_turn() -> None:
    async def body(paired: PairedWritesTransport, inner: RecordingTransport) -> None:
        paired.write(bytearray(b"head"))  # a mutable buffer is copied, not held by reference
        await asyncio.sleep(0)
        assert inner.sends == [b"head"]
        paired.write(b"third")
        assert paired.get_write_buffer_size() == 7 + len(b"third")
        await asyncio.sleep(0)
        assert inner.sends == [b"head", b"third"]

    run(body)


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def body(paired: PairedWritesTransport, inner: RecordingTransport) -> None:
        paired.write(b"last answer")
        paired.close()
        assert inner.sends == [b"last answer"]
        assert inner.calls == ["close"]
        assert paired.is_closing()
        await asyncio.sleep(0)  # the pending flush finds nothing to send on a closed connection
        assert inner.sends == [b"last answer"]

    run(body)

    async def aborted(paired: PairedWritesTransport, inner: RecordingTransport) -> None:
        paired.write(b"never sent")
        paired.abort()
        await asyncio.sleep(0)
        assert inner.sends == []
        assert inner.calls == ["abort"]

    run(aborted)


def test_a_write_held_when_the_connection_closes_underneath_is_dropped() -> None:
    async def body(paired: PairedWritesTransport, inner: RecordingTransport) -> None:
        paired.write(b"held")
        inner.close()  # the peer went away: the real transport is closing
        await asyncio.sleep(0)
        assert inner.sends == []  # RecordingTransport would have raised on a write after close

    run(body)


def test_write_eof_sends_what_is_held_first_and_the_rest_is_the_connections_own() -> None:
    async def body(paired: PairedWritesTransport, inner: RecordingTransport) -> None:
        paired.write(b"tail")
        paired.write_eof()
        assert inner.sends == [b"tail"]
        assert inner.calls == ["write_eof"]
        assert paired.can_write_eof()
        assert paired.get_extra_info("peername") == ("127.0.0.1", 40000)
        assert paired.get_extra_info("socket", "none") == "none"
        paired.pause_reading()
        assert not inner.reading
        assert not paired.is_reading()
        paired.resume_reading()
        assert inner.reading
        protocol = asyncio.Protocol()
        paired.set_protocol(protocol)
        assert paired.get_protocol() is protocol

    run(body)


# A script: each step writes these bytes, or (None) lets the loop turn.
scripts = st.lists(st.one_of(st.none(), st.binary(min_size=0, max_size=40)), max_size=30)


@given(scripts)
def test_any_writes_arrive_whole_in_order_and_none_waits_past_its_turn(
    script: list[bytes | None],
) -> None:
    async def body(paired: PairedWritesTransport, inner: RecordingTransport) -> None:
        written = b""
        turns_with_writes = 0
        wrote_this_turn = False
        for step in script:
            if step is None:
                await asyncio.sleep(0)
                assert b"".join(inner.sends) == written  # nothing held past a loop turn
                turns_with_writes += wrote_this_turn
                wrote_this_turn = False
                continue
            paired.write(step)
            written += step
            wrote_this_turn = True
        await asyncio.sleep(0)
        turns_with_writes += wrote_this_turn
        assert b"".join(inner.sends) == written
        assert len(inner.sends) == turns_with_writes  # one send per turn that wrote

    run(body)


async def answer_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"11")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


def test_the_servers_protocol_answers_a_request_in_one_send() -> None:
    async def main() -> list[bytes]:
        # log_config=None: uvicorn's own logging set-up would outlive the test.
        config = Config(
            answer_app, http=GuardedHttpToolsProtocol, ws="none", lifespan="off", log_config=None
        )
        config.load()
        protocol = GuardedHttpToolsProtocol(
            config=config,
            server_state=ServerState(),
            app_state={},
            _loop=asyncio.get_running_loop(),
        )
        inner = RecordingTransport()
        protocol.connection_made(inner)
        protocol.data_received(
            b"POST /callbacks/x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{}"
        )
        for _ in range(20):  # the app's task runs on the next turns
            await asyncio.sleep(0)
            if inner.sends:
                break
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        return inner.sends

    sends = asyncio.run(main())
    assert len(sends) == 1, sends
    assert sends[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert sends[0].endswith(b'\r\n\r\n{"ok":true}')
