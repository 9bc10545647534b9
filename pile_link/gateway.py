"""The YKC gateway: an asyncio TCP server holding piles' connections, wired to the ledger.

Pile to ledger: each connection is a :class:`~pile_link.link.PileLink`; the ledger's commands are
blocking (psycopg), so they run in a small thread pool, and realtime readings are batched across
piles into one transaction per tick (:class:`ReadingBatcher`).

Ledger to pile (design.md, flow 3): a command is an event (``ChargingSession.Opened`` of a platform
start, ``StopRequested``, ``Pile.CommandRequested``, a tariff change). The relay publishes it to
JetStream; every gateway follows those subjects (:mod:`pile_link.commands`) and the one holding the
pile's connection sends the frame. A NATS message is only a hint of where to look: the gateway reads
the session, or the stored event at the message's originator id and version, from the store and
sends what the ledger says the pile is owed (:mod:`pile_link.owed`), never what the message body
says. A start whose deadline already passed is not sent (the watchdog fails it).

A command is owed until the pile acknowledges it or it no longer applies, so what a pile missed
(offline, or this gateway restarting, or NATS away) is delivered when it is next online: when a pile
logs in, and after the gateway follows NATS again, :meth:`Gateway.deliver_owed` asks the store what
each pile it holds is owed (its open sessions from the ``open_sessions`` index, each read from the
store; its tariff) and sends it. Each session's start and stop goes out at most once per connection.

Timers: a connection that does not log in within the login deadline (15 s) is closed; a pile silent
for 30 s (three missed heartbeats) is disconnected and recorded offline (and its charging sessions
get their offline deadline); the clock is set after login and daily; the watchdog
(:mod:`adapters.followers.watchdog`, unless the gateway runs without it) sweeps session deadlines. None of
these keeps money-relevant state in memory.

Outages: everything that writes to or reads from Postgres or NATS is retried with backoff for as
long as an outage lasts, and says so in the log (:mod:`pile_link.recovery`).
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
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from domain.clock import utcnow
from domain.errors import DomainError, WrongPile
from domain.session import ChargingSession
from domain.start_rules import card_start_rules
from pile_link.boundary import Refusal, RefusalThrottle, RefusedFrames
from pile_link.commands import COMMAND_SUBJECTS, CommandFollower
from pile_link.link import PileLink
from adapters.followers.open_sessions import OpenSessions
from pile_link.owed import COMMISSIONING_BALANCE_FEN, owed_for_command, owed_for_session
from adapters.followers import gateway_leases
from adapters.followers.gateway_leases import LEASE_TTL
from adapters.postgres.env import create_tables
from adapters.servers.outage import Outage
from adapters.followers.watchdog import Watchdog
from pile_link.ykc import RemoteStart

log = logging.getLogger("chargeledger.pile_link")

HEARTBEAT_TIMEOUT = 30.0  # three missed 10 s heartbeats
LOGIN_DEADLINE = 15.0  # a connection must log in this soon (a pile logs in as soon as it connects)
MAX_WRITE_ATTEMPTS = 20  # a write-behind batch the database refuses (while up) is tried this often
MAX_PENDING_READINGS = 500_000  # readings kept through a database outage; beyond, the oldest go (see WriteBehind)
SENT_MEMORY = 100_000  # the stored commands a gateway remembers having sent, so each goes out once
TIME_SYNC_INTERVAL = 24 * 3600.0
OWED_WAIT = 5.0  # seconds after a login to wait for the guns' first realtime reports before a start or a push
__all__ = ["COMMAND_SUBJECTS", "Gateway", "WriteBehind", "serve"]


class WriteBehind:
    """Observations of many piles, written to the ledger in one transaction per tick.

    Used for what needs no answer to the pile: realtime readings and link status (online,
    offline, gun status). Items keep their order: flushes are serialised, and a flush carries every
    item queued before it. ``write(batch)`` returns, per item, None or the domain error that refused it.

    A batch whose write fails goes back to the head of the queue. While the database cannot be
    reached (``reachable()`` says no), it waits there for as long as the outage lasts, retried with
    backoff (logged when the outage begins and ends); a batch the database refuses while it is up
    is tried ``MAX_WRITE_ATTEMPTS`` times, then dropped, logged and counted (``<name>_dropped``), so
    it cannot hold back what is queued behind it for ever. ``max_pending`` bounds what an outage
    keeps: beyond it the oldest items go (counted as ``<name>_shed``). Readings can afford it: each
    carries the session's energy so far, so a later one still brings the total up to date.
    """

    def __init__(self, gateway: Any, name: str, write: Callable[[list[Any]], list[Exception | None]],
                 after: Callable[[list[Any]], Awaitable[None]] | None = None, interval: float = 0.05,
                 max_batch: int = 500, refused: Callable[[Any, Exception], None] | None = None,
                 reachable: Callable[[], bool] | None = None, max_pending: int | None = None) -> None:
        self.gateway = gateway
        self.name = name
        self.write = write
        self.after = after
        self.refused = refused
        self.reachable = reachable
        self.max_pending = max_pending
        self.failures = 0  # consecutive failed writes of the batch at the head of the queue, the database up
        self.outage = Outage(f"writing {name}", f"{name}_write", log, gateway.stats, cap=5.0)
        self.pause = 0.5  # before the next try, after a failed write
        self.interval = interval
        self.max_batch = max_batch
        self.pending: list[Any] = []
        self.in_flight: asyncio.Future[Any] | None = None
        self.lock = asyncio.Lock()
        self.wakeup = asyncio.Event()

    def add(self, item: Any) -> None:
        self.pending.append(item)
        if self.max_pending is not None and len(self.pending) > self.max_pending:
            shed = len(self.pending) - self.max_pending
            del self.pending[:shed]
            self.gateway.stats[f"{self.name}_shed"] += shed
        if len(self.pending) >= self.max_batch:
            self.wakeup.set()

    async def flush(self) -> None:
        """Write everything queued so far (and wait for a flush already in flight); raises if a
        write fails, with its batch back at the head of the queue."""
        async with self.lock:
            if self.in_flight is not None and not self.in_flight.done():
                await asyncio.wait([self.in_flight])  # a write whose flush was cancelled (the gateway stopping)
            while self.pending:
                batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
                # shielded: a flush cancelled while the write waits for a worker must not unqueue it
                self.in_flight = asyncio.ensure_future(self.gateway.run(self.write, batch))
                try:
                    outcomes = await asyncio.shield(self.in_flight)
                except asyncio.CancelledError:
                    self.in_flight.add_done_callback(lambda done: done.cancelled() or done.exception())
                    raise
                except Exception as error:
                    self.pause = self.outage.failed(error)
                    await self.requeue(batch)
                    raise
                self.failures = 0
                self.outage.succeeded()
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

    async def requeue(self, batch: list[Any]) -> None:
        if self.reachable is not None and not await self.gateway.run(self.reachable):
            self.pending[:0] = batch  # the database is away: the batch waits, however long that takes
            return
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
            except Exception:  # noqa: BLE001 - the items stay queued; tried again after a pause
                await asyncio.sleep(self.pause)


class Coalesced:
    """A blocking catch-up run in the gateway's pool, shared: a caller waits for a run that began after
    it asked, and callers that ask while one run waits for its turn share that run (a thousand piles
    logging in at once make two or three catch-ups, not a thousand)."""

    def __init__(self, gateway: Gateway, fn: Callable[[], Any]) -> None:
        self.gateway = gateway
        self.fn = fn
        self.current: asyncio.Future[Any] | None = None
        self.next: asyncio.Future[Any] | None = None

    async def __call__(self) -> Any:
        if self.next is None:
            self.next = asyncio.ensure_future(self._after(self.current))
        return await asyncio.shield(self.next)

    async def _after(self, previous: asyncio.Future[Any] | None) -> Any:
        if previous is not None:
            await asyncio.wait([previous])
        self.current, self.next = self.next, None
        return await self.gateway.run(self.fn)


class Gateway:
    def __init__(self, ledger: Any, *, database_url: str, nats_url: str, host: str = "127.0.0.1", port: int = 0,
                 gateway_id: str | None = None, clock: Callable[[], datetime] = utcnow,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT, sweep_interval: float = 5.0,
                 login_deadline: float = LOGIN_DEADLINE, max_card_hold_fen: int = 200_00,
                 balance_margin_fen: int = 100, workers: int = 4, watchdog: bool = True,
                 commissioning_balance_fen: int = COMMISSIONING_BALANCE_FEN, owed_wait: float = OWED_WAIT) -> None:
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
        self.card_start_rules = card_start_rules(max_card_hold_fen)
        self.balance_margin_fen = balance_margin_fen
        self.commissioning_balance_fen = commissioning_balance_fen  # told to the pile: no wallet, nothing held
        self.owed_wait = owed_wait
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ledger")
        self.links: dict[str, PileLink] = {}
        self.links_by_id: dict[UUID, PileLink] = {}
        self.connections: set[PileLink] = set()
        self.stats: Counter[str] = Counter()
        self.readings = WriteBehind(self, "readings", ledger.record_readings, after=self.protect_balances,
                                    refused=self.reading_refused, reachable=self.database_reachable,
                                    max_pending=MAX_PENDING_READINGS)
        self.refusals = RefusalThrottle()
        self.sent: OrderedDict[tuple[Any, ...], None] = OrderedDict()  # stored commands sent, oldest first
        self.pile_changes = WriteBehind(self, "pile_changes", ledger.record_pile_changes,
                                        reachable=self.database_reachable)
        self.offline_sessions = WriteBehind(self, "offline_sessions", self.record_sessions_offline,
                                            reachable=self.database_reachable)
        self.timezones: dict[UUID, str] = {}
        # The watchdog may run here, in `chargeledger watchdog`, or both (it is safe to run twice).
        self.watchdog = Watchdog(ledger, database_url) if watchdog else None
        self.open_sessions = self.watchdog.open_sessions if self.watchdog else OpenSessions(ledger, database_url)
        self.index_caught_up = Coalesced(self, self.open_sessions.catch_up)
        self.sweep_outage = Outage("watchdog sweep", "watchdog_sweep", log, self.stats)
        self.lease_outage = Outage("renewing the gateway's lease", "gateway_lease", log, self.stats)
        self.commands = CommandFollower(nats_url, self.gateway_id, self.handle_command_event,
                                        self.deliver_owed_to_all, self.stats)
        self.stop_requested: set[str] = set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lease_table = False

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.commands.start()
        self._server = await asyncio.start_server(self._accept, self.host, self.port, backlog=4096,
                                                  limit=64 * 1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._tasks += [asyncio.create_task(self.readings.run(), name="readings"),
                        asyncio.create_task(self.pile_changes.run(), name="pile changes"),
                        asyncio.create_task(self.offline_sessions.run(), name="offline sessions"),
                        asyncio.create_task(self._sweep_forever(), name="sweep")]
        log.info("gateway %s listening on %s:%s (watchdog %s)", self.gateway_id, self.host, self.port,
                 "on" if self.watchdog else "off")

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
        for behind in (self.readings, self.pile_changes, self.offline_sessions):
            try:
                await behind.flush()
            except Exception:  # noqa: BLE001 - the database is away: what was queued is lost with the process
                log.exception("gateway stopping: %d %s not written", len(behind.pending), behind.name)
        try:
            await self.run(self.give_up_lease)
        except Exception:  # noqa: BLE001 - the lease expires by itself; a watchdog then finds no pile here
            log.warning("gateway stopping: its lease could not be given up; it expires in %s", LEASE_TTL)
        await self.commands.stop()
        self.executor.shutdown(wait=True)

    def renew_lease(self, now: datetime) -> bool:
        """Renew this gateway's lease (:mod:`adapters.followers.gateway_leases`); True if it had lapsed."""
        with self.ledger.sessions.recorder.datastore.get_connection() as conn:
            if not self._lease_table:
                create_tables(conn, gateway_leases.SCHEMA)
                self._lease_table = True
            return gateway_leases.renew(conn, self.gateway_id, now)

    def give_up_lease(self) -> None:
        if self._lease_table:
            with self.ledger.sessions.recorder.datastore.get_connection() as conn:
                gateway_leases.give_up(conn, self.gateway_id)

    def database_reachable(self) -> bool:
        """Can a new connection reach the database now? (Tells an outage from a refused write.)"""
        try:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

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
        self.offline_sessions.add((link.pile_no, at))

    def record_sessions_offline(self, offline: list[tuple[str, datetime]]) -> list[Exception | None]:
        """The open sessions of piles recorded offline: each charging or stopping one gets its offline
        deadline (``ChargingSession.pile_offline``; the others are unchanged). Run in the pool."""
        self.open_sessions.catch_up()
        outcomes: list[Exception | None] = []
        for pile_no, at in offline:
            outcome = None
            for trade_no in self.open_sessions.of_pile(pile_no):
                try:
                    self.ledger.session_pile_offline(trade_no, at=at)
                except DomainError as error:
                    outcome = error
            outcomes.append(outcome)
        return outcomes

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed")

    async def sweep(self) -> None:
        """Heartbeat timeouts, daily time sync, and (with the watchdog) the session deadlines that passed."""
        now = self.loop_time()
        for link in list(self.connections):
            if now - link.last_seen > self.heartbeat_timeout:
                log.warning("pile %s: no frame for %.0f s, closing", link.pile_no or link.peer, now - link.last_seen)
                await link.close("heartbeat lost")
            elif link.pile_no and now - link.last_time_sync > TIME_SYNC_INTERVAL:
                link.send_time()
        self.write_refusals(self.refusals.due(now))
        try:
            if await self.run(self.renew_lease, self.clock()):
                log.warning("gateway %s: a watchdog took this gateway for gone (its lease lapsed); recording "
                            "its %d pile(s) connected again", self.gateway_id, len(self.links))
                for link in list(self.links.values()):
                    link.record_connected(self.clock())
        except Exception as error:  # noqa: BLE001 - the next sweep tries again; the outage is logged once
            self.lease_outage.failed(error)
        else:
            self.lease_outage.succeeded()
        if self.watchdog is None:
            return
        try:
            await self.run(self.watchdog.sweep, self.clock())
        except Exception as error:  # noqa: BLE001 - the next sweep tries again; the outage is logged once
            self.sweep_outage.failed(error)
        else:
            self.sweep_outage.succeeded()

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
    async def handle_command_event(self, subject: str, headers: dict[str, str], body: bytes) -> None:
        """Send what the ledger says a pile is owed for the stored event a message points at; the
        message body is never read. A message pointing at no stored event of its subject's type
        (forged, or corrupt) sends nothing: counted as ``commands_unverified`` and logged."""
        self.stats["command_events"] += 1
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
        """True the first time this gateway sends ``key`` (a stored command, or a tariff change)."""
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

    def fresh_sessions(self, trade_nos: list[str]) -> list[ChargingSession]:
        found = (self.fresh_session(ChargingSession.create_id(trade_no)) for trade_no in trade_nos)
        return [session for session in found if session is not None]

    async def send_owed_for_session(self, session_id: UUID) -> None:
        """0x34 or 0x36 if the session, read fresh from the store, says its pile (held here) is owed one."""
        session = await self.run(self.fresh_session, session_id)
        link = self.links.get(session.pile_no) if session is not None else None
        if link is not None:  # else gone, or a pile another gateway holds
            self.send_owed(link, session)  # type: ignore[arg-type]

    def send_owed(self, link: PileLink, session: ChargingSession, again: bool = False) -> None:
        """What ``owed_for_session`` says, given what the session's gun last reported on this
        connection; each frame at most once per connection. ``again``: sent from what the store
        says is owed rather than from a new event, so a start may be one the pile already took."""
        report = link.reported.get(session.gun_no)
        for frame in owed_for_session(session, self.clock(), self.commissioning_balance_fen, report):
            if not link.send_once(("session", session.id, frame.TYPE), frame):
                continue
            if again and isinstance(frame, RemoteStart) and session.opened_at <= link.logged_in_at:
                link.starts_sent_again.add(session.trade_no)  # it may have reached an earlier connection
            self._observe(session.pile_no, "start" if isinstance(frame, RemoteStart) else "stop")
            self.stats["owed_sent" if again else "commands_sent"] += 1

    def tariff_owed(self, pile_no: str) -> bool:
        """Is the pile owed its tariff (its confirmed billing model is not the one in force)? A pile
        with no tariff assigned is owed none. Run in the pool."""
        try:
            return self.ledger.tariff_owed(pile_no) is not None
        except DomainError:
            return False

    # ---- what a pile is owed, whatever reached this gateway through NATS ---------------------------------
    async def deliver_owed_to_all(self) -> None:
        """After following NATS again: every pile held here gets what it is owed (what NATS carried
        while this gateway was not following, or what it never carried)."""
        links = list(self.links.values())
        log.info("gateway %s: delivering what %d piles are owed", self.gateway_id, len(links))
        await asyncio.gather(*(self.deliver_owed_until_done(link) for link in links))

    async def deliver_owed_until_done(self, link: PileLink) -> None:
        """:meth:`deliver_owed`, tried again with backoff (a database outage) while the pile is connected."""
        outage = Outage(f"delivering what pile {link.pile_no} is owed", "owed_delivery", log,
                        self.stats)
        while not link.closed:
            try:
                await self.deliver_owed(link)
            except Exception as error:  # noqa: BLE001 - tried again while the pile is here
                await asyncio.sleep(outage.failed(error))
            else:
                outage.succeeded()
                return

    async def deliver_owed(self, link: PileLink) -> None:
        """Send the pile on ``link`` what the store says it is owed: a start or a stop for each of its
        open sessions that calls for one, and its tariff if the billing model it confirmed is not the
        one in force.

        The pile's open sessions come from the ``open_sessions`` index, brought up to date first (so
        this depends on no other process), and each is then read from the store: the index says
        where to look, the aggregate decides. Stops and starts wait until the gun concerned has
        reported on this connection (0x13; asked for with 0x12), for at most ``owed_wait`` seconds,
        and each session is read again after that wait: a pile that logs in uploads what it buffered
        first, and a gun reporting the session charging (a start whose answer was lost) makes its
        start no longer owed; a gun charging another session is sent neither (``owed_for_session``).
        The tariff waits the same way for every gun, then goes when the pile is idle."""
        await self.index_caught_up()
        trade_nos = await self.run(self.open_sessions.of_pile, link.pile_no)
        sessions = await self.run(self.fresh_sessions, trade_nos)
        now = self.clock()
        guns = {s.gun_no for s in sessions if owed_for_session(s, now, self.commissioning_balance_fen)}
        tariff_owed = await self.run(self.tariff_owed, link.pile_no)
        if tariff_owed:
            guns |= link.gun_numbers
        if not guns:
            return
        await link.await_reports(guns, self.owed_wait)
        for session in await self.run(self.fresh_sessions, [s.trade_no for s in sessions if s.gun_no in guns]):
            self.send_owed(link, session, again=True)
        if tariff_owed and await self.run(self.tariff_owed, link.pile_no):
            await link.push_tariff_when_idle()
            self._observe(link.pile_no, "push_tariff")  # type: ignore[arg-type]

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


async def serve(ledger: Any, *, database_url: str, nats_url: str, host: str, port: int, watchdog: bool = True) -> None:
    gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, host=host, port=port, watchdog=watchdog)
    await gateway.start()
    try:
        await asyncio.Event().wait()
    finally:
        await gateway.stop()

