"""The relay's publishes in flight: up to ``size`` events sent before the stream acknowledges them.

Waiting for each acknowledgement before the next publish (one round trip to the stream's leader, and on
a replicated stream to a quorum of its replicas, per event) is what limited the relay; a window keeps
the link full. The window is a JetStream **atomic batch** (nats-server 2.12 and later; the stream is
made with ``allow_atomic``): up to ``size`` events sent one after the other, the last one committing
them, one acknowledgement for all. Three things keep what the synchronous relay guaranteed:

* **Order.** The batch's first event carries ``Nats-Expected-Last-Subject-Sequence``: the stream
  sequence of the last message on its *guard*, the subjects of this shard's Application
  (``chargeledger.<Application>.>`` for ``main``, ``chargeledger.<shard>.<Application>.>`` for any
  other; :func:`~adapters.followers.relay.stream.guard_subject`), given as
  ``Nats-Expected-Last-Subject-Sequence-Subject``. So a batch is stored only right after the
  event it follows *on its own subjects*: if one was lost in flight, or another relay of the same shard
  published meanwhile, the batch is refused (``wrong last sequence``, err_code 10071). Other shards'
  relays publish on other subjects of the same stream: they move the stream's sequence, never this
  guard, so any number of shards publish through full windows at once. Within the batch the stream
  stores the events in the order sent, at consecutive sequences, or none of them: a batch with an event
  missing (a broken link) is refused whole (``atomic publish batch is incomplete``, 10176).
* **The position.** A batch is acknowledged whole or not at all, and the caller is told of its events,
  in order, only once its commit is acknowledged: the position it records never passes a gap.
* **No duplicate.** On any failure (a refusal, no acknowledgement within ``ack_timeout``, a broken
  connection) the window stops and raises; the relay then reads the stream's last message on the guard
  (``Relay.sync``) and sends again from the first event not on the stream. A batch holding an event the
  stream already has within its duplicate window is refused whole (``Nats-Msg-Id``; 10201), so a
  re-send never stores a second copy.

Why not a window of single publishes, each guarded: the guard names the sequence its predecessor *got*,
which a publisher sharing the stream cannot know before that predecessor's acknowledgement (another
shard's messages take sequences in between); and a replicated stream refuses a second publish
expecting a sequence on a subject while the first is still being replicated (nats-server 2.15: "last
sequence by subject mismatch"). The stream-wide ``Nats-Expected-Last-Sequence`` the window used before
could be predicted only while the relay was the stream's one publisher: another shard's message
mid-window let the events after the refused one through ahead of it (a reorder).
``tests/integration/test_relay_window.py`` shows the guard, and that a foreign message changes nothing.

One batch is in flight at a time: its guard is the previous one's last sequence. ``size`` is at most
:data:`MAX_BATCH`, nats-server's default largest atomic batch (its ``max_batch_size``). A "batch" of one
event is a plain publish with the same guard (``RELAY_WINDOW=1``, and a relay woken for a single event)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

import nats.errors
import nats.js.errors

EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"
MAX_BATCH = 1000  # nats-server's default limit on the messages of one atomic batch
ATOMIC_PUBLISH_DISABLED = 10174  # the stream's err_code for a batch on a stream without allow_atomic


@dataclass(frozen=True)
class Outgoing:
    """One event to publish: its subject, body and headers, and its notification id."""

    subject: str
    payload: bytes
    headers: dict[str, str]
    notification_id: int


class Refused(nats.errors.Error):
    """The stream answered a publish with an error (``wrong last sequence``: one before it was lost, or
    another relay of the shard published meanwhile)."""

    def __init__(self, description: str, code: int | None) -> None:
        super().__init__(description)
        self.description, self.code = description, code

    def __str__(self) -> str:
        return f"the stream refused a publish: {self.description} (err_code {self.code})"


class PublishWindow:
    """Publishes on ``nc`` in guarded atomic batches of up to ``size`` events; see the module's docstring."""

    def __init__(self, nc: Any, size: int, ack_timeout: float) -> None:
        if not 1 <= size <= MAX_BATCH:
            raise ValueError(f"the publish window holds 1 to {MAX_BATCH} events (nats-server's atomic batch limit)")
        self.nc, self.size, self.ack_timeout = nc, size, ack_timeout
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

    async def publish(self, events: Iterable[Outgoing], guard: str, last_sequence: int,
                      keep_going: Callable[[], bool], acknowledged: Callable[[Outgoing, int], None]) -> int:
        """Publish ``events`` in order, the first expected right after stream sequence ``last_sequence``
        among the subjects ``guard`` matches (0: none there yet).

        ``acknowledged(event, sequence)`` is called in order for each event once its batch is
        acknowledged. Stops when ``keep_going()`` turns false, checked before each batch and again
        before its commit (a batch not committed stores nothing). Returns the last sequence on
        ``guard`` after them; raises on the first failure."""
        remaining = iter(events)
        while keep_going():
            batch = list(islice(remaining, self.size))
            if not batch:
                break
            committed = await self._send(batch, guard, last_sequence, keep_going)
            if committed is None:
                break
            answer = self._take(await self._ack(committed), len(batch))
            first = answer - len(batch) + 1  # an atomic batch is stored at consecutive sequences
            for offset, event in enumerate(batch):
                acknowledged(event, first + offset)
            last_sequence = answer
        return last_sequence

    async def _send(self, batch: list[Outgoing], guard: str, after: int,
                    keep_going: Callable[[], bool]) -> asyncio.Future[Any] | None:
        """Send one batch; the future of its commit's answer, or None if ``keep_going`` turned false
        before the commit (the server drops the uncommitted batch after its timeout, 10 s). One event
        goes as a plain publish with the same guard: one message is stored whole or not at all anyway,
        and an atomic batch costs a single server its own store on disk (nats-server stages an R1
        file stream's batch in a file store of its own: about 6 ms a batch)."""
        last = len(batch)
        batch_id = uuid.uuid4().hex if last > 1 else None
        for number, event in enumerate(batch, start=1):
            headers = dict(event.headers)
            if batch_id is not None:
                headers.update({BATCH_ID: batch_id, BATCH_SEQUENCE: str(number)})
            if number == 1:
                headers[EXPECTED_LAST_SUBJECT_SEQUENCE] = str(after)
                headers[EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = guard
            if number < last:
                await self.nc.publish(event.subject, event.payload, headers=headers)
                continue
            if not keep_going():
                return None
            if batch_id is not None:
                headers[BATCH_COMMIT] = "1"
            self.serial += 1
            token = str(self.serial)
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.waiting[token] = future
            await self.nc.publish(event.subject, event.payload, reply=f"{self.inbox}.{token}", headers=headers)
            return future
        return None

    async def _ack(self, future: asyncio.Future[Any]) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.ack_timeout)
        except asyncio.TimeoutError:
            raise nats.errors.TimeoutError from None
        finally:
            future.cancel()
            self.waiting = {token: f for token, f in self.waiting.items() if not f.done()}

    @staticmethod
    def _take(msg: Any, count: int) -> int:
        """The stream's answer to a batch's commit: its last event's sequence, or the failure raised."""
        if msg.headers and msg.headers.get("Status") == "503":
            raise nats.js.errors.NoStreamResponseError
        answer = json.loads(msg.data)
        if "error" in answer:
            error = answer["error"]
            raise Refused(error.get("description", str(error)), error.get("err_code"))
        if count > 1 and answer.get("count") != count:
            raise Refused(f"a batch of {count} acknowledged as {answer.get('count')}", None)
        return int(answer["seq"])
