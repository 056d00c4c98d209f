"""Concurrent writes share transactions: the heart of both stores' write path."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """``submit`` queues an item and waits for its result. One flusher task hands everything
    waiting to ``write_batch`` (one transaction, one commit) and, as soon as that returns, the
    next batch: items that arrive while a commit runs share the next one, and a lone item is
    written at once. ``write_batch`` returns one result or exception per item; if it raises,
    every item of the batch gets that exception. An item whose caller stopped waiting (cancelled)
    before its batch started is left out of it.

    ``submit(item, linger=s)`` is for writes nobody answers a request on (the dispatcher's
    outcomes): the item rides in the next batch that starts anyway, or starts one itself after
    ``s`` seconds. Otherwise an idle store would commit it on its own, and the next callback's
    commit would queue behind that one: two fsyncs before a lone callback's answer instead of one.
    """

    def __init__(
        self,
        write_batch: Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]],
        *,
        max_batch: int,
        name: str,
    ) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._name = name
        self._waiting: list[tuple[Item, asyncio.Future[Result], bool]] = []
        self._urgent = 0  # waiting items that did not ask to linger
        self._lingering: asyncio.TimerHandle | None = None
        self._overdue = False  # a lingering item waited its time: flush whatever waits
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: Item, *, linger: float = 0.0) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future, not linger))
        if not linger:
            self._urgent += 1
            self._start()
        elif self._lingering is None:
            self._lingering = loop.call_later(linger, self._linger_over)
        return await future

    def _linger_over(self) -> None:
        self._lingering = None
        self._overdue = True
        self._start()

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        if self._waiting:
            self._overdue = True
            self._start()
        if self._flusher is not None:
            await self._flusher

    async def _flush(self) -> None:
        # Lingering items alone start no batch: they wait for an urgent one or for their time.
        while self._waiting and (self._urgent or self._overdue):
            taken = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            self._urgent -= sum(urgent for _, _, urgent in taken)
            if not self._waiting:
                self._overdue = False
                if self._lingering is not None:
                    self._lingering.cancel()
                    self._lingering = None
            # Nobody waits for an item whose caller gave up (its write timed out and it was
            # answered 503): writing it would only make the next batch wait longer.
            batch = [(item, future) for item, future, _ in taken if not future.done()]
            if not batch:
                continue
            results: Sequence[Result | BaseException]
            try:
                results = await self._write_batch([item for item, _ in batch])
            except Exception as exc:
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the request went away; what was written stays written
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
