"""The gateway's NATS follower: command events from JetStream, followed again after any outage.

It follows the command subjects (``COMMAND_SUBJECTS``) with one push consumer each and hands every
message to the gateway, which checks it against the store before anything reaches a pile. It keeps,
per subject, the stream sequence it has handled up to (starting from the stream's end when it first
subscribes), so following again after NATS comes back resumes right after the last message handled:
nothing published during the outage is skipped, and nothing older is handed over again (a consumer
that restarted from the stream's beginning would re-send every historical reboot). Each consumer is
the follower's own (``AckPolicy.NONE``, in memory, removed by the server once nobody listens):
there is no ordered-consumer reset behind its back. It has as many replicas as the stream, so on a NATS
cluster the loss of the node that held it does not silence it (another replica takes over).

After every (re)subscription, the gateway is told (``resumed``) so it can deliver what each pile it
holds is owed, whatever the messages said (:meth:`pile_link.delivery.OwedDelivery.deliver_owed`).

Outages: connecting, finding the stream and subscribing are retried with backoff for as long as it
takes (:class:`~adapters.servers.outage.Outage`); the NATS client reconnects by itself, and each
reconnection makes the follower subscribe again. Piles are served all the while.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from adapters.servers.nats_users import GATEWAY, STREAM, SUBJECT_PREFIX, connect_options, server_options
from adapters.followers.relay.stream import stream_exists
from adapters.servers.outage import Outage

log = logging.getLogger("chargeledger.pile_link")

COMMAND_SUBJECTS = (
    "Sessions.ChargingSession.Opened",
    "Sessions.ChargingSession.StopRequested",
    "Registry.Pile.CommandRequested",
    "Registry.Pile.TariffAssigned",
    "Registry.Station.TariffAssigned",
    "Tariffs.Tariff.Revised",
)
CONSUMER_INACTIVE = 60.0  # seconds: the server removes a consumer nobody has listened to for this long
STREAM_WAIT = 0.5  # seconds between looks for the stream the relay has not made yet


class StreamMissing(Exception):
    """The relay has not made the stream yet (a gateway's NATS user may not)."""


class CommandFollower:
    def __init__(self, nats_url: str, name: str, handle: Callable[[str, dict[str, str], bytes], Awaitable[None]],
                 resumed: Callable[[], Awaitable[None]], stats: Counter[str], prefix: str = SUBJECT_PREFIX) -> None:
        self.nats_url = nats_url
        self.prefix = prefix  # the shard's subjects (adapters.followers.relay.stream.subject_prefix)
        self.name = name
        self.handle = handle
        self.resumed = resumed
        self.stats = stats
        self.positions: dict[str, int] = {}  # subject -> the last stream sequence handled (or skipped)
        self.subscriptions: dict[str, Any] = {}
        self.outage = Outage("following NATS", "nats_follow", log, stats)
        self.wanted = asyncio.Event()  # (re)subscribe: at start and after every reconnection
        self.nc: Any = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False

    async def start(self) -> None:
        """Follow at once if NATS and the stream are there (so a command that follows is seen), and
        keep trying in the background otherwise."""
        try:
            await self.follow()
        except Exception as error:  # noqa: BLE001 - retried by the background task
            self.note_failure(error)
            self.wanted.set()
        else:
            self.outage.succeeded()
        self.task = asyncio.create_task(self.keep_following(), name="follow commands")

    async def stop(self) -> None:
        self.stopping = True
        if self.task is not None:
            while not self.task.done():  # cancel until done: Python 3.11's wait_for can swallow a cancel
                self.task.cancel()
                await asyncio.wait([self.task], timeout=0.5)
        if self.nc is not None:
            await self.nc.close()

    async def keep_following(self) -> None:
        while True:
            await self.wanted.wait()
            self.wanted.clear()
            try:
                await self.follow()
            except Exception as error:  # noqa: BLE001 - whatever it was, try again
                self.wanted.set()
                await asyncio.sleep(self.note_failure(error))
                continue
            self.outage.succeeded()
            try:
                await self.resumed()
            except Exception:  # noqa: BLE001 - one failed delivery round must not stop the follower
                log.exception("delivering owed commands after following NATS again failed")

    def note_failure(self, error: BaseException) -> float:
        if isinstance(error, StreamMissing):
            log.info("stream %s does not exist yet; waiting for the relay to create it", STREAM)
            return STREAM_WAIT
        return self.outage.failed(error)

    async def follow(self) -> None:
        """Connect if not connected, then subscribe every command subject from its position."""
        if self.nc is None:
            self.nc = await nats.connect(  # NATS_URL may name every node of a cluster
                **server_options(self.nats_url), max_reconnect_attempts=-1, reconnect_time_wait=0.25, connect_timeout=2,
                disconnected_cb=self.disconnected, reconnected_cb=self.reconnected, error_cb=self.error,
                **{**connect_options(GATEWAY), "name": f"gateway {self.name}"})
        js = self.nc.jetstream(timeout=5)
        if not await stream_exists(js):
            raise StreamMissing(STREAM)
        info = await js.stream_info(STREAM)
        end, replicas = info.state.last_seq, info.config.num_replicas or 1
        for subject in COMMAND_SUBJECTS:
            await self.subscribe(js, subject, end, replicas)
        self.stats["nats_subscriptions"] += 1

    async def subscribe(self, js: Any, subject: str, end: int, replicas: int = 1) -> None:
        old = self.subscriptions.pop(subject, None)
        if old is not None:
            try:
                await old.unsubscribe()
            except Exception:  # noqa: BLE001 - its consumer may be gone with the server that held it
                pass
        position = self.positions.get(subject)
        if position is None or position > end:  # first time, or a stream made anew: from its end
            position = self.positions[subject] = end
        # as many replicas as the stream (an ephemeral consumer is R1 unless asked): on a cluster, the
        # consumer outlives the node that held it, and goes on pushing from another
        config = ConsumerConfig(opt_start_seq=position + 1, ack_policy=AckPolicy.NONE, mem_storage=True,
                                num_replicas=replicas, inactive_threshold=CONSUMER_INACTIVE)

        async def on_message(msg: Any) -> None:
            await self.on_message(subject, msg)

        self.subscriptions[subject] = await js.subscribe(f"{self.prefix}.{subject}", cb=on_message,
                                                         deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                                         config=config)

    async def on_message(self, subject: str, msg: Any) -> None:
        sequence = msg.metadata.sequence.stream
        if sequence <= self.positions.get(subject, 0):
            return  # handed over already (an old consumer still delivering after a resubscription)
        self.positions[subject] = sequence
        try:
            # as the main shard's subject: the shard is the follower's (its engine's), never the message's
            await self.handle(f"{SUBJECT_PREFIX}.{subject}", msg.headers or {}, msg.data)
        except Exception:  # noqa: BLE001 - logged; the next message is handled all the same
            log.exception("handling %s failed", msg.subject)

    async def disconnected(self) -> None:
        if self.stopping:
            return
        self.stats["nats_disconnects"] += 1
        log.warning("gateway %s: NATS connection lost; reconnecting (piles are served meanwhile)", self.name)

    async def reconnected(self) -> None:
        self.stats["nats_reconnects"] += 1
        log.warning("gateway %s: NATS reconnected; following the command subjects again", self.name)
        self.wanted.set()

    async def error(self, error: Exception) -> None:
        log.warning("gateway %s: NATS: %s: %s", self.name, type(error).__name__, error)
