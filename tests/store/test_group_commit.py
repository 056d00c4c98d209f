"""The group commit leaves out what nobody waits for any more, so waits do not stack."""

from __future__ import annotations

import asyncio
import contextlib

from callbacks.store.group_commit import GroupCommit


def test_an_item_whose_caller_gave_up_is_not_written() -> None:
    written: list[list[str]] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def write_batch(items: list[str]) -> list[str]:
            written.append(items)
            await gate.wait()  # a lock held elsewhere
            return [f"ok:{item}" for item in items]

        commits: GroupCommit[str, str] = GroupCommit(write_batch, max_batch=10, name="t")
        first = asyncio.create_task(commits.submit("first"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gave_up = asyncio.create_task(commits.submit("gave-up"))
        kept = asyncio.create_task(commits.submit("kept"))
        await asyncio.sleep(0)
        gave_up.cancel()  # its request was answered 503 while the first batch waited
        with contextlib.suppress(asyncio.CancelledError):
            await gave_up
        gate.set()
        assert await first == "ok:first"
        assert await kept == "ok:kept"
        await commits.drain()

    asyncio.run(main())
    assert written == [["first"], ["kept"]]


def _recording() -> tuple[list[list[str]], GroupCommit[str, str], asyncio.Event]:
    written: list[list[str]] = []
    gate = asyncio.Event()
    gate.set()

    async def write_batch(items: list[str]) -> list[str]:
        written.append(items)
        await gate.wait()
        return [f"ok:{item}" for item in items]

    return written, GroupCommit(write_batch, max_batch=10, name="t"), gate


def test_a_lingering_item_rides_in_the_next_batch_of_urgent_ones() -> None:
    """The dispatcher's outcome and the next callback share one commit (one fsync, not two)."""

    async def main() -> list[list[str]]:
        written, commits, _ = _recording()
        outcome = asyncio.create_task(commits.submit("outcome", linger=3600))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert written == []  # alone, it starts no batch
        assert await commits.submit("callback") == "ok:callback"
        assert await outcome == "ok:outcome"
        return written

    assert asyncio.run(main()) == [["outcome", "callback"]]


def test_a_lingering_item_submitted_during_a_commit_waits_for_the_next_urgent_one() -> None:
    async def main() -> list[list[str]]:
        written, commits, gate = _recording()
        gate.clear()
        first = asyncio.create_task(commits.submit("callback-1"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        outcome = asyncio.create_task(commits.submit("outcome-1", linger=3600))
        await asyncio.sleep(0)
        gate.set()
        await first
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert written == [["callback-1"]]  # the outcome did not get a commit of its own
        await commits.submit("callback-2")
        await outcome
        return written

    assert asyncio.run(main()) == [["callback-1"], ["outcome-1", "callback-2"]]


def test_a_lingering_item_alone_is_written_when_its_time_is_up() -> None:
    async def main() -> list[list[str]]:
        written, commits, _ = _recording()
        assert await commits.submit("outcome", linger=0.001) == "ok:outcome"
        return written

    assert asyncio.run(main()) == [["outcome"]]


def test_drain_writes_lingering_items_at_once() -> None:
    async def main() -> list[list[str]]:
        written, commits, _ = _recording()
        outcome = asyncio.create_task(commits.submit("outcome", linger=3600))
        await asyncio.sleep(0)
        await commits.drain()
        assert outcome.done()
        return written

    assert asyncio.run(main()) == [["outcome"]]
