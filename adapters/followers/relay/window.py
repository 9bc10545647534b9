"""The relay's publishes in flight: up to ``size`` events sent before the first of them is acknowledged.

Waiting for each acknowledgement before the next publish (one round trip to the stream's leader, and on
a replicated stream to a quorum of its replicas, per event) is what limited the relay; a window keeps
the link full. Three things keep what the synchronous relay guaranteed:

* **Order.** The events go out in their log's order on one connection, and each carries
  ``Nats-Expected-Last-Sequence``: the stream sequence its predecessor is to have. So an event is stored
  only right after the one before it; if the stream lost one in flight (its leader died, a node's link
  broke), every event after it is refused (``wrong last sequence``) instead of being stored ahead of it,
  and the stream keeps the log's order however the window breaks. (``Nats-Expected-Last-Msg-Id`` would say
  the same without sequences, but a refusal of it on a replicated stream halts the stream's replicas in
  nats-server 2.15: "stream write error: last msgid mismatch".)
* **The position.** The acknowledgements are taken in the order sent, and the caller is told of each
  only when every event before it is acknowledged: the position it records is the longest acknowledged
  prefix, never past a gap.
* **No duplicate.** On any failure (a refusal, no acknowledgement within ``ack_timeout``, a broken
  connection) the window stops sending and raises; the relay then reads the stream's last message of the
  Application (``Relay.sync``) and sends again from the first event not on the stream. Should one be
  sent twice anyway, ``Nats-Msg-Id`` makes the stream drop the second copy within its duplicate window
  (a duplicate is checked before the expected sequence).

**One publisher.** The expected sequences assume the relay's events are the only ones appended to the
stream while a window is in flight (one ledger per NATS deployment: only the relay's NATS user may
publish on ``chargeledger.>``, and one relay leads per database). A message from anyone else breaks
that: the event sent expecting the sequence the foreign message took is refused, and the ones after
it, whose expectations the foreign message made right, are stored ahead of it. Several ledgers
publishing on one stream (tenant shards sharing it) must not use a window: a shard's relay (any shard
but ``main``) opens it with ``sole_publisher=False``, one event in flight and no expected sequence (the
synchronous relay: each publish waits for its acknowledgement, so order holds without the guard, and
``Nats-Msg-Id`` drops a re-send); a stream per shard is the way to the window's speed for shards.
``tests/integration/test_relay_window.py`` shows both sides."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors

EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"


@dataclass(frozen=True)
class Outgoing:
    """One event to publish: its subject, body and headers, and its notification id."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    notification_id: int


class Refused(nats.errors.Error):
    """The stream answered a publish with an error (``wrong last sequence``: one before it was lost)."""

    def __init__(self, description: str, code: int | None) -> None:
        super().__init__(description)
        self.description, self.code = description, code

    def __str__(self) -> str:
        return f"the stream refused a publish: {self.description} (err_code {self.code})"


class PublishWindow:
    """Publishes on ``nc`` with up to ``size`` acknowledgements pending; see the module's docstring."""

    def __init__(self, nc: Any, size: int, ack_timeout: float, *, sole_publisher: bool = True) -> None:
        """``sole_publisher`` False (a tenant shard's relay: others publish on the stream too): one event in
        flight at a time and no expected sequence, the synchronous relay's way, since another ledger's
        messages move the stream's last sequence between two of ours."""
        if size < 1:
            raise ValueError("the publish window holds at least one event")
        self.nc, self.ack_timeout, self.sole_publisher = nc, ack_timeout, sole_publisher
        self.size = size if sole_publisher else 1
        self.inbox = ""
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self.serial = 0

    async def open(self) -> PublishWindow:
        """Subscribe to the acknowledgements' inbox (one for the connection's life; the client
        subscribes again after a reconnect)."""
        self.inbox = self.nc.new_inbox()
        await self.nc.subscribe(f"{self.inbox}.*", cb=self._answer)
        return self

    async def _answer(self, msg: Any) -> None:
        future = self.waiting.pop(msg.subject.rsplit(".", 1)[-1], None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def publish(self, events: Iterable[Outgoing], last_sequence: int, keep_going: Callable[[], bool],
                      acknowledged: Callable[[Outgoing, int], None]) -> int:
        """Publish ``events`` in order, the first expected right after stream sequence ``last_sequence``.

        ``acknowledged(event, sequence)`` is called in order for each event once it and all before it
        are acknowledged. Stops sending when ``keep_going()`` turns false (what was sent is still
        awaited). Returns the stream's last sequence after them; raises on the first failure."""
        pending: deque[tuple[Outgoing, asyncio.Future[Any]]] = deque()
        expected = last_sequence
        try:
            for event in events:
                if not keep_going():
                    break
                if len(pending) >= self.size:
                    last_sequence = max(last_sequence, await self._settle(pending, acknowledged))
                pending.append((event, await self._send(event, expected)))
                expected += 1
            while pending:
                last_sequence = max(last_sequence, await self._settle(pending, acknowledged))
        finally:
            for _, future in pending:  # the window broke: nothing after the failure counts
                future.cancel()
            self.waiting = {token: f for token, f in self.waiting.items() if not f.done()}
        return last_sequence

    async def _settle(self, pending: deque[tuple[Outgoing, asyncio.Future[Any]]],
                      acknowledged: Callable[[Outgoing, int], None]) -> int:
        """Wait for the oldest event's answer; take it off the window once acknowledged."""
        event, future = pending[0]
        answer = await self._ack(future)
        pending.popleft()
        return self._take(event, answer, acknowledged)

    async def _send(self, event: Outgoing, after: int) -> asyncio.Future[Any]:
        self.serial += 1
        token = str(self.serial)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[token] = future
        headers = {**event.headers, EXPECTED_LAST_SEQUENCE: str(after)} if self.sole_publisher else event.headers
        await self.nc.publish(event.subject, event.payload, reply=f"{self.inbox}.{token}", headers=headers)
        return future

    async def _ack(self, future: asyncio.Future[Any]) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.ack_timeout)
        except asyncio.TimeoutError:
            raise nats.errors.TimeoutError from None

    @staticmethod
    def _take(event: Outgoing, msg: Any, acknowledged: Callable[[Outgoing, int], None]) -> int:
        """The stream's answer to ``event``: its sequence, or the failure raised."""
        if msg.headers and msg.headers.get("Status") == "503":
            raise nats.js.errors.NoStreamResponseError
        answer = json.loads(msg.data)
        if "error" in answer:
            error = answer["error"]
            raise Refused(error.get("description", str(error)), error.get("err_code"))
        sequence = int(answer["seq"])
        acknowledged(event, sequence)
        return sequence
