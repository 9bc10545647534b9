"""The pile link's write-behind (pile_link/write_behind.py): a failed batch is written later, in order, or dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


def test_a_batch_whose_write_fails_stays_queued_and_is_written_by_the_next_flush() -> None:
    """A write-behind batch whose transaction fails (a lock timeout under load) is not lost: it is
    written, in order, by the next flush; one that keeps failing is dropped after a bounded number
    of attempts (logged, counted), so it never holds back what is queued behind it for ever."""
    from collections import Counter

    from pile_link.write_behind import MAX_WRITE_ATTEMPTS, WriteBehind

    class Pool:
        stats: Counter[str] = Counter()

        async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
            return fn(*args)

    written: list[int] = []
    failures = [OSError("lock timeout")]

    def write(batch: list[int]) -> list[Exception | None]:
        if failures:
            raise failures.pop()
        written.extend(batch)
        return [None] * len(batch)

    def always_fails(batch: list[int]) -> list[Exception | None]:
        raise OSError("down")

    async def scenario() -> None:
        behind = WriteBehind(Pool(), "things", write)  # type: ignore[arg-type]
        behind.add(1)
        behind.add(2)
        try:
            await behind.flush()
        except OSError:
            pass
        behind.add(3)
        await behind.flush()
        assert written == [1, 2, 3]
        stuck = WriteBehind(Pool(), "stuck", always_fails)  # type: ignore[arg-type]
        stuck.add(1)
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                await stuck.flush()
            except OSError:
                pass
        assert stuck.pending == [] and Pool.stats["stuck_dropped"] == 1

    asyncio.run(scenario())
