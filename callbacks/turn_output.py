"""What one turn of the event loop writes, written at the turn's end: log lines, then answers.

A group commit resumes all of its callbacks in one turn of the loop, and each writes a log line
and then its answer. Written as they come, that is a ``write`` to the log and a ``send`` per
callback, interleaved; live, the log's writes alone (appends to a file on the disk whose fsyncs
the inbox waits for) took 13-25 µs of the loop a callback. Held to the end of the turn, the
turn's lines leave in one write, then each connection's answers in one send, back to back:
194 → 160 µs of CPU an accepted callback, and a forged flood's 401s 70 → 53 µs a request
(bench/README.md, "What was tried").

The order is the point: every line held in a turn is written before any answer held in that turn
is sent (and lines are never held past their turn, while an answer written in a later turn comes
later still). So a callback answered 200 has its line in the log even if the process is killed
the moment after, as Redis writes its append-only file before it replies to anyone (its
``beforeSleep``).

The turn ends in a callback that the first thing held schedules with ``call_soon``: it runs at
the start of the loop's next iteration, after that iteration's poll (which does not block, as
something is ready). Only the thread running a loop holds anything, and only once its
:func:`turn_output` is made (the server's protocol asks for it as each connection opens);
elsewhere, lines are written at once.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from typing import Protocol

MAX_HELD_LINES = 1024
"""A turn that logs more than this writes its lines early (still before its answers)."""


class LineWriter(Protocol):
    """Where lines go when a turn ends (:class:`callbacks.logs.LineSink`)."""

    def write_lines(self, data: bytes) -> None: ...


class HeldWrites(Protocol):
    """A connection whose writes wait for the turn's end
    (:class:`callbacks.paired_writes.PairedWritesTransport`)."""

    def write_held(self) -> None: ...


class TurnOutput:
    """The lines and the connections' writes held in the current turn of ``loop``."""

    __slots__ = ("__weakref__", "_lines", "_scheduled", "_writes", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lines: dict[LineWriter, list[bytes]] = {}
        self._writes: list[HeldWrites] = []
        self._scheduled = False

    def hold_line(self, writer: LineWriter, line: bytes) -> None:
        """``line`` goes to ``writer`` at the end of this turn, before any held answer."""
        lines = self._lines.get(writer)
        if lines is None:
            self._lines[writer] = [line]
            self._schedule()
            return
        lines.append(line)
        if len(lines) >= MAX_HELD_LINES:
            self.write_lines()

    def hold_writes(self, connection: HeldWrites) -> None:
        """``connection.write_held()`` runs at the end of this turn, after the held lines."""
        self._writes.append(connection)
        self._schedule()

    def write_lines(self) -> None:
        """Write the held lines now (a connection about to send early calls this first)."""
        if self._lines:
            held, self._lines = self._lines, {}
            for writer, lines in held.items():
                writer.write_lines(b"".join(lines))

    def end_turn(self) -> None:
        self._scheduled = False
        self.write_lines()
        writes, self._writes = self._writes, []
        failure: Exception | None = None
        for connection in writes:
            try:
                connection.write_held()
            except Exception as exc:  # one connection's bug must not strand the others' answers
                failure = failure or exc
        if failure is not None:
            raise failure  # to the loop's exception handler, once the rest are sent

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self.end_turn)


class _ThisThread(threading.local):
    output: TurnOutput | None = None


_this_thread = _ThisThread()
_every_output: weakref.WeakSet[TurnOutput] = weakref.WeakSet()


def turn_output(loop: asyncio.AbstractEventLoop) -> TurnOutput:
    """``loop``'s output, made on first use; call it from the thread that runs ``loop``."""
    output = _this_thread.output
    if output is not None and output.loop is loop:
        return output
    if output is not None:  # the thread's earlier loop has stopped: what it held goes now
        output.write_lines()
    output = _this_thread.output = TurnOutput(loop)
    _every_output.add(output)
    return output


def current_turn() -> TurnOutput | None:
    """The output of the loop running in this thread, if it has one; else None (write now)."""
    output = _this_thread.output
    if output is None:
        return None
    if output.loop.is_running():
        return output
    output.write_lines()  # held when the loop stopped before its turn ended: they come first
    return None


@atexit.register
def write_every_held_line() -> None:
    """Lines held when a loop stopped before its turn ended (at exit, and for tests)."""
    for output in list(_every_output):
        output.write_lines()
