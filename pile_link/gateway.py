"""The YKC gateway: an asyncio TCP server holding piles' connections, wired to the ledger.

Pile to ledger: each connection is a :class:`~pile_link.link.PileLink`, whose frames go to the
handlers of :mod:`pile_link.handlers`; the ledger's commands are blocking (psycopg), so they run in a
small thread pool, and realtime readings, link status and offline sessions are batched across piles
into one transaction per tick (:class:`~pile_link.write_behind.WriteBehind`).

Ledger to pile (design.md, flow 3): commands are events, which reach the gateway through NATS
(:mod:`pile_link.commands`); the gateway sends the piles it holds what the store says they are owed,
then and whenever they log in (:class:`~pile_link.delivery.OwedDelivery`, a part of :class:`Gateway`).

Timers: a connection that does not log in within the login deadline (15 s) is closed; a pile silent
for 30 s (three missed heartbeats) is disconnected and recorded offline (and its charging sessions
get their offline deadline); the clock is set after login and daily; the watchdog
(:mod:`adapters.followers.watchdog`, unless the gateway runs without it) sweeps session deadlines. None of
these keeps money-relevant state in memory. The gateway renews its lease on each sweep
(:mod:`adapters.followers.gateway_leases`). Balance protection: a session whose readings reach the
money held for it is stopped (:meth:`Gateway.protect_balances`).

Diagnostics: every frame in and out of a logged-in pile, heartbeats only counted, goes to the frame log
(:mod:`pile_link.frame_log`: each pile's newest 200 in ``pile_frames``, for the console's pile page),
queued and written in batches by a thread of its own; under a database outage it drops the oldest.

Outages: everything that writes to or reads from Postgres or NATS is retried with backoff for as
long as an outage lasts, and says so in the log (:mod:`adapters.servers.outage`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import socket
from collections import Counter, OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from adapters.followers import gateway_leases
from adapters.followers.gateway_leases import LEASE_TTL
from adapters.followers.open_sessions import OpenSessions
from adapters.followers.relay.stream import subject_prefix
from adapters.followers.watchdog import Watchdog
from adapters.postgres.env import create_tables
from adapters.postgres.shards import MAIN
from adapters.servers.outage import Outage
from domain.clock import utcnow
from domain.errors import DomainError, WrongPile
from domain.registry import Pile
from domain.start_rules import card_start_rules
from pile_link.boundary import Refusal, RefusalThrottle, RefusedFrames
from pile_link.commands import COMMAND_SUBJECTS, CommandFollower
from pile_link.delivery import OWED_WAIT, OwedDelivery
from pile_link.frame_log import FrameLog
from pile_link.handlers import routes
from pile_link.link import PileLink
from pile_link.owed import COMMISSIONING_BALANCE_FEN
from pile_link.owed_reads import OwedReads
from pile_link.pile_facts import LoginFacts
from pile_link.write_behind import Coalesced, PilesLoadedFirst, WriteBehind

log = logging.getLogger("chargeledger.pile_link")

HEARTBEAT_TIMEOUT = 30.0  # three missed 10 s heartbeats
LOGIN_DEADLINE = 15.0  # a connection must log in this soon (a pile logs in as soon as it connects)
MAX_PENDING_READINGS = 500_000  # readings kept through a database outage; beyond, the oldest go (see WriteBehind)
TIME_SYNC_INTERVAL = 24 * 3600.0
__all__ = ["COMMAND_SUBJECTS", "Gateway", "serve"]


class Gateway(OwedDelivery):
    def __init__(self, ledger: Any, *, database_url: str, nats_url: str, host: str = "127.0.0.1", port: int = 0,
                 gateway_id: str | None = None, clock: Callable[[], datetime] = utcnow,
                 heartbeat_timeout: float = HEARTBEAT_TIMEOUT, sweep_interval: float = 5.0,
                 login_deadline: float = LOGIN_DEADLINE, max_card_hold_fen: int = 200_00,
                 balance_margin_fen: int = 100, workers: int = 4, watchdog: bool = True,
                 commissioning_balance_fen: int = COMMISSIONING_BALANCE_FEN, owed_wait: float = OWED_WAIT,
                 shard: str = MAIN, stats: Counter[str] | None = None) -> None:
        # shard: whose commands it follows (subjects qualified unless main); stats: shared by a ShardedGateway
        self.ledger = ledger
        self.shard = shard
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
        self.stats: Counter[str] = Counter() if stats is None else stats
        self.readings = WriteBehind(self, "readings", ledger.record_readings, after=self.protect_balances,
                                    refused=self.reading_refused, reachable=self.database_reachable,
                                    max_pending=MAX_PENDING_READINGS)
        self.refusals = RefusalThrottle()
        self.sent: OrderedDict[tuple[Any, ...], None] = OrderedDict()  # stored commands sent, oldest first
        self.session_piles: OrderedDict[UUID, str] = OrderedDict()  # sessions' piles, from their Opened events
        self.pile_changes = WriteBehind(self, "pile_changes",  # its piles read in one query, not kept after
                                        PilesLoadedFirst(ledger.registry, ledger.record_pile_changes),
                                        reachable=self.database_reachable)
        self.offline_sessions = WriteBehind(self, "offline_sessions", self.record_sessions_offline,
                                            reachable=self.database_reachable)
        self.frames = FrameLog(self, database_url)  # diagnostics: each pile's newest frames (console)
        self.timezones: dict[UUID, str] = {}
        self.owed_reads = OwedReads(self)  # what piles logging in are owed, read in batches
        self.login_facts = LoginFacts(ledger.registry, self.station_timezone, self.stats)  # logins read in batches
        # The watchdog may run here, in `chargeledger watchdog`, or both (it is safe to run twice).
        self.watchdog = Watchdog(ledger, database_url) if watchdog else None
        self.open_sessions = self.watchdog.open_sessions if self.watchdog else OpenSessions(ledger, database_url)
        self.index_caught_up = Coalesced(self, self.open_sessions.catch_up)
        self.sweep_outage = Outage("watchdog sweep", "watchdog_sweep", log, self.stats)
        self.lease_outage = Outage("renewing the gateway's lease", "gateway_lease", log, self.stats)
        self.commands = CommandFollower(nats_url, self.gateway_id, self.handle_command_event,
                                        self.deliver_owed_to_all, self.stats, prefix=subject_prefix(shard))
        self.stop_requested: set[str] = set()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lease_table = False

    # ---- lifecycle ------------------------------------------------------------------------------
    async def start(self, listen: bool = True) -> None:
        """``listen=False``: a shard's engine in a :class:`~pile_link.shards.ShardedGateway`, which
        listens for every shard and hands it the piles of its shard at login (:meth:`bind`)."""
        self._loop = asyncio.get_running_loop()
        await self.commands.start()
        if listen:
            self._server = await self._loop.create_server(lambda: PileLink(self, routes), self.host, self.port,
                                                          backlog=4096)
            self.port = self._server.sockets[0].getsockname()[1]
        self._tasks += [asyncio.create_task(self.readings.run(), name="readings"),
                        asyncio.create_task(self.pile_changes.run(), name="pile changes"),
                        asyncio.create_task(self.offline_sessions.run(), name="offline sessions"),
                        asyncio.create_task(self.frames.queue.run(), name="frame log"),
                        asyncio.create_task(self._sweep_forever(), name="sweep"),
                        asyncio.create_task(self.login_facts.preload(), name="login facts")]
        log.info("gateway %s shard %s %s (watchdog %s)", self.gateway_id, self.shard,
                 f"listening on {self.host}:{self.port}" if listen else "serving", "on" if self.watchdog else "off")

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
        for behind in (self.readings, self.pile_changes, self.offline_sessions, self.frames.queue):
            try:
                await behind.flush()
            except Exception:  # noqa: BLE001 - the database is away: what was queued is lost with the process
                log.exception("gateway stopping: %d %s not written", len(behind.pending), behind.name)
        await self.frames.close()
        try:
            await self.run(self.give_up_lease)
        except Exception:  # noqa: BLE001 - the lease expires by itself; a watchdog then finds no pile here
            log.warning("gateway stopping: its lease could not be given up; it expires in %s", LEASE_TTL)
        await self.commands.stop()
        self.login_facts.close()
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
        # in the caller's context: its log fields (pile, session) go with the call (adapters/metrics/logs.py)
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return loop.run_in_executor(self.executor, call)

    def link_accepted(self, link: PileLink) -> None:
        self.connections.add(link)
        self.stats["connections"] += 1

    # ---- links ------------------------------------------------------------------------------------
    async def bind(self, link: PileLink, pile_no: str) -> Gateway:
        """What serves ``link``'s pile logging in: this gateway, its one shard (a ShardedGateway answers
        with the pile's shard's engine: pile_link/shards.py)."""
        return self

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
        # not if the pile has logged in at another gateway meanwhile (a link this one found dead late)
        self.pile_changes.add((link.pile_no, gateway_leases.disconnect_if_held(self.gateway_id, at, reason)))
        self.offline_sessions.add((link.pile_no, at))

    def record_sessions_offline(self, offline: list[tuple[str, datetime]]) -> list[Exception | None]:
        """The open sessions of piles recorded offline: each charging or stopping one gets its offline
        deadline (``ChargingSession.pile_offline``; the others are unchanged), unless the pile is held
        by another gateway now (it moved: that gateway serves its sessions). Run in the pool."""
        self.open_sessions.catch_up()
        return [None if self.open_sessions.of_pile(pile_no) and self.held_elsewhere(pile_no)
                else self.open_sessions.record_pile_offline(pile_no, at) for pile_no, at in offline]

    def held_elsewhere(self, pile_no: str) -> bool:
        pile = self.ledger.registry.get(Pile.create_id(pile_no), Pile, "pile", fresh=True)
        return bool(pile.online and pile.connection and pile.connection.get("gateway") != self.gateway_id)

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
