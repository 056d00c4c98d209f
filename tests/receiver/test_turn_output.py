"""A turn's output: its log lines in one write at its end, before any answer of that turn;
nothing held past its turn; lines written at once where no loop answers connections."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, BinaryIO, cast

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.server import ServerState

from callbacks import metrics, turn_output
from callbacks.http_guard import GuardedHttpToolsProtocol
from callbacks.logs import LineSink, configure_logging
from callbacks.paired_writes import PairedWritesTransport
from callbacks.turn_output import MAX_HELD_LINES, current_turn, write_every_held_line
from tests.receiver.test_logs import FullDisk
from tests.receiver.test_paired_writes import RecordingTransport

Record = list[tuple[str, bytes]]


class RecordingRaw(io.RawIOBase):
    """A log file that records each write it gets into a record shared with the connections."""

    def __init__(self, record: Record) -> None:
        self.record = record

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.record.append(("log", bytes(data)))
        return len(data)


class Connection(RecordingTransport):
    """A connection whose sends go into the same record as the log's writes."""

    def __init__(self, record: Record) -> None:
        super().__init__()
        self.record = record

    def write(self, data: Any) -> None:
        super().write(data)
        self.record.append(("send", bytes(data)))

    def writelines(self, list_of_data: Any) -> None:
        super().writelines(list_of_data)
        self.record.append(("send", self.sends[-1]))


def sink_for(record: Record) -> LineSink:
    return LineSink(cast(BinaryIO, io.BufferedWriter(RecordingRaw(record))))


def run(body: Callable[[Record, LineSink], Awaitable[None]]) -> Record:
    record: Record = []

    async def main() -> None:
        await body(record, sink_for(record))

    asyncio.run(main())
    return record


def connection(record: Record) -> tuple[PairedWritesTransport, Connection]:
    inner = Connection(record)
    output = turn_output.turn_output(asyncio.get_running_loop())
    return PairedWritesTransport(inner, output), inner


def test_a_turns_lines_leave_in_one_write_before_any_of_its_answers() -> None:
    async def body(record: Record, sink: LineSink) -> None:
        first, _ = connection(record)
        second, _ = connection(record)
        sink.emit(b"line 1\n")
        first.write(b"answer 1")
        sink.emit(b"line 2\n")
        second.write(b"answer 2")
        assert record == []  # all of it waits for the turn's end
        await asyncio.sleep(0)
        assert record == [
            ("log", b"line 1\nline 2\n"),
            ("send", b"answer 1"),
            ("send", b"answer 2"),
        ]
        sink.emit(b"line 3\n")  # the next turn's line leaves at the next turn's end
        await asyncio.sleep(0)
        assert record[-1] == ("log", b"line 3\n")

    run(body)


def test_a_close_or_eof_mid_turn_writes_the_turns_lines_before_the_answer() -> None:
    async def body(record: Record, sink: LineSink) -> None:
        closed, _ = connection(record)
        ended, _ = connection(record)
        sink.emit(b"closed's line\n")
        closed.write(b"closed's answer")
        closed.close()
        sink.emit(b"ended's line\n")
        ended.write(b"ended's answer")
        ended.write_eof()
        assert record == [
            ("log", b"closed's line\n"),
            ("send", b"closed's answer"),
            ("log", b"ended's line\n"),
            ("send", b"ended's answer"),
        ]
        await asyncio.sleep(0)  # the turn's end finds nothing left to write
        assert len(record) == 4

    run(body)


def test_an_aborted_connection_sends_nothing_and_the_lines_still_leave() -> None:
    async def body(record: Record, sink: LineSink) -> None:
        aborted, inner = connection(record)
        sink.emit(b"line\n")
        aborted.write(b"never sent")
        aborted.abort()
        await asyncio.sleep(0)
        assert record == [("log", b"line\n")]
        assert inner.calls == ["abort"]

    run(body)


class Broken:
    def write_held(self) -> None:
        raise RuntimeError("a bug in one connection")


def test_one_connection_failing_at_the_turns_end_strands_no_other_answer() -> None:
    async def body(record: Record, sink: LineSink) -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _, context: reported.append(context))
        before, _ = connection(record)
        after, _ = connection(record)
        before.write(b"first")
        turn_output.turn_output(loop).hold_writes(Broken())
        after.write(b"second")
        await asyncio.sleep(0)
        assert record == [("send", b"first"), ("send", b"second")]
        (context,) = reported
        assert str(context["exception"]) == "a bug in one connection"

    run(body)


def test_a_turn_with_very_many_lines_writes_them_early_still_before_its_answers() -> None:
    async def body(record: Record, sink: LineSink) -> None:
        paired, _ = connection(record)
        paired.write(b"answer")
        for n in range(MAX_HELD_LINES + 1):
            sink.emit(b"%d\n" % n)
        assert record == [("log", b"".join(b"%d\n" % n for n in range(MAX_HELD_LINES)))]
        await asyncio.sleep(0)
        assert record[1:] == [("log", b"%d\n" % MAX_HELD_LINES), ("send", b"answer")]

    run(body)


def test_lines_are_written_at_once_where_no_loop_answers_connections() -> None:
    record: Record = []
    sink = sink_for(record)
    sink.emit(b"no loop\n")  # the CLI, or a thread of the dispatcher's
    assert record == [("log", b"no loop\n")]

    async def elsewhere() -> None:
        connection(record)  # this loop's thread holds its lines ...
        sink.emit(b"held\n")

        def from_a_thread() -> None:
            assert current_turn() is None
            sink.emit(b"a thread's\n")  # ... another thread's are written at once

        thread = threading.Thread(target=from_a_thread)
        thread.start()
        thread.join()
        assert record[-1] == ("log", b"a thread's\n")
        await asyncio.sleep(0)
        assert record[-1] == ("log", b"held\n")

    asyncio.run(elsewhere())


def stop_mid_turn(sink: LineSink, line: bytes) -> None:
    """Run a loop for one batch of callbacks that holds ``line`` and stops the loop (the turn's
    end, scheduled for the next batch, never runs), then close it."""
    loop = asyncio.new_event_loop()

    def hold_and_stop() -> None:
        sink.emit(line)
        loop.stop()

    try:
        turn_output.turn_output(loop)
        loop.call_soon(hold_and_stop)
        loop.run_forever()
    finally:
        loop.close()


def test_lines_held_when_a_loop_stopped_leave_before_anything_written_later() -> None:
    record: Record = []
    sink = sink_for(record)
    stop_mid_turn(sink, b"held when the loop stopped\n")
    assert record == []
    sink.emit(b"after\n")
    assert record == [("log", b"held when the loop stopped\n"), ("log", b"after\n")]


def test_lines_still_held_at_exit_are_written() -> None:
    record: Record = []
    sink = sink_for(record)
    stop_mid_turn(sink, b"last words\n")
    write_every_held_line()  # what the interpreter runs at exit
    assert record == [("log", b"last words\n")]


def test_a_turns_lines_that_cannot_be_written_are_each_counted_as_dropped() -> None:
    sink = LineSink(cast(BinaryIO, io.BufferedWriter(FullDisk(), buffer_size=1)))
    dropped = metrics.LOG_LINES_DROPPED._value.get()

    async def body() -> None:
        turn_output.turn_output(asyncio.get_running_loop())
        for n in range(3):
            sink.emit(b"%d\n" % n)
        await asyncio.sleep(0)  # the write fails at the turn's end, and raises nothing

    asyncio.run(body())
    assert metrics.LOG_LINES_DROPPED._value.get() == dropped + 3


# A script over two connections: a log line, an answer's bytes on connection 0 or 1, a close of
# one, or (None) a turn of the loop.
steps = st.one_of(
    st.none(),
    st.tuples(st.just("line"), st.binary(min_size=1, max_size=20)),
    st.tuples(st.sampled_from(["send0", "send1"]), st.binary(min_size=1, max_size=20)),
    st.tuples(st.sampled_from(["close0", "close1"]), st.just(b"")),
)


@given(st.lists(steps, max_size=40))
def test_every_line_leaves_before_any_answer_written_after_it_and_nothing_waits_a_turn(
    script: list[tuple[str, bytes] | None],
) -> None:
    async def body(record: Record, sink: LineSink) -> None:
        conns = [connection(record), connection(record)]
        lines = b""
        sent: list[bytes] = [b"", b""]
        # For each answer chunk: how many bytes of log lines were emitted before it.
        chunks: list[tuple[bytes, int]] = []
        for n, step in enumerate(script):
            if step is None:
                await asyncio.sleep(0)
                assert b"".join(d for kind, d in record if kind == "log") == lines
                for i, (_, inner) in enumerate(conns):
                    assert b"".join(inner.sends) == sent[i]
                continue
            kind, data = step
            if kind == "line":
                lines += data.replace(b"\n", b" ") + b"\n"
                sink.emit(data.replace(b"\n", b" ") + b"\n")
                continue
            i = int(kind[-1])
            paired, inner = conns[i]
            if kind.startswith("close"):
                paired.close()
                continue
            if paired.is_closing():
                continue
            chunk = b"<%d:%s>" % (n, data)  # unique, so the send that carried it is found
            paired.write(chunk)
            sent[i] += chunk
            chunks.append((chunk, len(lines)))
        await asyncio.sleep(0)
        logged = 0
        sends_after: list[tuple[bytes, int]] = []
        for kind, data in record:
            if kind == "log":
                logged += len(data)
            else:
                sends_after.append((data, logged))
        for chunk, lines_before in chunks:
            carried_at = next(at for data, at in sends_after if chunk in data)
            assert carried_at >= lines_before, "an answer left before a line emitted earlier"

    run(body)


@pytest.fixture
def logging_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stdout = sys.stdout
    yield
    sys.stdout = stdout
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


async def logging_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    structlog.get_logger("test").info("callback", n=1)
    logging.getLogger("test.stdlib").warning("from the stdlib side")
    headers = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.usefixtures("logging_restored")
def test_the_servers_protocol_writes_the_log_lines_before_the_answer() -> None:
    """The receiver's logging set-up (structlog and stdlib lines through one sink) and the
    server's protocol: a request's lines reach the log before its answer is sent."""
    record: Record = []
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(RecordingRaw(record)))
    configure_logging("json")

    async def main() -> None:
        config = Config(
            logging_app,
            http=GuardedHttpToolsProtocol,
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
        )
        config.load()
        loop = asyncio.get_running_loop()
        protocol = GuardedHttpToolsProtocol(
            config=config, server_state=ServerState(), app_state={}, _loop=loop
        )
        inner = Connection(record)
        protocol.connection_made(inner)
        protocol.data_received(b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{}")
        for _ in range(20):
            await asyncio.sleep(0)
            if inner.sends:
                break
        protocol.connection_lost(None)

    asyncio.run(main())
    kinds = [kind for kind, _ in record]
    assert kinds == ["log", "send"], record
    lines = record[0][1].splitlines()
    assert b'"event":"callback"' in lines[0]
    assert b"from the stdlib side" in lines[1]
    assert record[1][1].startswith(b"HTTP/1.1 200 OK\r\n")
