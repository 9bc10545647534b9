"""The simulated world: one in-memory store, the platform's processes on it, and the simulated clock.

The store is what survives a crash: the Applications' POPO recorders (shared by every process, as
every process shares one Postgres), the driver API's start requests (written in the start's own
transaction, :class:`StartRow`) and the watchdog's tables (follow-ups, orphan-hold checks, the open
sessions it follows, its tracking positions). A :class:`Process` is one platform process (an API
worker, the gateway, the watchdog) with its own :class:`~domain.ledger.Ledger` and so its own caches;
a crash throws the process away and starts a new one on the same store.

Every commit a process makes passes two hooks: before it (where another process may commit first on
the same wallet: a race the version check must catch) and after it (where the process may die).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from adapters.postgres.recorder import AlongsideConflict
from domain.ledger import Ledger
from domain.tariff import TIERS

POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
START = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc)  # 08:00 in the station's time zone
PILES = ("32010600019001", "32010600019002")
GUNS = (1, 2)
DRIVERS = ("wx:app:alice", "wx:app:bob", "wx:app:carol")
# Prices with odd digits so that rounding matters, and tiers that change every half hour so that
# sessions cross tier boundaries (0.00001 yuan/kWh).
PRICES = {"sharp": {"electricity": 123457, "service": 45679}, "peak": {"electricity": 98765, "service": 33333},
          "flat": {"electricity": 71111, "service": 29999}, "valley": {"electricity": 30303, "service": 10101}}
SLOTS = [(i * 3) % 4 for i in range(48)]


class Crash(BaseException):
    """A process died right after a commit. Not an Exception: no handler in the platform catches it."""


@dataclass
class StartRow:
    """The driver API's start request row (its ``driver_start_requests``), written in the start's
    transaction by :func:`domain.applications.save_together` as an ``InMemoryRow``."""

    table: dict[tuple[str, str], tuple[str, str, int]]
    written: list[tuple[str, str, str]]
    driver_id: str
    key: str
    request_hash: str
    trade_no: str
    hold_fen: int

    def check(self) -> None:
        if (self.driver_id, self.key) in self.table:
            raise AlongsideConflict(f"start request {self.key} already written")

    def write(self) -> None:
        self.table[(self.driver_id, self.key)] = (self.request_hash, self.trade_no, self.hold_fen)
        self.written.append((self.driver_id, self.key, self.trade_no))


class MemoryStartRequests:
    """``adapters.api.driver.sessions.StartRequests`` on the store: find a key's start, record one with the start."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def find(self, tenant_id: UUID, driver_id: str, key: str, request_hash: str,
             now: datetime) -> tuple[str, int] | None:
        from domain.errors import IdempotencyConflict

        found = self.store.start_requests.get((driver_id, key))
        if found is None:
            return None
        if found[0] != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used for another start request", key=key)
        return found[1], found[2]

    def record(self, tenant_id: UUID, driver_id: str, key: str, request_hash: str, hold_fen: int,
               now: datetime) -> Callable[[str], list[StartRow]]:
        return lambda trade_no: [StartRow(self.store.start_requests, self.store.start_rows, driver_id, key,
                                          request_hash, trade_no, hold_fen)]


@dataclass
class Store:
    """What outlives any process."""

    recorders: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # app name -> (events, snapshots)
    start_requests: dict[tuple[str, str], tuple[str, str, int]] = field(default_factory=dict)
    start_rows: list[tuple[str, str, str]] = field(default_factory=list)  # (driver, key, trade_no) ever written
    positions: dict[str, int] = field(default_factory=dict)  # follower -> last notification id read
    open_sessions: dict[str, None] = field(default_factory=dict)  # trade_no, in the order they opened
    followups: dict[str, tuple[str, UUID, str, dict[str, Any], datetime]] = field(default_factory=dict)
    orphan_checks: dict[str, tuple[UUID, datetime]] = field(default_factory=dict)


class Process:
    """One platform process: its own Ledger (caches) on the store's recorders."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.generation = 0
        self.ledger = self._start()

    def _start(self) -> Ledger:
        ledger = Ledger(POPO, serials=self.world.serials)
        for app in ledger.applications:
            kept = self.world.store.recorders.get(app.name)
            if kept is None:
                self.world.store.recorders[app.name] = (app.recorder, app.snapshots and app.snapshots.recorder)
            else:
                _reattach(app, *kept)
            _hook(app, self)
        return ledger

    def restart(self) -> None:
        """What a crash leaves: a new process on the same store, with nothing in memory."""
        self.generation += 1
        self.ledger = self._start()


def _reattach(app: Any, recorder: Any, snapshot_recorder: Any) -> None:
    app.recorder = recorder
    app.events = app.factory.event_store(mapper=app.mapper, recorder=recorder)
    if app.snapshots is not None:
        app.snapshots = app.factory.event_store(mapper=app.mapper, recorder=snapshot_recorder)
    app._repository = app.construct_repository()
    app._notification_log = app.construct_notification_log()


def _hook(app: Any, process: Process) -> None:
    collect, after_record = app.collect, app.after_record

    def collect_hooked(aggregates: Any) -> Any:
        processing_event = collect(aggregates)
        if processing_event.events:
            process.world.before_commit(process)
        return processing_event

    def after_record_hooked(processing_event: Any, recordings: Any) -> None:
        after_record(processing_event, recordings)
        if recordings:
            process.world.after_commit(process)

    app.collect, app.after_record = collect_hooked, after_record_hooked


class World:
    """The store, the processes, the clock, and what the schedule has armed for the current step."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.serials = random.Random(seed ^ 0x5EED)
        self.now = START
        self.store = Store()
        self.faults: Counter[str] = Counter()
        self.trace: list[str] = []
        self.crash_after: int | None = None  # die after this many commits of the current step
        self.commits = 0
        self.interleave: Callable[[], None] | None = None  # another process's command, before the next commit
        self.hooks_on = True
        self.processes = {name: Process(self, name) for name in ("api-1", "api-2", "gateway", "watchdog")}
        self.setup = self.processes["api-1"].ledger
        self.tenant_id, self.tariff_id = self._registry()

    def _registry(self) -> tuple[UUID, UUID]:
        ledger = self.setup
        self.hooks_on = False
        tenant = ledger.create_tenant("Sim Operator", "sim")
        station = ledger.create_station(tenant, "Sim Station", "1 Sim Road", 31.2, 121.5, "sim")
        for pile_no in PILES:
            ledger.register_pile(station, pile_no, "DC", len(GUNS), "sim")
        tariff = ledger.create_tariff(tenant, "sim", PRICES, SLOTS, "sim")
        ledger.assign_tariff(tariff, "sim", station_id=station)
        for driver in DRIVERS:
            ledger.open_wallet(tenant, driver, "sim")
        self.hooks_on = True
        return tenant, tariff

    def process(self, name: str) -> Process:
        return self.processes[name]

    def ledger(self, name: str) -> Ledger:
        return self.processes[name].ledger

    def log(self, line: str) -> None:
        self.trace.append(line)

    # ---- the clock ---------------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # ---- the commit hooks --------------------------------------------------------------------------
    def before_commit(self, process: Process) -> None:
        if not self.hooks_on or self.interleave is None:
            return
        command, self.interleave = self.interleave, None
        self.hooks_on = False
        try:
            command()
        finally:
            self.hooks_on = True

    def after_commit(self, process: Process) -> None:
        if not self.hooks_on:
            return
        self.commits += 1
        if self.crash_after is not None and self.commits >= self.crash_after:
            self.crash_after = None
            raise Crash(process.name)

    def arm(self, crash_after: int | None) -> None:
        """Before a step: die after ``crash_after`` commits (None: not this step)."""
        self.commits = 0
        self.crash_after = crash_after
        self.interleave = None


def tier_prices() -> list[tuple[int, int]]:
    return [(PRICES[t]["electricity"], PRICES[t]["service"]) for t in TIERS]
