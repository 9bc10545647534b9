"""The replay: every stored event, in notification order, on mirrors (fast) or on the real aggregates.

The :class:`Audit` collects, while replaying, the state the checks read (wallets, sessions,
roaming charges, tariffs, payments) and the facts they need (posting sets, top-ups, revenue by
trade, payables by roaming charge, the events to name in a difference); :mod:`domain.audit.checks`
turns them into the report.
"""

from __future__ import annotations

import gc
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from domain.audit import checks, roaming
from domain.audit.mirror import (
    METER_READ,
    METER_READ_TOPIC,
    SESSION_CHANGES,
    WALLET_CHANGES,
    SessionMirror,
    WalletMirror,
    meter_read,
    wallet_view,
)
from domain.audit.report import AuditReport, Difference, EventRef
from domain.audit.stored import Row, as_uuid, iso_ge, loads, plain, topic_name
from domain.roaming import RoamingCharge
from domain.session import ChargingSession
from domain.tariff import TariffSchedule
from domain.wallet import REVENUE_ELECTRICITY, REVENUE_SERVICE, Wallet

REFUND_GRACE = timedelta(days=1)  # a refund younger than this at the end of the replay is in flight
REVENUE_KEYS = ("capture:", "charge:", "rebill-charge:", "rebill-credit:")  # <kind>:<trade serial>; a
# roaming charge's keys (capture:roam:<seq>, charge:roam:<seq>) pay a peer, not revenue: domain/audit/roaming.py
Handler = Callable[["Audit", str, Any, int, str, dict[str, Any], int], None]


class Audit:
    """Feed it each Application's stored events in notification order, then ask for the report.

    ``period_to`` stops the replay at events recorded at or after it (balances as of then);
    ``period_from`` only adds the movements of each account between the two to the report.
    """

    _handlers: dict[str, Handler] = {}  # event name -> what the audit records of it (filled below)

    def __init__(self, *, fast: bool = True, period_from: datetime | None = None,
                 period_to: datetime | None = None, tenant: UUID | None = None,
                 mappers: Mapping[str, Any] | None = None, progress: Callable[[int], None] | None = None,
                 progress_every: int = 100_000, refund_grace: timedelta = REFUND_GRACE,
                 snapshot_versions: Mapping[Any, Iterable[int]] | None = None) -> None:
        self.fast = fast
        # the versions at which the Wallets Application stored snapshots: the replayed wallet is
        # captured there, to compare with the snapshot (what live loads start from)
        self._capture = {oid: set(versions) for oid, versions in (snapshot_versions or {}).items()}
        self.captured: dict[tuple[Any, int], dict[str, Any]] = {}
        self.refund_grace = refund_grace
        self.period_from = period_from
        self.period_to = period_to
        self.tenant = tenant
        self._mappers = dict(mappers or {})
        self._progress = progress
        self._progress_every = progress_every
        self.events: Counter[str] = Counter()
        self.topics: Counter[str] = Counter()
        self.accounts: dict[str, int] = defaultdict(int)
        self.movements: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.period_posting_sets = 0
        self.posting_sets = 0
        self.differences: list[Difference] = []
        self.wallets: dict[UUID, Any] = {}
        self.sessions: dict[UUID, Any] = {}
        self.roaming: dict[UUID, Any] = {}  # our drivers' charges on peers' piles (domain/audit/roaming.py)
        self.roaming_refs: dict[UUID, list[EventRef]] = defaultdict(list)
        self.payables: dict[tuple[UUID, str], dict[str, Any]] = {}  # (wallet, roam:<seq>) -> what it paid peers
        self.tariffs: dict[UUID, list[dict[str, Any]]] = {}
        self.tariff_schedules: dict[tuple[UUID, int], TariffSchedule] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.payments_seen = False  # any event of the Payments Application replayed
        self._payment_oids: dict[Any, str] = {}
        self.topups: list[tuple[EventRef, UUID, dict[str, Any]]] = []
        self.revenue_by_trade: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.revenue_refs: dict[str, list[EventRef]] = defaultdict(list)
        self.holds_placed: set[str] = set()
        self.refund_requested_at: dict[tuple[UUID, str], tuple[str, EventRef]] = {}
        self.settlement_refs: dict[UUID, list[EventRef]] = defaultdict(list)
        self.wallet_refs: dict[UUID, EventRef] = {}
        self.horizon = ""  # the latest recording time replayed (ISO, UTC)
        self.slot_cache: dict[tuple[str, str], int] = {}  # (time zone, UTC minute) -> local half hour
        self._aggregates: dict[Any, Any] = {}  # the reference path's real aggregates
        self._done = 0
        self.to_iso = period_to.astimezone(timezone.utc).isoformat() if period_to else None
        self.from_iso = period_from.astimezone(timezone.utc).isoformat() if period_from else None

    # ---- feeding ------------------------------------------------------------------------------
    def replay(self, application: str, rows: Iterable[Row]) -> None:
        """Apply one Application's stored events, in notification order."""
        # The replay builds millions of small objects that live to the end: the cyclic garbage
        # collector would walk them all again and again (a third of the time) and find nothing.
        collecting = gc.isenabled()
        gc.disable()
        try:
            if self.fast:
                self._replay_fast(application, rows)
            else:
                self._replay_reference(application, rows)
        finally:
            if collecting:
                gc.enable()

    def _tick(self, n: int) -> None:
        before = self._done // self._progress_every
        self._done += n
        if self._progress is not None and self._done // self._progress_every != before:
            self._progress(self._done)

    def _replay_fast(self, application: str, rows: Iterable[Row]) -> None:
        """Decode the stored JSON and apply it to the mirrors.

        Meter readings, most of any ledger's events, take a short way here (the change, then the
        tier check only when the cached local half hour disagrees); every other event goes
        through its handler, shared with the reference path.
        """
        handlers = self._handlers
        to_iso = self.to_iso
        sessions = self.sessions
        slot_cache = self.slot_cache
        count = 0
        readings = 0
        topics = self.topics
        for oid, version, topic, state, nid in rows:
            attrs = loads(state)
            if to_iso is not None and iso_ge(attrs["timestamp"]["_data_"], to_iso):
                continue
            count += 1
            if topic == METER_READ_TOPIC:
                readings += 1
                s = sessions[oid]
                meter_read(s, attrs)
                at = attrs["at"]["_data_"]
                slot = slot_cache.get((s.timezone, at[:16])) if at.endswith("+00:00") else None
                if slot is None or s.slots[slot] != attrs["tier"]:
                    checks.check_tier(self, s, application, oid, version, attrs, nid)
            else:
                name = topic[topic.index(":") + 1:]
                topics[name] += 1
                handler = handlers.get(name)
                if handler is not None:
                    handler(self, application, oid, version, name, attrs, nid)
            if count % 50_000 == 0:
                self._tick(50_000)
        if readings:
            topics[METER_READ] += readings
        self.events[application] += count
        self._tick(count % 50_000)

    def _replay_reference(self, application: str, rows: Iterable[Row]) -> None:
        """Decode with the Application's mapper and mutate the real aggregates."""
        from eventsourcing.persistence import StoredEvent

        mapper = self._mappers.get(application)
        if mapper is None:  # an Application with no custom transcodings: the library's own mapper
            from eventsourcing.application import Application

            mapper = self._mappers[application] = reference_mappers([Application])["Application"]
        aggregates = self._aggregates
        count = 0
        for oid, version, topic, state, nid in rows:
            event = mapper.to_domain_event(StoredEvent(originator_id=oid, originator_version=version,
                                                       topic=topic, state=state))
            stamp = event.timestamp.isoformat()
            if self.to_iso is not None and iso_ge(stamp, self.to_iso):
                continue
            aggregate = event.mutate(aggregates.get(oid))
            aggregates[oid] = aggregate
            # the state the checks read comes from the real aggregate, not a mirror
            if isinstance(aggregate, Wallet):
                self.wallets[oid] = aggregate
            elif isinstance(aggregate, ChargingSession):
                self.sessions[oid] = aggregate
            elif isinstance(aggregate, RoamingCharge):
                self.roaming[oid] = aggregate
            attrs = {k: v for k, v in vars(event).items()
                     if k not in ("originator_id", "originator_version", "originator_topic")}
            attrs["timestamp"] = {"_type_": "datetime_iso", "_data_": stamp}
            name = topic_name(topic)
            self.topics[name] += 1
            count += 1
            handler = self._handlers.get(name)
            if handler is not None:
                handler(self, application, oid, version, name, attrs, nid)
        self.events[application] += count
        self._tick(count)

    # ---- what the audit records of each event (both paths; the mirrors only on the fast one) ----
    def _stamp(self, attrs: dict[str, Any]) -> str:
        stamp = attrs["timestamp"]["_data_"]
        if stamp > self.horizon:
            self.horizon = stamp
        return stamp

    def _tariff_created(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self.tariffs[as_uuid(oid)] = [plain(a["schedule"])]

    def _tariff_revised(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self.tariffs[as_uuid(oid)].append(plain(a["schedule"]))

    def _session_opened(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self._stamp(a)
        if self.fast:
            self.sessions[oid] = SessionMirror(oid, a)

    def _session_event(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        """A session event after Opened (on the fast path, meter readings never get here)."""
        session = self.sessions[oid]
        if self.fast:
            SESSION_CHANGES[name](session, a)
        if name == METER_READ:
            checks.check_tier(self, session, app, oid, version, a, nid)
            return
        self._stamp(a)
        if name in ("ChargingSession.Settled", "ChargingSession.Resettled", "ChargingSession.Abandoned"):
            ref = EventRef(app, nid, str(oid), version, name)
            self.settlement_refs[oid].append(ref)
            checks.check_bill(self, session, name, a, ref)

    def _wallet_opened(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self._stamp(a)
        self.wallet_refs[oid] = EventRef(app, nid, str(oid), version, name)
        if self.fast:
            self.wallets[oid] = WalletMirror(oid, a)

    def _wallet_event(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        stamp = self._stamp(a)
        ref = EventRef(app, nid, str(oid), version, name)
        self.wallet_refs[oid] = ref
        self._post(name, stamp, [p for p in (a.get("postings"), a.get("release")) if p], ref)
        if self.fast:
            w = self.wallets[oid]
            w.version = version
            WALLET_CHANGES[name](w, a)
        if version in self._capture.get(oid, ()):
            self.captured[(oid, version)] = wallet_view(self.wallets[oid])
        # facts for the cross-checks
        key = a.get("key", "")
        if name == "Wallet.ToppedUp":
            self.topups.append((ref, oid, {"key": key, "provider": a["provider"], "payment_ref": a["payment_ref"],
                                           "amount": a["postings"][0][1]}))
        elif name == "Wallet.HoldPlaced":
            self.holds_placed.add(a["hold_id"])
        elif name == "Wallet.RefundRequested":
            self.refund_requested_at[(oid, a["refund_id"])] = (stamp, ref)
        if key.startswith(REVENUE_KEYS):
            trade = key.split(":", 1)[1]
            if roaming.is_roaming(trade):
                roaming.payable_posted(self, oid, trade, a, ref)
                return
            revenue = self.revenue_by_trade[trade]
            for account, amount in a.get("postings") or ():
                if account == REVENUE_ELECTRICITY:
                    revenue[0] -= amount
                elif account == REVENUE_SERVICE:
                    revenue[1] -= amount
            self.revenue_refs[trade].append(ref)

    def _post(self, name: str, stamp: str, sets: list[list[Any]], ref: EventRef) -> None:
        """A wallet event's posting sets into the accounts (and the period's movements)."""
        in_period = bool(sets) and (self.from_iso is None or iso_ge(stamp, self.from_iso))
        if in_period:
            self.period_posting_sets += len(sets)
        for postings in sets:
            self.posting_sets += 1
            total = 0
            for account, amount in postings:
                total += amount
                self.accounts[account] += amount
                if in_period:
                    self.movements[account][0 if amount > 0 else 1] += abs(amount)
            if total:
                self.differences.append(Difference("posting_sets_balance",
                                                   f"{name} posting set does not balance: off by {total} fen",
                                                   [ref], {"postings": postings}))

    def _payment_created(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self._stamp(a)
        self.payments_seen = True
        self.payments[a["out_trade_no"]] = {
            "wallet_id": as_uuid(a["wallet_id"]), "provider": a["provider"], "amount_fen": a["amount_fen"],
            "paid_fen": None, "transaction_id": None, "oid": oid,
            "refs": [EventRef(app, nid, str(oid), version, name)],
        }
        self._payment_oids[oid] = a["out_trade_no"]

    def _payment_paid(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self._stamp(a)
        payment = self.payments[self._payment_oids[oid]]
        payment["paid_fen"] = a["amount_fen"]
        payment["transaction_id"] = a.get("transaction_id")
        payment["refs"].append(EventRef(app, nid, str(oid), version, name))

    # ---- the report ------------------------------------------------------------------------------
    def report(self, *, live_wallet: Callable[[UUID, int], Any] | None = None,
               snapshots: Mapping[tuple[Any, int], Any] | None = None,
               orders: Mapping[str, Mapping[str, Any]] | None = None,
               revenue: Mapping[str, int] | None = None) -> AuditReport:
        """Finish the checks.

        ``snapshots`` maps (wallet id, version) to the Wallets Application's stored snapshot there
        (decoded to a Wallet); ``live_wallet(id, version)`` loads a wallet as the Application does
        (slower: every wallet's events decoded again). ``orders`` maps trade serials to order-view
        rows and ``revenue`` is the revenue view's sums (``electricity_fen``, ``service_fen``,
        ``energy``). None where there is nothing to compare with.
        """
        collecting = gc.isenabled()
        gc.disable()  # as in replay: nothing to collect among the replayed objects
        try:
            return checks.report(self, live_wallet, snapshots, orders, revenue)
        finally:
            if collecting:
                gc.enable()


# Which events the audit records, by name: the session and wallet events are those whose changes
# domain/changes.py defines, so a new one is picked up from there.
Audit._handlers = {
    "Tariff.Created": Audit._tariff_created,
    "Tariff.Revised": Audit._tariff_revised,
    "ChargingSession.Opened": Audit._session_opened,
    **{name: Audit._session_event for name in SESSION_CHANGES if name != "ChargingSession.Opened"},
    "Wallet.Opened": Audit._wallet_opened,
    **{name: Audit._wallet_event for name in WALLET_CHANGES if name != "Wallet.Opened"},
    **roaming.HANDLERS,
    "PaymentOrder.Created": Audit._payment_created,
    "PaymentOrder.Paid": Audit._payment_paid,
}


def reference_mappers(applications: Iterable[type]) -> dict[str, Any]:
    """Each Application's own mapper (transcoder, topics), built in memory without any store."""
    mappers = {}
    for cls in applications:
        app = cls(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        mappers[app.name] = app.mapper
        app.close()
    return mappers
