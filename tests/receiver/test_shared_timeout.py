"""SharedTimeout behaves as asyncio.timeout does, with one timer for every wait."""

from __future__ import annotations

import asyncio

import pytest

from callbacks.shared_timeout import SharedTimeout

SHORT = 0.05


async def _wait_for(timeout: SharedTimeout, event: asyncio.Event) -> str:
    try:
        async with timeout():
            await event.wait()
    except TimeoutError:
        return "timed out"
    return "done"


def test_a_wait_past_its_deadline_raises_timeout_error() -> None:
    async def main() -> str:
        return await _wait_for(SharedTimeout(SHORT), asyncio.Event())

    assert asyncio.run(main()) == "timed out"


def test_waits_that_end_in_time_are_left_alone_and_the_others_time_out() -> None:
    async def main() -> list[str]:
        timeout = SharedTimeout(SHORT)
        events = [asyncio.Event() for _ in range(40)]
        waits = [asyncio.create_task(_wait_for(timeout, e)) for e in events]
        await asyncio.sleep(0)
        for event in events[::2]:
            event.set()
        results = await asyncio.gather(*waits)
        assert timeout.pending == 0
        return results

    assert asyncio.run(main()) == ["done", "timed out"] * 20


def test_waits_started_later_get_their_own_full_time() -> None:
    """The head's timer must not expire a later wait early: each starts its own deadline."""

    async def main() -> list[str]:
        timeout = SharedTimeout(SHORT * 4)
        first_event, second_event = asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(_wait_for(timeout, first_event))
        await asyncio.sleep(SHORT * 3)
        second = asyncio.create_task(_wait_for(timeout, second_event))
        await asyncio.sleep(SHORT * 2)  # past the first's deadline, well before the second's
        assert first.done()
        assert not second.done()
        second_event.set()
        return [await first, await second]

    assert asyncio.run(main()) == ["timed out", "done"]


def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    async def main() -> None:
        task = asyncio.create_task(_wait_for(SharedTimeout(60), asyncio.Event()))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_cancellation_arriving_with_the_timeout_is_not_swallowed() -> None:
    async def main() -> None:
        timeout = SharedTimeout(SHORT)

        async def waiting() -> None:
            async with timeout():
                try:
                    await asyncio.Event().wait()
                finally:
                    asyncio.current_task().cancel()  # type: ignore[union-attr]
                    await asyncio.sleep(0)

        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(waiting())

    asyncio.run(main())


def test_an_exception_inside_the_block_passes_through() -> None:
    async def main() -> None:
        async with SharedTimeout(60)():
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        asyncio.run(main())


def test_ended_waits_do_not_pile_up() -> None:
    async def main() -> int:
        timeout = SharedTimeout(60)
        for _ in range(10_000):
            async with timeout():
                await asyncio.sleep(0)
        return timeout.pending

    assert asyncio.run(main()) <= 1
