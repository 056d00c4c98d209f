"""One handler call, isolated: bounded by a timeout, every error caught, never raising.

An async handler past its timeout is cancelled (and not waited for: one that swallows the
cancellation cannot hold up its event). A sync handler runs in :class:`HandlerThreads`, whose
module says what happens to a thread past its timeout.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from callbacks.dispatch.threads import HandlerThreads, HandlerTimeout, NoFreeThread
from callbacks.errors import PermanentError

ERROR_TEXT_LIMIT = 300


@dataclass(frozen=True)
class CallResult:
    """``reason``: None (ok), ``error``, ``timeout``, ``permanent`` or ``no_free_thread``."""

    reason: str | None = None
    error: str | None = None
    error_type: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


OK = CallResult()


async def call_isolated(
    func: Callable[[Any], Awaitable[None] | None],
    arg: Any,
    *,
    timeout: float,
    threads: HandlerThreads,
    name: str,
) -> CallResult:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        if is_async(func):
            await _within(func(arg), timeout)  # type: ignore[arg-type]
        else:
            result = await threads.run(func, arg, timeout=timeout, name=name)
            if inspect.isawaitable(result):
                await _within(result, max(deadline - loop.time(), 0.001))
    except HandlerTimeout:
        return CallResult("timeout", f"timeout: no result after {timeout:g} s", "timeout")
    except NoFreeThread as exc:
        return CallResult("no_free_thread", str(exc)[:ERROR_TEXT_LIMIT], "NoFreeThread")
    except Exception as exc:
        reason = "permanent" if isinstance(exc, PermanentError) else "error"
        text = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
        return CallResult(reason, text, type(exc).__name__)
    return OK


async def _within(awaitable: Awaitable[Any], timeout: float) -> Any:
    """Await in a task of its own, cancelled (and let go) past ``timeout``."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((task,), timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_forget)
        raise HandlerTimeout(f"timeout: no result after {timeout:g} s")
    return task.result()


def _forget(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


def is_async(func: object) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - an object with an async __call__
    )
