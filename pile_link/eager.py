"""Run a coroutine at once, on the caller's stack, and give it a task only if it has to wait.

The pile link handles each frame where it is read (:meth:`pile_link.link.PileLink.data_received`):
most frames (heartbeats, idle realtime data) are answered or queued without waiting for anything,
and a task per frame would cost more than the frame. :func:`start_eagerly` runs the handler's
coroutine until it first waits; only then does it become a task (Python 3.12's eager tasks do the
same; this project runs on 3.11). Once a task, it behaves as one: it waits for what the coroutine
waits for, and a cancellation reaches the coroutine where it waits (cancelling the future it waits
on, as ``asyncio.Task`` does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def start_eagerly(coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any] | None:
    """Run ``coro`` until it first waits. None if it finished then (an exception it raised is
    raised here); otherwise the task that carries it on."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_carry_on(coro, waiting_on))


async def _carry_on(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    """The rest of ``coro``: wait for what it waits on, then resume it, until it returns."""
    while True:
        cancelled: asyncio.CancelledError | None = None
        try:
            if waiting_on is None:  # a bare yield (asyncio.sleep(0)): one turn of the loop
                await asyncio.sleep(0)
            else:  # the coroutine's await marked it "waited on" (as a task's step expects): taken over here
                waiting_on._asyncio_future_blocking = False
                await waiting_on  # its outcome is read by the coroutine itself when resumed
        except asyncio.CancelledError as error:
            if waiting_on is None or not waiting_on.cancelled():
                cancelled = error  # this task was cancelled, not the future: tell the coroutine
        except Exception:  # noqa: BLE001,S110 - the future failed: the coroutine reads it when resumed
            pass
        try:
            waiting_on = coro.send(None) if cancelled is None else coro.throw(cancelled)
        except StopIteration as done:
            return done.value
