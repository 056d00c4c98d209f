"""One send per answer: a response's head leaves together with its body, after the log lines.

uvicorn writes a response's head (status line and headers) when the app sends
``http.response.start`` and its body when the app sends ``http.response.body``: two ``send``
system calls and two TCP segments for every answer, which here are a few dozen bytes each. A
send on loopback costs ~6 µs of CPU (the kernel delivers the segment to the reader within the
call), more than verifying a SenseTime signature, and a forged flood is answered with nothing
but such small responses.

:class:`PairedWritesTransport` wraps a connection's transport and holds its writes until the
end of the event loop's current turn (:mod:`callbacks.turn_output`), so a head and the body sent
after it go out in one call, after every log line of the turn. Nothing waits past the turn that
wrote it: a streamed response's head leaves at the end of that turn when its body is not ready.
"""

from __future__ import annotations

import asyncio
from typing import Any

from callbacks.turn_output import TurnOutput


class PairedWritesTransport(asyncio.Transport):
    """``transport`` with its writes held until the end of the loop's turn."""

    __slots__ = ("_held", "_output", "_transport")

    def __init__(self, transport: asyncio.Transport, output: TurnOutput) -> None:
        super().__init__()
        self._transport = transport
        self._output = output
        self._held: list[bytes] | None = None

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        # Held by value: the caller may reuse a mutable buffer once write returns.
        data = data if isinstance(data, bytes) else bytes(data)
        held = self._held
        if held is None:
            self._held = [data]
            self._output.hold_writes(self)
        else:
            held.append(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_held(self) -> None:
        """Send what this turn wrote, in one call (the turn's end calls this)."""
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                if len(held) == 1:
                    self._transport.write(held[0])
                else:
                    self._transport.writelines(held)

    def _send_now(self) -> None:
        """Before a close or an EOF: what is held goes now, the turn's log lines first."""
        if self._held is not None:
            self._output.write_lines()
            self.write_held()

    def write_eof(self) -> None:
        self._send_now()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        held = 0 if self._held is None else sum(map(len, self._held))
        return self._transport.get_write_buffer_size() + held

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        self._send_now()  # an answer written just before the close is still sent
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    # -- the rest is the connection's own --------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()
