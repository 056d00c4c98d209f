"""A bounded pool of threads for sync handlers, whose calls can be given up on.

Python cannot stop a thread. A sync handler past its timeout is therefore *abandoned*: its
attempt fails at once, while its thread runs the function to its end, keeps its place in the
pool until then, and its late result is dropped (a log line says it returned). The pool is
bounded, so hung handlers can hold at most ``size`` threads; a call that finds none free within
its timeout fails with :class:`NoFreeThread` instead of queueing behind them. The threads are
daemons, so a handler that never returns does not keep the process from exiting.

The pool is the dispatcher's own: sync handlers never take the event loop's default executor,
which the store uses for its reads.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any

import structlog

from callbacks.errors import CallbacksError

log = structlog.get_logger("avatar_callbacks.dispatch")


class HandlerTimeout(CallbacksError):
    """A handler call ran past its timeout (its attempt fails with reason ``timeout``)."""


class NoFreeThread(CallbacksError):
    """Every handler thread is held (by calls past their timeout) for longer than a timeout."""


class _Call:
    __slots__ = ("abandoned", "arg", "func", "future", "loop", "name")

    def __init__(
        self,
        func: Callable[[Any], Any],
        arg: Any,
        name: str,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.func = func
        self.arg = arg
        self.name = name
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.abandoned = False


class HandlerThreads:
    def __init__(self, size: int, *, name: str = "avatar-callbacks-handler") -> None:
        self.size = size
        self._name = name
        self._free = asyncio.Semaphore(size)
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._held = 0  # calls handed to a thread and not yet returned
        self.abandoned = 0  # of which given up on: past their timeout, still running

    async def run(self, func: Callable[[Any], Any], arg: Any, *, timeout: float, name: str) -> Any:
        """``func(arg)`` in a pool thread; its result, or its exception. Raises
        :class:`HandlerTimeout` past ``timeout`` (the thread is abandoned, see the module)."""
        try:
            async with asyncio.timeout(timeout):
                await self._free.acquire()
        except TimeoutError:
            raise NoFreeThread(
                f"no free handler thread in {timeout:g} s: all {self.size} are held by "
                f"handlers past their timeout ({self.abandoned} abandoned)"
            ) from None
        call = _Call(func, arg, name, asyncio.get_running_loop())
        self._held += 1
        if self._held > len(self._threads):  # every thread is busy: the permit pays for one more
            self._start_thread()
        self._queue.put(call)
        try:
            done, _ = await asyncio.wait((call.future,), timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(call)
            raise
        if not done:
            self._abandon(call)
            raise HandlerTimeout(f"timeout: no result after {timeout:g} s")
        return call.future.result()

    def close(self) -> None:
        """Let idle threads end; threads still in a handler end with it (or with the process)."""
        for _ in self._threads:
            self._queue.put(None)
        self._threads.clear()

    def _abandon(self, call: _Call) -> None:
        call.abandoned = True
        self.abandoned += 1

    def _start_thread(self) -> None:
        thread = threading.Thread(
            target=_work,
            args=(self._queue, self._returned),
            name=f"{self._name}-{len(self._threads)}",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def _returned(self, call: _Call, result: Any, error: BaseException | None) -> None:
        """On the loop: the thread is free again."""
        self._held -= 1
        self._free.release()
        if call.abandoned:
            self.abandoned -= 1
            log.warning("handler_returned_after_timeout", handler=call.name, failed=bool(error))
            return
        if call.future.done():
            return
        if error is None:
            call.future.set_result(result)
        else:
            call.future.set_exception(error)


def _work(
    calls: queue.SimpleQueue[_Call | None],
    returned: Callable[[_Call, Any, BaseException | None], None],
) -> None:
    while (call := calls.get()) is not None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = call.func(call.arg)
        except Exception as exc:
            error = exc
        except BaseException as exc:  # SystemExit in a handler must not end the dispatcher
            error = RuntimeError(f"{type(exc).__name__} raised in a handler")
        try:
            call.loop.call_soon_threadsafe(returned, call, result, error)
        except RuntimeError:  # the loop is closed: nobody waits for this call any more
            return
        del call, result, error
