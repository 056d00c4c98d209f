"""One timeout for many concurrent waits of the same length, enforced by one loop timer.

``asyncio.timeout`` schedules a timer when a wait starts and cancels it when the wait ends:
with its own bookkeeping, about 6 µs of every accepted callback's loop time (py-spy, live under
wrk), for a timer that almost never fires. Every write the intake bounds waits the same number
of seconds, so the deadlines fall due in the order the waits began: a queue whose head alone
needs a timer. The timer fires about once per timeout, not twice per request.

What a wait sees is what ``asyncio.timeout`` gives: past its deadline its task is cancelled and
the ``async with`` raises :class:`TimeoutError`; a cancellation from elsewhere stays a
cancellation.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType

_WAITING, _EXPIRED, _DONE = 0, 1, 2


class SharedTimeout:
    """``async with timeout():`` bounds the block to ``seconds``, like ``asyncio.timeout``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._waits: deque[_Wait] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self) -> _Wait:
        return _Wait(self)

    @property
    def pending(self) -> int:
        """Waits still queued: ended ones leave as the queue's head moves past them."""
        return len(self._waits)

    def _add(self, wait: _Wait, loop: asyncio.AbstractEventLoop) -> None:
        waits = self._waits
        while waits and waits[0].state == _DONE:  # keeps the queue as long as what runs
            waits.popleft()
        waits.append(wait)
        if self._timer is None:  # else it is set for an earlier deadline, the head's
            self._timer = loop.call_at(waits[0].deadline, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        waits, now = self._waits, loop.time()
        while waits:
            head = waits[0]
            if head.state == _WAITING and head.deadline > now:
                self._timer = loop.call_at(head.deadline, self._expire, loop)
                return
            waits.popleft()
            if head.state == _WAITING:
                head.state = _EXPIRED
                head.task.cancel()


class _Wait:
    __slots__ = ("cancelling", "deadline", "owner", "state", "task")

    def __init__(self, owner: SharedTimeout) -> None:
        self.owner = owner
        self.state = _WAITING

    async def __aenter__(self) -> None:
        # One look-up of the loop: in Python 3.11 each one is a getpid() system call.
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("SharedTimeout should be used inside a task")
        self.task = task
        self.cancelling = task.cancelling()
        self.deadline = loop.time() + self.owner.seconds
        self.owner._add(self, loop)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        expired = self.state == _EXPIRED
        self.state = _DONE
        if not expired:
            return
        # Ours was one of the task's cancellations: withdrawn, it is a timeout unless another
        # one is still pending (then the task is being cancelled, and stays so).
        if self.task.uncancel() <= self.cancelling and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
