"""One send per answer: a response's head leaves together with its body.

uvicorn writes a response's head (status line and headers) when the app sends
``http.response.start`` and its body when the app sends ``http.response.body``: two ``send``
system calls and two TCP segments for every answer, which here are a few dozen bytes each. A
send on loopback costs ~6 µs of CPU (the kernel delivers the segment to the reader within the
call), more than verifying a SenseTime signature, and a forged flood is answered with nothing
but such small responses.

:class:`PairedWritesTransport` wraps a connection's transport and holds each write until the
next write on that connection or the end of the event loop's current iteration, whichever
comes first, so a head and the body sent right after it go out in one call. Nothing waits
past the iteration that wrote it: a streamed response's head leaves at the end of that
iteration when its body is not ready.
"""

from __future__ import annotations

import asyncio
from typing import Any


class PairedWritesTransport(asyncio.Transport):
    """``transport`` with each write held until the next write or the loop's next turn."""

    __slots__ = ("_flush_pending", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_pending = False

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is None:
            # Held by value: the caller may reuse a mutable buffer once write returns.
            self._held = data if isinstance(data, bytes) else bytes(data)
            if not self._flush_pending:
                self._flush_pending = True
                self._loop.call_soon(self._flush)
            return
        self._held = None
        self._transport.writelines((held, data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def _write_held(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def _flush(self) -> None:
        self._flush_pending = False
        self._write_held()

    def write_eof(self) -> None:
        self._write_held()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        held = 0 if self._held is None else len(self._held)
        return self._transport.get_write_buffer_size() + held

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        self._write_held()  # an answer written just before the close is still sent
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
