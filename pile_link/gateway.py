"""The YKC gateway: an asyncio TCP server holding piles' connections, wired to the ledger.

Pile to ledger: each connection is a :class:`~pile_link.link.PileLink`; the ledger's commands are
blocking (psycopg), so they run in a small thread pool, and realtime readings are batched across
piles into one transaction per tick (:class:`ReadingBatcher`).

Ledger to pile (design.md, flow 3): a command is an event (``ChargingSession.Opened`` of a platform
start, ``StopRequested``, ``Pile.CommandRequested``, a tariff change). The relay publishes it to
JetStream; every gateway follows those subjects and the one holding the pile's connection sends the
frame. A NATS message is only a hint of where to look: the gateway reads the session, or the stored
event at the message's originator id and version, from the store and sends what the ledger says the
pile is owed (:mod:`pile_link.owed`), never what the message body says. A start whose deadline
already passed is not sent (the watchdog fails it); each session's start and stop and each stored
command go out at most once per gateway process.

Timers: a connection that does not log in within the login deadline (15 s) is closed; a pile silent
for 30 s (three missed heartbeats) is disconnected and recorded offline; the clock is set after login
and daily; the watchdog (:mod:`pile_link.watchdog`) sweeps session deadlines. None of these keeps
money-relevant state in memory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import nats
from nats.js.api import DeliverPolicy

from adapters.nats_auth import GATEWAY, connect_options
from adapters.relay import SUBJECT_PREFIX, stream_exists, wait_for_stream
from domain.errors import DomainError, WrongPile
from domain.session import ChargingSession
from pile_link.boundary import Refusal, RefusalThrottle, RefusedFrames
from pile_link.link import PileLink
from pile_link.owed import owed_for_command, owed_for_session
from pile_link.watchdog import Watchdog

log = logging.getLogger("chargeledger.pile_link")

HEARTBEAT_TIMEOUT = 30.0  # three missed 10 s heartbeats
LOGIN_DEADLINE = 15.0  # a connection must log in this soon (a pile logs in as soon as it connects)
MAX_WRITE_ATTEMPTS = 20  # a write-behind batch is tried this often (0.5 s apart) before it is dropped
SENT_MEMORY = 100_000  # the commands a gateway remembers having sent, so each goes out once
TIME_SYNC_INTERVAL = 24 * 3600.0
COMMAND_SUBJECTS = (
    "Sessions.ChargingSession.Opened",
    "Sessions.ChargingSession.StopRequested",
    "Registry.Pile.CommandRequested",
    "Registry.Pile.TariffAssigned",
    "Registry.Station.TariffAssigned",
    "Tariffs.Tariff.Revised",
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class WriteBehind:
    """Observations of many piles, written to the ledger in one transaction per tick.

    Used for what needs no answer to the pile: realtime readings and link status (online,
    offline, gun status). Items keep their order: flushes are serialised, and a flush carries every
    item queued before it. ``write(batch)`` returns, per item, None or the domain error that refused it.
    """

    def __init__(self, gateway: Gateway, name: str, write: Callable[[list[Any]], list[Exception | None]],
                 after: Callable[[list[Any]], Awaitable[None]] | None = None, interval: float = 0.05,
                 max_batch: int = 500, refused: Callable[[Any, Exception], None] | None = None) -> None:
        self.gateway = gateway
        self.name = name
        self.write = write
        self.after = after
        self.refused = refused
        self.failures = 0  # consecutive failed writes of the batch at the head of the queue
        self.interval = interval
        self.max_batch = max_batch
        self.pending: list[Any] = []
        self.lock = asyncio.Lock()
        self.wakeup = asyncio.Event()

    def add(self, item: Any) -> None:
        self.pending.append(item)
        if len(self.pending) >= self.max_batch:
            self.wakeup.set()

    async def flush(self) -> None:
        """Write everything queued so far (and wait for a flush already in flight).

        A batch whose write fails (one transaction: nothing of it stays) goes back to the head of the
        queue for the next flush, at most ``MAX_WRITE_ATTEMPTS`` times; then it is dropped, logged
        and counted (``<name>_dropped``), so it cannot hold back what is queued behind it for ever."""
        async with self.lock:
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
                try:
                    outcomes = await self.gateway.run(self.write, batch)
                except Exception:
                    self.requeue(batch)
                    raise
                self.failures = 0
                self.gateway.stats[self.name] += len(batch)
                for item, outcome in zip(batch, outcomes):
                    if outcome is not None:
                        self.gateway.stats[f"{self.name}_refused"] += 1
                        log.warning("%s refused: %s (%s)", self.name, outcome, item[0] if isinstance(item, tuple)
                                    else item.get("trade_no"))
                        if self.refused is not None:
                            self.refused(item, outcome)
                if self.after is not None:
                    await self.after(batch)

    def requeue(self, batch: list[Any]) -> None:
        self.failures += 1
        if self.failures < MAX_WRITE_ATTEMPTS:
            self.pending[:0] = batch
            return
        self.failures = 0
        self.gateway.stats[f"{self.name}_dropped"] += len(batch)
        log.error("%s: %d items dropped after %d failed writes", self.name, len(batch), MAX_WRITE_ATTEMPTS)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self.wakeup.wait(), self.interval)
            except asyncio.TimeoutError:
                pass
            self.wakeup.clear()
            try:
                await self.flush()
            except Exception:
                log.exception("writing %s failed; they stay queued", self.name)
                await asyncio.sleep(0.5)


class Gateway:
    def __init__(self, ledger: Any, *, database_url: str, nats_url: str, host: str = "127.0.0.1", port: int = 0,
                 gateway_id: str | None = None, clock: Callable[[], datetime] = utcnow,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT, sweep_interval: float = 5.0,
                 login_deadline: float = LOGIN_DEADLINE, max_card_hold_fen: int = 200_00,
                 balance_margin_fen: int = 100, workers: int = 4) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.nats_url = nats_url
        self.host = host
        self.port = port
        self.gateway_id = gateway_id or f"{socket.gethostname()}:{os.getpid()}"
        self.clock = clock
        self.heartbeat_timeout = heartbeat_timeout
        self.sweep_interval = sweep_interval
        self.login_deadline = login_deadline
        self.max_card_hold_fen = max_card_hold_fen
        self.balance_margin_fen = balance_margin_fen
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ledger")
        self.links: dict[str, PileLink] = {}
        self.links_by_id: dict[UUID, PileLink] = {}
        self.connections: set[PileLink] = set()
        self.stats: Counter[str] = Counter()
        self.readings = WriteBehind(self, "readings", ledger.record_readings, after=self.protect_balances,
                                    refused=self.reading_refused)
        self.refusals = RefusalThrottle()
        self.sent: OrderedDict[tuple[Any, ...], None] = OrderedDict()  # commands sent, oldest first
        self.pile_changes = WriteBehind(self, "pile_changes", ledger.record_pile_changes)
        self.timezones: dict[UUID, str] = {}
        self.watchdog = Watchdog(ledger, database_url)
        self.stop_requested: set[str] = set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._nc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._follow_commands()
        self._server = await asyncio.start_server(self._accept, self.host, self.port, backlog=4096,
                                                  limit=64 * 1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks += [asyncio.create_task(self.readings.run(), name="readings"),
                        asyncio.create_task(self.pile_changes.run(), name="pile changes"),
                        asyncio.create_task(self._sweep_forever(), name="sweep")]
        log.info("gateway %s listening on %s:%s", self.gateway_id, self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self.connections):
            await link.close("gateway stopping")
        self.write_refusals(self.refusals.flush())
        for task in self._tasks:  # cancel until done: Python 3.11's wait_for can swallow a cancel
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.5)
        await self.readings.flush()
        await self.pile_changes.flush()
        if self._nc is not None:
            await self._nc.close()
        self.executor.shutdown(wait=True)

    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        loop = self._loop or asyncio.get_running_loop()
        return loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = PileLink(self, reader, writer)
        self.connections.add(link)
        self.stats["connections"] += 1
        await link.serve()

    # ---- links ------------------------------------------------------------------------------------
    async def link_opened(self, link: PileLink) -> None:
        previous = self.links.get(link.pile_no)  # type: ignore[arg-type]
        self.links[link.pile_no] = link  # type: ignore[index]
        self.links_by_id[link.pile_id] = link
        if previous is not None and previous is not link:
            await previous.close("replaced by a new login")  # not recorded offline: the pile is online

    async def link_closed(self, link: PileLink, reason: str) -> None:
        self.connections.discard(link)
        if link.pile_no is None:
            return
        self.write_refusals(self.refusals.flush(link.pile_no))
        if self.links.get(link.pile_no) is not link:
            return
        del self.links[link.pile_no]
        self.links_by_id.pop(link.pile_id, None)
        log.info("pile %s offline: %s", link.pile_no, reason)
        at = self.clock()
        self.pile_changes.add((link.pile_no, lambda pile: pile.disconnect(at=at, reason=reason)))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")

    async def sweep(self) -> None:
        """Heartbeat timeouts, daily time sync, and the session deadlines that passed."""
        now = self.loop_time()
        for link in list(self.connections):
            if now - link.last_seen > self.heartbeat_timeout:
                log.warning("pile %s: no frame for %.0f s, closing", link.pile_no or link.peer, now - link.last_seen)
                await link.close("heartbeat lost")
            elif link.pile_no and now - link.last_time_sync > TIME_SYNC_INTERVAL:
                link.send_time()
        self.write_refusals(self.refusals.due(now))
        await self.run(self.watchdog.sweep, self.clock())

    # ---- the boundary: frames a pile may not send ------------------------------------------------------
    def frame_refused(self, pile_no: str, refusal: Refusal, frame_type: int) -> None:
        """Count a refused frame and report it on the pile (throttled: RefusalThrottle)."""
        self.stats["frames_refused"] += 1
        self.stats[f"refused_{refusal.kind}"] += 1
        self.write_refusals(self.refusals.note(pile_no, refusal.kind, frame_type, refusal.detail, self.clock(),
                                               self.loop_time()))

    def write_refusals(self, refused: list[RefusedFrames]) -> None:
        for r in refused:
            self.pile_changes.add((r.pile_no, lambda pile, r=r: pile.report_refused_frames(
                kind=r.kind, frame_type=r.frame_type, detail=r.detail, count=r.count, at=r.at)))

    def reading_refused(self, reading: dict[str, Any], error: Exception) -> None:
        """The readings batch refused a reading: a session not of the gun that sent it is a refused frame."""
        if isinstance(error, WrongPile) and reading.get("sent_by") is not None:
            self.frame_refused(reading["sent_by"].pile_no, Refusal("foreign_session", str(error)), 0x13)

    # ---- ledger helpers the links call (in the thread pool) ------------------------------------------
    def tariff_for_pile(self, pile_no: str) -> Any:
        return self.ledger.tariff_for(self.ledger.registry.pile(pile_no))

    def station_timezone(self, station_id: UUID) -> str:
        """The zone a pile's wall clock runs in (cached: a station's zone is set once)."""
        if station_id not in self.timezones:
            self.timezones[station_id] = self.ledger.registry.station(station_id).timezone
        return self.timezones[station_id]

    # ---- balance protection ----------------------------------------------------------------------------
    async def protect_balances(self, batch: list[dict[str, Any]]) -> None:
        """Stop a session before what it has cost so far reaches the money held for it."""
        for trade_no in {r["trade_no"] for r in batch} - self.stop_requested:
            try:
                session = await self.run(self.ledger.session, trade_no)
            except DomainError:
                continue
            if session.state != "charging" or not session.wallet_id or not session.hold_fen:
                continue
            spent = session.measured_bill().total_fen
            if spent + self.balance_margin_fen >= session.hold_fen:
                self.stop_requested.add(trade_no)
                log.info("session %s: %s of %s fen held used, stopping", trade_no, spent, session.hold_fen)
                try:
                    await self.run(self.ledger.request_stop, trade_no, "platform", "balance used up", self.clock())
                except DomainError as error:
                    log.warning("session %s: balance stop refused: %s", trade_no, error)

    # ---- ledger to pile: commands arrive as events through NATS ------------------------------------------
    async def _follow_commands(self) -> None:
        """Follow the command subjects: at once if the stream exists, else once the relay has made it
        (a gateway's NATS user may only follow the stream), serving piles meanwhile."""
        self._nc = await nats.connect(self.nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.25,
                                      connect_timeout=2, **{**connect_options(GATEWAY),
                                                            "name": f"gateway {self.gateway_id}"})
        js = self._nc.jetstream(timeout=5)
        if await stream_exists(js):
            await self._subscribe(js)
        else:
            self._tasks.append(asyncio.create_task(self._subscribe(js, wait=True), name="follow commands"))

    async def _subscribe(self, js: Any, wait: bool = False) -> None:
        if wait:
            await wait_for_stream(js)
        for subject in COMMAND_SUBJECTS:
            await js.subscribe(f"{SUBJECT_PREFIX}.{subject}", cb=self._on_command_event, ordered_consumer=True,
                               deliver_policy=DeliverPolicy.NEW)

    async def _on_command_event(self, msg: Any) -> None:
        try:
            await self.handle_command_event(msg.subject, msg.headers or {}, msg.data)
        except Exception:
            log.exception("handling %s failed", msg.subject)

    async def handle_command_event(self, subject: str, headers: dict[str, str], body: bytes) -> None:
        """Send what the ledger says a pile is owed for the stored event a message points at; the
        message body is never read. A message pointing at no stored event of its subject's type
        (forged, or corrupt) sends nothing: counted as ``commands_unverified`` and logged."""
        try:
            _, application, aggregate, name = subject.split(".")
            originator_id = UUID(headers["Chargeledger-Originator-Id"])
            version = int(headers["Chargeledger-Originator-Version"])
        except (KeyError, ValueError):
            self.unverified(subject, headers, "malformed subject or headers")
            return
        stored = await self.run(self.stored_event, application, originator_id, version, f"{aggregate}.{name}")
        if stored is None:
            self.unverified(subject, headers, "the store holds no such event")
        elif aggregate == "ChargingSession":
            await self.send_owed_for_session(originator_id)
        elif self.once(("event", originator_id, version)):
            await self.send_owed_for_event(aggregate, name, stored)

    def unverified(self, subject: str, headers: dict[str, str], why: str) -> None:
        self.stats["commands_unverified"] += 1
        log.warning("%s (%s v%s): nothing sent, %s", subject, headers.get("Chargeledger-Originator-Id"),
                    headers.get("Chargeledger-Originator-Version"), why)

    def once(self, key: tuple[Any, ...]) -> bool:
        """True the first time this gateway sends ``key`` (a session's start or stop, a stored command)."""
        if key in self.sent:
            return False
        self.sent[key] = None
        if len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)
        return True

    def stored_event(self, application: str, originator_id: UUID, version: int, qualname: str) -> Any | None:
        """The event the store holds at this originator id and version, if it is of this type."""
        app = {a.name: a for a in self.ledger.applications}.get(application)
        if app is None:
            return None
        found = app.recorder.select_events(originator_id, gt=version - 1, lte=version, limit=1)
        if not found or found[0].topic.rsplit(":", 1)[-1] != qualname:
            return None
        return app.mapper.to_domain_event(found[0])

    def fresh_session(self, session_id: UUID) -> ChargingSession | None:
        try:
            return self.ledger.sessions.get(session_id, ChargingSession, "session", fresh=True)
        except DomainError:
            return None

    async def send_owed_for_session(self, session_id: UUID) -> None:
        """0x34 or 0x36 if the session, read fresh from the store, says its pile (held here) is owed
        one; each at most once per gateway."""
        session = await self.run(self.fresh_session, session_id)
        link = self.links.get(session.pile_no) if session is not None else None
        if link is None:  # gone, or a pile another gateway holds
            return
        for frame in owed_for_session(session, self.clock()):
            if self.once(("session", session_id, frame.TYPE)):
                link.send(frame)
                self._observe(session.pile_no, "start" if frame.TYPE == 0x34 else "stop")

    async def send_owed_for_event(self, aggregate: str, name: str, event: Any) -> None:
        """A stored pile command, to its pile if held here; a tariff change, to the held piles it concerns."""
        if (aggregate, name) == ("Pile", "CommandRequested"):
            link = self.links_by_id.get(event.originator_id)
            if link is not None:
                await self.send_pile_command(link, event.command, event.params)
            return
        for link in list(self.links.values()):
            await self.push_if_changed(link, aggregate, event.originator_id)

    async def send_pile_command(self, link: PileLink, command: str, params: dict[str, Any]) -> None:
        if command == "push_tariff":
            await link.push_tariff_when_idle()
        for frame in owed_for_command(link.pile_no, command, params, link.gun_numbers):  # type: ignore[arg-type]
            link.send(frame)
        self._observe(link.pile_no, command)  # type: ignore[arg-type]

    async def push_if_changed(self, link: PileLink, aggregate: str, originator_id: UUID) -> None:
        pile = await self.run(self.ledger.registry.pile, link.pile_no)
        tariff = await self.run(self.tariff_for_pile, link.pile_no)
        if ((aggregate == "Pile" and pile.id == originator_id)
                or (aggregate == "Station" and pile.station_id == originator_id)
                or (aggregate == "Tariff" and tariff.id == originator_id)):
            await link.push_tariff_when_idle()
            self._observe(link.pile_no, "push_tariff")  # type: ignore[arg-type]

    def _observe(self, pile_no: str, kind: str) -> None:
        self.stats[f"sent_{kind}"] += 1


async def serve(ledger: Any, *, database_url: str, nats_url: str, host: str, port: int) -> None:
    gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, host=host, port=port)
    await gateway.start()
    try:
        await asyncio.Event().wait()
    finally:
        await gateway.stop()


__all__ = ["Gateway", "WriteBehind", "serve"]
