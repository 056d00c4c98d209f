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
