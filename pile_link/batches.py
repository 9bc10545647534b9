"""Reads by pile number, coalesced: what logins ask while one batch is read is the next batch.

A login needs one or two facts of its pile (its shard, its login facts, what it is owed); reading them
one pile at a time is a query per login, and a reconnect storm is thousands of logins in seconds. So each
asker awaits a future; one reader loop takes every pile asked so far (at most ``limit``), reads them with
one call, answers each future, and goes on while more were asked meanwhile. Used by
``pile_facts.LoginFacts``, ``owed_reads.OwedReads`` and ``shards.PileShards``, each with its own read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

V = TypeVar("V")
Read = Callable[[list[str]], Awaitable[Mapping[str, Any]]]


class Batches(Generic[V]):
    """``await ask(pile_no)``: the value ``read`` gave for the pile in its batch (None if it gave none), or the
    exception it gave for it; a ``read`` that raises fails every pile of its batch (each asker tries again,
    as its own read would have)."""

    def __init__(self, read: Read, limit: int, on_batch: Callable[[float], None] | None = None) -> None:
        self.read, self.limit, self.on_batch = read, limit, on_batch
        self.asked: dict[str, asyncio.Future[V]] = {}  # the next batch
        self.reading: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return self.reading is None and not self.asked

    async def ask(self, pile_no: str) -> V:
        asked = self.asked.get(pile_no)
        if asked is None:
            asked = self.asked[pile_no] = asyncio.get_running_loop().create_future()
            asked.add_done_callback(_retrieved)
        if self.reading is None:
            self.reading = asyncio.ensure_future(self._read_batches())
        return await asyncio.shield(asked)

    async def _read_batches(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.asked:
                pile_nos = list(self.asked)[:self.limit]
                batch = {pile_no: self.asked.pop(pile_no) for pile_no in pile_nos}
                started = loop.time()
                try:
                    answers: Mapping[str, Any] = await self.read(pile_nos)
                except Exception as error:  # noqa: BLE001 - every asker of the batch fails as its own read would
                    answers = dict.fromkeys(pile_nos, error)
                else:
                    if self.on_batch is not None:
                        self.on_batch(loop.time() - started)
                for pile_no, future in batch.items():
                    answer = answers.get(pile_no)
                    if future.done():
                        continue
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self.reading = None


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A batch's answer nobody awaits any more (the connection closed) is not an unhandled error."""
    if not future.cancelled():
        future.exception()
