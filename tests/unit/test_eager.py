"""pile_link/eager.py: a coroutine run at once, a task only once it has to wait, and a task like any other then."""

from __future__ import annotations

import asyncio

import pytest

from pile_link.eager import start_eagerly


def test_a_coroutine_that_never_waits_runs_at_once_with_no_task() -> None:
    ran: list[str] = []

    async def answer() -> None:
        ran.append("answered")

    async def scenario() -> None:
        before = len(asyncio.all_tasks())
        assert start_eagerly(answer()) is None
        assert ran == ["answered"] and len(asyncio.all_tasks()) == before

    asyncio.run(scenario())


def test_what_a_coroutine_raises_before_it_waits_is_raised_to_the_caller() -> None:
    async def broken() -> None:
        raise ValueError("bad frame")

    async def scenario() -> None:
        with pytest.raises(ValueError, match="bad frame"):
            start_eagerly(broken())

    asyncio.run(scenario())


def test_a_coroutine_that_waits_runs_its_first_part_at_once_and_the_rest_as_a_task() -> None:
    steps: list[str] = []

    async def handler(loop: asyncio.AbstractEventLoop) -> int:
        steps.append("read")
        value = await loop.run_in_executor(None, lambda: 20)
        steps.append("ledger answered")
        await asyncio.sleep(0)  # a bare yield too
        failed = loop.create_future()
        loop.call_soon(failed.set_exception, KeyError("gone"))
        try:
            await failed
        except KeyError:
            steps.append("failure seen where it was awaited")
        return value + 1

    async def scenario() -> None:
        task = start_eagerly(handler(asyncio.get_running_loop()))
        assert steps == ["read"] and task is not None
        assert await task == 21
        assert steps == ["read", "ledger answered", "failure seen where it was awaited"]

    asyncio.run(scenario())


def test_cancelling_the_task_cancels_what_the_coroutine_waits_on_and_reaches_it_there() -> None:
    seen: list[str] = []

    async def handler(waited: asyncio.Future[None]) -> None:
        try:
            await waited
        except asyncio.CancelledError:
            seen.append("cancelled while waiting")
            raise

    async def scenario() -> None:
        waited: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = start_eagerly(handler(waited))
        assert task is not None
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waited.cancelled() and seen == ["cancelled while waiting"]

    asyncio.run(scenario())
