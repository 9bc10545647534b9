"""Replay the ledger from its stored events alone and check the books.

Given every stored event of every Application in notification order, an :class:`Audit` rebuilds
each wallet and session, re-prices each session with the tariff version it kept, and checks what a
finance auditor needs proved:

========================  =====================================================================
check                     what a difference means
========================  =====================================================================
posting_sets_balance      a wallet event whose postings do not sum to zero
trial_balance             the sum over every account of every wallet is not zero
wallets_equal_live        a wallet rebuilt from its events differs from a snapshot the Wallets
                          Application stored (and loads from) at the same version; or from the
                          wallet the Application loads (snapshot + events), when asked to load it
sessions_reprice          a bill (Settled, Resettled, Abandoned) differs from pricing the
                          session's energy with its tariff version as the Tariffs log holds it;
                          the schedule a session kept differs from that version; a reading put
                          in the wrong tier; a wrong pile difference
sessions_match_wallets    what the wallet captured and charged for a trade differs from its bill
sessions_match_orders     a row of the order view differs from the session (or is missing)
holds_closed              a hold still open although its session is closed (or never placed)
topups_match_payments     a gateway top-up without a paid payment notification of the same
                          amount, wallet and provider (or a paid payment never credited);
                          unavailable on a ledger whose Payments log holds no payment at all
refunds_closed            a refund neither completed nor failed (past the in-flight grace)
========================  =====================================================================

Two ways to read the events, whose results a test proves equal (``tests/test_audit_replay.py``):

* the **reference path** (``fast=False``) decodes each stored event with the Application's own
  mapper and applies it to the real aggregates (``Wallet``, ``ChargingSession``, ``Tariff``);
* the **fast path** (the default) decodes the stored JSON directly and applies the same state
  changes to small mirror records, about ten times cheaper per event.

Pure domain code: rows in, a report out. Reading Postgres is :mod:`adapters.audit.store`'s job.
"""

from __future__ import annotations

import gc
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from domain.pricing import price
from domain.session import ChargingSession
from domain.tariff import TariffSchedule
from domain.wallet import (
    ARREARS,
    AVAILABLE,
    HELD,
    REFUND_PENDING,
    REVENUE_ELECTRICITY,
    REVENUE_SERVICE,
    Wallet,
)

try:  # orjson decodes the stored JSON ~4x faster than the standard library; same result
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the standard library is the fallback
    _loads = json.loads

Row = tuple[Any, int, str, bytes, int]
"""One stored event as the event tables hold it: (originator id, version, topic, state, notification id)."""

CHECKS = (
    "posting_sets_balance", "trial_balance", "wallets_equal_live", "sessions_reprice", "sessions_match_wallets",
    "sessions_match_orders", "totals_match_revenue", "holds_closed", "topups_match_payments", "refunds_closed",
)
GATEWAY_PROVIDERS = ("wechat", "alipay")  # top-ups through these need a verified payment notification
CLOSED_STATES = ("finished", "abandoned", "failed")
REFUND_GRACE = timedelta(days=1)  # a refund younger than this at the end of the replay is in flight
REVENUE_KEYS = ("capture:", "charge:", "rebill-charge:", "rebill-credit:")
METER_READ_TOPIC = "domain.session:ChargingSession.MeterRead"


# ---- the report ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventRef:
    """Where an event involved in a difference is stored."""

    application: str
    notification_id: int
    originator_id: str
    version: int
    event: str

    def __str__(self) -> str:
        return f"{self.application}#{self.notification_id} {self.event} ({self.originator_id} v{self.version})"


@dataclass
class Difference:
    check: str
    message: str
    events: list[EventRef] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "events": [e.__dict__ for e in self.events],
                "details": self.details}


@dataclass
class AuditReport:
    counts: dict[str, Any]
    accounts: dict[str, int]
    period: dict[str, Any]
    totals: dict[str, int]
    checks: dict[str, dict[str, Any]]
    differences: list[Difference]
    tenant: str | None = None

    @property
    def ok(self) -> bool:
        return not self.differences

    @property
    def trial_balance(self) -> int:
        return sum(self.accounts.values())

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tenant": self.tenant, "counts": self.counts, "accounts": self.accounts,
                "trial_balance": self.trial_balance, "period": self.period, "totals": self.totals,
                "checks": self.checks, "differences": [d.as_dict() for d in self.differences]}

    def as_text(self) -> str:
        out = [f"audit replay{' of tenant ' + self.tenant if self.tenant else ''}: "
               + ("no differences" if self.ok else f"{len(self.differences)} difference(s)")]
        out.append("events: " + ", ".join(f"{app} {n}" for app, n in self.counts["events"].items())
                   + f" (total {self.counts['total_events']})")
        out.append(f"wallets {self.counts['wallets']}, sessions {self.counts['sessions']} "
                   f"({', '.join(f'{k} {v}' for k, v in sorted(self.counts['sessions_by_state'].items()))}), "
                   f"posting sets {self.counts['posting_sets']}")
        out.append("accounts (debit +, credit -, fen):")
        for account, amount in sorted(self.accounts.items()):
            out.append(f"  {account:24} {amount:>14}")
        out.append(f"  {'trial balance':24} {self.trial_balance:>14}")
        if self.period.get("from") or self.period.get("to"):
            out.append(f"period {self.period.get('from') or '-'} .. {self.period.get('to') or '-'}: "
                       f"{self.period['posting_sets']} posting sets")
            for account, (debit, credit) in sorted(self.period["movements"].items()):
                out.append(f"  {account:24} debit {debit:>12} credit {credit:>12}")
        out.append("totals: " + ", ".join(f"{k} {v}" for k, v in self.totals.items()))
        out.append("checks:")
        for name, result in self.checks.items():
            out.append(f"  {name:24} {result['status']:12} checked {result['checked']}")
        for d in self.differences:
            out.append(f"DIFFERENCE [{d.check}] {d.message}")
            for e in d.events:
                out.append(f"    {e}")
        return "\n".join(out)


# ---- small decoders shared by both paths ------------------------------------------------------
def as_uuid(value: Any) -> UUID | None:
    """A UUID however it arrived: a UUID, the stored ``{"_type_": "uuid_hex", ...}`` or a string."""
    if value is None or isinstance(value, UUID):
        return value
    if isinstance(value, dict):
        return UUID(value["_data_"])
    return UUID(str(value))


def as_iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return value["_data_"]
    return str(value)


def as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(as_iso(value))


def topic_name(topic: str) -> str:
    """``domain.wallet:Wallet.ToppedUp`` -> ``Wallet.ToppedUp``."""
    return topic.rsplit(":", 1)[-1]


def plain(value: Any) -> Any:
    """Event attributes as the stored JSON holds them (datetimes and UUIDs as strings), to compare."""
    if isinstance(value, dict):
        if "_type_" in value and "_data_" in value and len(value) == 2:
            return plain(value["_data_"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return value.hex
    return value


# ---- mirror records of the fast path --------------------------------------------------------
class WalletMirror:
    __slots__ = ("id", "tenant_id", "driver_id", "balances", "holds", "refunds", "version")

    def __init__(self, wallet_id: UUID, tenant_id: UUID, driver_id: str) -> None:
        self.id, self.tenant_id, self.driver_id = wallet_id, tenant_id, driver_id
        self.balances: dict[str, int] = {}
        self.holds: dict[str, int] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.version = 1


class SessionMirror:
    __slots__ = ("id", "trade_no", "tenant_id", "wallet_id", "hold_fen", "tariff", "timezone", "slots", "state",
                 "readings", "meter_energy", "tier_energy", "anomalies", "bill", "record", "pile_difference",
                 "version")

    def __init__(self, session_id: UUID, a: dict[str, Any]) -> None:
        self.id = session_id
        self.trade_no = a["trade_no"]
        self.tenant_id = as_uuid(a["tenant_id"])
        self.wallet_id = as_uuid(a["wallet_id"])
        self.hold_fen = a["hold_fen"]
        self.tariff = a["tariff"]
        self.timezone = a["timezone"]
        self.slots = tuple(a["tariff"]["schedule"]["slots"])  # the tier of each local half hour
        self.state = "requested"
        self.readings = 0
        self.meter_energy = 0
        self.tier_energy = [0, 0, 0, 0]
        self.anomalies = 0
        self.bill: dict[str, Any] | None = None
        self.record: dict[str, Any] | None = None
        self.pile_difference: int | None = None
        self.version = 1


def wallet_view(w: Any) -> dict[str, Any]:
    """What must agree between a replayed wallet and the live one (real aggregate or mirror)."""
    return {"balances": {k: v for k, v in w.balances.items() if v},
            "holds": dict(w.holds),
            "refunds": {k: {"amount": r["amount"], "provider": r["provider"], "state": r["state"]}
                        for k, r in w.refunds.items()}}


def session_view(s: Any) -> dict[str, Any]:
    return {"trade_no": s.trade_no, "state": s.state, "readings": s.readings, "meter_energy": s.meter_energy,
            "tier_energy": list(s.tier_energy), "anomalies": s.anomalies, "bill": plain(s.bill),
            "pile_difference": s.pile_difference, "hold_fen": s.hold_fen,
            "wallet_id": s.wallet_id.hex if s.wallet_id else None}


# ---- the audit ---------------------------------------------------------------------------------
class Audit:
    """Feed it each Application's stored events in notification order, then ask for the report.

    ``period_to`` stops the replay at events recorded at or after it (balances as of then);
    ``period_from`` only adds the movements of each account between the two to the report.
    """

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
        self.tariffs: dict[UUID, list[dict[str, Any]]] = {}
        self.tariff_schedules: dict[tuple[UUID, int], TariffSchedule] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.payments_seen = False  # any event of the Payments Application replayed
        self.topups: list[tuple[EventRef, UUID, dict[str, Any]]] = []
        self.revenue_by_trade: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.revenue_refs: dict[str, list[EventRef]] = defaultdict(list)
        self.holds_placed: set[str] = set()
        self.refund_requested_at: dict[tuple[UUID, str], tuple[str, EventRef]] = {}
        self.settlement_refs: dict[UUID, list[EventRef]] = defaultdict(list)
        self.wallet_refs: dict[UUID, EventRef] = {}
        self.horizon = ""  # the latest recording time replayed (ISO, UTC)
        self._slot_cache: dict[tuple[str, str], int] = {}
        self._done = 0
        self._to_iso = period_to.astimezone(timezone.utc).isoformat() if period_to else None
        self._from_iso = period_from.astimezone(timezone.utc).isoformat() if period_from else None

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

        Meter readings, most of any ledger's events, are applied inline; every other event goes
        through its handler, shared with the reference path.
        """
        handlers = self._handlers
        loads = _loads
        to_iso = self._to_iso
        sessions = self.sessions
        slot_cache = self._slot_cache
        check_tier = self._check_tier
        count = 0
        readings = 0
        topics = self.topics
        for oid, version, topic, state, nid in rows:
            attrs = loads(state)
            if to_iso is not None and _iso_ge(attrs["timestamp"]["_data_"], to_iso):
                continue
            count += 1
            if topic == METER_READ_TOPIC:
                readings += 1
                s = sessions[oid]
                s.version = version
                s.readings += 1
                tier = attrs["tier"]
                if attrs["anomaly"]:
                    s.anomalies += 1
                else:
                    energy = attrs["energy"]
                    s.tier_energy[tier] += energy - s.meter_energy
                    s.meter_energy = energy
                at = attrs["at"]["_data_"]
                slot = slot_cache.get((s.timezone, at[:16])) if at.endswith("+00:00") else None
                if slot is None or s.slots[slot] != tier:
                    check_tier(s, application, oid, version, attrs, nid)
            else:
                name = topic[topic.index(":") + 1:]
                topics[name] += 1
                handler = handlers.get(name)
                if handler is not None:
                    handler(self, application, oid, version, name, attrs, nid)
            if count % 50_000 == 0:
                self._tick(50_000)
        if readings:
            topics["ChargingSession.MeterRead"] += readings
        self.events[application] += count
        self._tick(count % 50_000)

    def _replay_reference(self, application: str, rows: Iterable[Row]) -> None:
        """Decode with the Application's mapper and mutate the real aggregates."""
        from eventsourcing.persistence import StoredEvent

        mapper = self._mappers.get(application)
        if mapper is None:  # an Application with no custom transcodings: the library's own mapper
            from eventsourcing.application import Application

            mapper = self._mappers[application] = reference_mappers([Application])["Application"]
        aggregates: dict[Any, Any] = self.__dict__.setdefault("_aggregates", {})
        count = 0
        for oid, version, topic, state, nid in rows:
            event = mapper.to_domain_event(StoredEvent(originator_id=oid, originator_version=version,
                                                       topic=topic, state=state))
            stamp = event.timestamp.isoformat()
            if self._to_iso is not None and _iso_ge(stamp, self._to_iso):
                continue
            aggregate = event.mutate(aggregates.get(oid))
            aggregates[oid] = aggregate
            # the state the checks read comes from the real aggregate, not a mirror
            if isinstance(aggregate, Wallet):
                self.wallets[oid] = aggregate
            elif isinstance(aggregate, ChargingSession):
                self.sessions[oid] = aggregate
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

    # ---- event handlers (shared by both paths; the mirrors are skipped on the reference path) --
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
        """Every session event after Opened: the state changes of ChargingSession's event bodies.

        (On the fast path meter readings never get here: ``_replay_fast`` applies them inline.)
        """
        if self.fast:
            s = self.sessions[oid]
            s.version = version
            if name == "ChargingSession.StartAcknowledged":
                s.state = "starting" if a["ok"] else "failed"
            elif name == "ChargingSession.Charging":
                s.state = "charging"
            elif name == "ChargingSession.StopRequested":
                s.state = "stopping"
            elif name == "ChargingSession.Failed":
                s.state = "failed"
            elif name in ("ChargingSession.Settled", "ChargingSession.Resettled"):
                s.state, s.record, s.bill, s.pile_difference = "finished", a["record"], a["bill"], a["pile_difference"]
            elif name == "ChargingSession.Abandoned":
                s.state, s.bill = "abandoned", a["bill"]
        session = self.sessions[oid]
        if name == "ChargingSession.MeterRead":
            self._check_tier(session, app, oid, version, a, nid)
        elif name in ("ChargingSession.Settled", "ChargingSession.Resettled", "ChargingSession.Abandoned"):
            self._stamp(a)
            ref = EventRef(app, nid, str(oid), version, name)
            self.settlement_refs[oid].append(ref)
            self._check_bill(session, name, a, ref)
        else:
            self._stamp(a)

    def _wallet_opened(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self._stamp(a)
        self.wallet_refs[oid] = EventRef(app, nid, str(oid), version, name)
        if self.fast:
            self.wallets[oid] = WalletMirror(oid, as_uuid(a["tenant_id"]), a["driver_id"])

    def _wallet_event(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        stamp = self._stamp(a)
        ref = EventRef(app, nid, str(oid), version, name)
        self.wallet_refs[oid] = ref
        sets = [p for p in (a.get("postings"), a.get("release")) if p]
        in_period = bool(sets) and (self._from_iso is None or _iso_ge(stamp, self._from_iso))
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
        if self.fast:
            w = self.wallets[oid]
            w.version = version
            for postings in sets:
                for account, amount in postings:
                    w.balances[account] = w.balances.get(account, 0) + amount
            if name == "Wallet.HoldPlaced":
                w.holds[a["hold_id"]] = a["postings"][0][1]
            elif name in ("Wallet.Captured", "Wallet.Released"):
                del w.holds[a["hold_id"]]
            elif name == "Wallet.RefundRequested":
                w.refunds[a["refund_id"]] = {"amount": a["amount"], "provider": a["provider"], "state": "requested"}
            elif name == "Wallet.RefundCompleted":
                w.refunds[a["refund_id"]]["state"] = "completed"
            elif name == "Wallet.RefundFailed":
                w.refunds[a["refund_id"]]["state"] = "failed"
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
            revenue = self.revenue_by_trade[trade]
            for account, amount in a.get("postings") or ():
                if account == REVENUE_ELECTRICITY:
                    revenue[0] -= amount
                elif account == REVENUE_SERVICE:
                    revenue[1] -= amount
            self.revenue_refs[trade].append(ref)

    def _payment_created(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self._stamp(a)
        self.payments_seen = True
        self.payments[a["out_trade_no"]] = {
            "wallet_id": as_uuid(a["wallet_id"]), "provider": a["provider"], "amount_fen": a["amount_fen"],
            "paid_fen": None, "transaction_id": None, "oid": oid,
            "refs": [EventRef(app, nid, str(oid), version, name)],
        }
        self._payment_by_oid()[oid] = a["out_trade_no"]

    def _payment_paid(self, app: str, oid: Any, version: int, name: str, a: dict[str, Any], nid: int) -> None:
        self._stamp(a)
        payment = self.payments[self._payment_by_oid()[oid]]
        payment["paid_fen"] = a["amount_fen"]
        payment["transaction_id"] = a.get("transaction_id")
        payment["refs"].append(EventRef(app, nid, str(oid), version, name))

    def _payment_by_oid(self) -> dict[Any, str]:
        return self.__dict__.setdefault("_payment_oids", {})

    _handlers: dict[str, Callable[..., None]] = {}

    # ---- checks done while replaying --------------------------------------------------------
    def _check_tier(self, s: Any, app: str, oid: Any, version: int, a: dict[str, Any], nid: int) -> None:
        """The tier a reading's energy went to must be the one in force at its local time."""
        at = a["at"]
        at_iso = as_iso(at)
        key = (s.timezone, at_iso[:16]) if at_iso.endswith("+00:00") else None
        slot = self._slot_cache.get(key) if key else None  # a UTC minute is in one local half hour
        if slot is None:
            local = as_datetime(at).astimezone(ZoneInfo(s.timezone))
            slot = local.hour * 2 + (1 if local.minute >= 30 else 0)
            if key:
                self._slot_cache[key] = slot
        expected = self._schedule_of(s).slots[slot]
        if a["tier"] != expected:
            self.differences.append(Difference(
                "sessions_reprice", f"session {s.trade_no}: reading at {at_iso} put in tier {a['tier']}, "
                f"the tariff says {expected}", [EventRef(app, nid, str(oid), version, "ChargingSession.MeterRead")]))

    def _schedule_of(self, s: Any) -> TariffSchedule:
        """The schedule of the session's tariff version, parsed once per version."""
        tariff = s.tariff
        key = (tariff["id"], tariff["version"])
        schedule = self.tariff_schedules.get(key)
        if schedule is None:
            schedule = self.tariff_schedules[key] = TariffSchedule.from_dict(plain(tariff["schedule"]))
        return schedule

    def _check_bill(self, s: Any, name: str, a: dict[str, Any], ref: EventRef) -> None:
        tariff = s.tariff
        history = self.tariffs.get(UUID(tariff["id"]))
        kept = tariff["schedule"]  # ints and strings on both paths: compared as stored
        if history is None or not 1 <= tariff["version"] <= len(history):
            self.differences.append(Difference("sessions_reprice", f"session {s.trade_no} names tariff "
                                               f"{tariff['id']} v{tariff['version']}, which the Tariffs log lacks",
                                               [ref]))
            schedule = self._schedule_of(s)
        elif history[tariff["version"] - 1] != kept:
            self.differences.append(Difference("sessions_reprice", f"session {s.trade_no} kept a schedule that "
                                               f"differs from tariff v{tariff['version']}", [ref]))
            schedule = TariffSchedule.from_dict(history[tariff["version"] - 1])
        else:
            schedule = self._schedule_of(s)
        if name == "ChargingSession.Abandoned":
            energy = list(s.tier_energy)  # the mirror/aggregate is at this event: measured energy so far
            expected = price(energy, schedule).as_dict()
        else:
            record = a["record"]
            expected = price(record["tier_energy"], schedule).as_dict()
            difference = record["pile_total_amount"] - expected["total_fen"] * 100
            if a["pile_difference"] != difference:
                self.differences.append(Difference("sessions_reprice", f"session {s.trade_no}: pile difference "
                                                   f"{a['pile_difference']} recorded, {difference} recomputed", [ref]))
        if a["bill"] != expected:
            self.differences.append(Difference(
                "sessions_reprice", f"session {s.trade_no}: bill {_amounts(a['bill'])} recorded, "
                f"{_amounts(expected)} re-priced with tariff v{tariff['version']}", [ref],
                {"recorded": plain(a["bill"]), "repriced": expected}))

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
            return self._report(live_wallet, snapshots, orders, revenue)
        finally:
            if collecting:
                gc.enable()

    def _report(self, live_wallet: Callable[[UUID, int], Any] | None,
                snapshots: Mapping[tuple[Any, int], Any] | None, orders: Mapping[str, Mapping[str, Any]] | None,
                revenue: Mapping[str, int] | None) -> AuditReport:
        checks: dict[str, dict[str, Any]] = {}
        differences = list(self.differences)

        def done(check: str, checked: int, status: str | None = None) -> None:
            found = sum(1 for d in differences if d.check == check)
            checks[check] = {"status": status or ("ok" if not found else "differences"), "checked": checked,
                             "differences": found}

        done("posting_sets_balance", self.posting_sets)
        if sum(self.accounts.values()):
            differences.append(Difference("trial_balance", f"trial balance is {sum(self.accounts.values())} fen, "
                                          "not zero", [], {"accounts": dict(self.accounts)}))
        done("trial_balance", len(self.accounts))

        compared = 0
        for wallet_id, w in self.wallets.items():
            view = wallet_view(w)
            owed = [-view["balances"].get(a, 0) for a in (AVAILABLE, HELD, REFUND_PENDING)]
            if min(owed) < 0 or view["balances"].get(ARREARS, 0) < 0:
                differences.append(Difference("wallets_equal_live", f"wallet {wallet_id} replays to a negative "
                                              "balance", [self.wallet_refs[wallet_id]], view))
            if live_wallet is not None:
                compared += 1
                live = live_wallet(wallet_id, w.version)
                live_view = wallet_view(live) if live is not None else None
                if live_view != view:
                    differences.append(Difference(
                        "wallets_equal_live", f"wallet {wallet_id} replays to {view['balances']} but the Wallets "
                        f"Application has {live_view['balances'] if live_view else 'nothing'} at version {w.version}",
                        [self.wallet_refs[wallet_id]], {"replayed": view, "live": live_view}))
        for (wallet_id, version), snapshot in (snapshots or {}).items():
            replayed = self.captured.get((wallet_id, version))
            if replayed is None:
                continue  # a snapshot past the end of this replay (--to)
            compared += 1
            stored = wallet_view(snapshot)
            if stored != replayed:
                differences.append(Difference(
                    "wallets_equal_live", f"wallet {wallet_id}: its snapshot at version {version} has "
                    f"{stored['balances']}, its events replay to {replayed['balances']}",
                    [self.wallet_refs[wallet_id]], {"replayed": replayed, "snapshot": stored}))
        available = live_wallet is not None or snapshots is not None
        done("wallets_equal_live", compared, None if available else "unavailable")

        done("sessions_reprice", sum(len(v) for v in self.settlement_refs.values()))

        by_trade = {s.trade_no: (sid, s) for sid, s in self.sessions.items()}
        checked = 0
        for trade, (sid, s) in by_trade.items():
            if s.wallet_id is None:
                continue
            checked += 1
            bill = s.bill if s.state in ("finished", "abandoned") else None
            expected = [bill["electricity_fen"], bill["service_fen"]] if bill else [0, 0]
            got = list(self.revenue_by_trade.get(trade, [0, 0]))
            if got != expected:
                differences.append(Difference(
                    "sessions_match_wallets", f"session {trade} ({s.state}) bills electricity {expected[0]} + "
                    f"service {expected[1]} fen; its wallet took {got[0]} + {got[1]}",
                    self.settlement_refs.get(sid, [])[-1:] + self.revenue_refs.get(trade, [])))
        for trade, refs in self.revenue_refs.items():
            if trade not in by_trade:
                differences.append(Difference("sessions_match_wallets", f"revenue posted for trade {trade}, "
                                              "which no session has", refs))
        done("sessions_match_wallets", checked)

        if orders is not None:
            checked = 0
            for trade, (sid, s) in by_trade.items():
                row = orders.get(trade)
                if row is None:
                    differences.append(Difference("sessions_match_orders", f"session {trade} has no order row",
                                                  self.settlement_refs.get(sid, [])[-1:]))
                    continue
                checked += 1
                diffs = _order_differences(s, row)
                if diffs:
                    differences.append(Difference(
                        "sessions_match_orders", f"order {trade} differs from its session: "
                        + ", ".join(f"{k} {o!r} in the order view, {e!r} replayed" for k, (o, e) in diffs.items()),
                        self.settlement_refs.get(sid, [])[-1:], {"fields": {k: list(v) for k, v in diffs.items()}}))
            for trade in orders:
                if trade not in by_trade:
                    differences.append(Difference("sessions_match_orders",
                                                  f"order {trade} has no session in the event store"))
            done("sessions_match_orders", checked)
        else:
            done("sessions_match_orders", 0, "unavailable")

        checked = 0
        for wallet_id, w in self.wallets.items():
            for hold_id, amount in w.holds.items():
                checked += 1
                entry = by_trade.get(hold_id)
                if entry is None or entry[1].state in CLOSED_STATES:
                    differences.append(Difference(
                        "holds_closed", f"hold {hold_id} of {amount} fen is still open on wallet {wallet_id} "
                        f"although its session is {entry[1].state if entry else 'unknown'}",
                        [self.wallet_refs[wallet_id]] + (self.settlement_refs.get(entry[0], []) if entry else [])))
        for trade, (sid, s) in by_trade.items():
            if s.wallet_id is not None and s.hold_fen and trade not in self.holds_placed:
                differences.append(Difference("holds_closed", f"session {trade} names a hold of {s.hold_fen} fen "
                                              "that its wallet never placed", self.settlement_refs.get(sid, [])))
        done("holds_closed", checked + len(by_trade))

        self._check_topups(differences)
        done("topups_match_payments", len(self.topups), None if self.payments_seen else "unavailable")

        checked = 0
        horizon = datetime.fromisoformat(self.horizon) if self.horizon else None
        for wallet_id, w in self.wallets.items():
            for refund_id, refund in w.refunds.items():
                checked += 1
                if refund["state"] == "requested":
                    stamp, ref = self.refund_requested_at[(wallet_id, refund_id)]
                    if horizon is None or horizon - datetime.fromisoformat(stamp) >= self.refund_grace:
                        differences.append(Difference(
                            "refunds_closed", f"refund {refund_id} of {refund['amount']} fen on wallet {wallet_id} "
                            f"requested {stamp} is neither completed nor failed", [ref]))
        done("refunds_closed", checked)

        states = Counter(s.state for s in self.sessions.values())
        billed = [s.bill for s in self.sessions.values() if s.bill and s.state in ("finished", "abandoned")]
        totals = {
            "billed_electricity_fen": sum(b["electricity_fen"] for b in billed),
            "billed_service_fen": sum(b["service_fen"] for b in billed),
            "billed_energy": sum(b["energy"] for b in billed),
            "revenue_electricity_fen": -self.accounts.get(REVENUE_ELECTRICITY, 0),
            "revenue_service_fen": -self.accounts.get(REVENUE_SERVICE, 0),
        }
        if revenue is not None:
            for key in ("electricity_fen", "service_fen", "energy"):
                if revenue.get(key, 0) != totals[f"billed_{key}"]:
                    differences.append(Difference(
                        "totals_match_revenue", f"the revenue view has {key} {revenue.get(key, 0)}, the sessions' "
                        f"bills add up to {totals[f'billed_{key}']}", [], {"view": dict(revenue)}))
            done("totals_match_revenue", len(billed))
        else:
            done("totals_match_revenue", 0, "unavailable")
        return AuditReport(
            counts={"events": dict(self.events), "total_events": sum(self.events.values()),
                    "by_type": dict(sorted(self.topics.items())), "wallets": len(self.wallets),
                    "sessions": len(self.sessions), "sessions_by_state": dict(states),
                    "posting_sets": self.posting_sets, "tariffs": len(self.tariffs),
                    "payments": len(self.payments)},
            accounts={k: v for k, v in sorted(self.accounts.items())},
            period={"from": self._from_iso, "to": self._to_iso, "posting_sets": self.period_posting_sets,
                    "movements": {k: list(v) for k, v in sorted(self.movements.items())}},
            totals=totals, checks={name: checks[name] for name in CHECKS}, differences=differences,
            tenant=str(self.tenant) if self.tenant else None,
        )

    def _check_topups(self, differences: list[Difference]) -> None:
        credited: set[str] = set()
        for ref, wallet_id, t in self.topups:
            if t["provider"] not in GATEWAY_PROVIDERS:
                continue  # operator and cash top-ups are adjustments that need no notification
            if not self.payments_seen:
                continue
            payment = self.payments.get(t["payment_ref"])
            if payment is None or payment["paid_fen"] is None:
                differences.append(Difference(
                    "topups_match_payments", f"top-up {t['key']} of {t['amount']} fen via {t['provider']} has no "
                    f"verified payment notification for {t['payment_ref']!r}",
                    [ref] + (payment["refs"] if payment else [])))
                continue
            credited.add(t["payment_ref"])
            wrong = {k: (v, e) for k, v, e in (
                ("amount_fen", t["amount"], payment["paid_fen"]), ("ordered_fen", t["amount"], payment["amount_fen"]),
                ("wallet", wallet_id, payment["wallet_id"]), ("provider", t["provider"], payment["provider"]),
                ("key", t["key"], f"topup:{t['payment_ref']}")) if v != e}
            if wrong:
                differences.append(Difference(
                    "topups_match_payments", f"top-up {t['key']} differs from payment {t['payment_ref']}: "
                    + ", ".join(f"{k} {v} vs {e}" for k, (v, e) in wrong.items()), [ref] + payment["refs"]))
        for out_trade_no, payment in self.payments.items():
            if payment["paid_fen"] is not None and out_trade_no not in credited:
                differences.append(Difference("topups_match_payments", f"payment {out_trade_no} was paid "
                                              f"({payment['paid_fen']} fen) but never credited to a wallet",
                                              payment["refs"]))


Audit._handlers = {
    "Tariff.Created": Audit._tariff_created,
    "Tariff.Revised": Audit._tariff_revised,
    "ChargingSession.Opened": Audit._session_opened,
    **{f"ChargingSession.{n}": Audit._session_event for n in (
        "StartAcknowledged", "Charging", "MeterRead", "StopRequested", "Failed", "Settled", "Resettled",
        "Abandoned")},
    "Wallet.Opened": Audit._wallet_opened,
    **{f"Wallet.{n}": Audit._wallet_event for n in (
        "ToppedUp", "HoldPlaced", "Captured", "Released", "Charged", "CreditedBack", "RefundRequested",
        "RefundCompleted", "RefundFailed", "Adjusted")},
    "PaymentOrder.Created": Audit._payment_created,
    "PaymentOrder.Paid": Audit._payment_paid,
}


def _iso_ge(a: str, b: str) -> bool:
    """a >= b for two UTC ISO instants (string order breaks on omitted microseconds: parse then)."""
    if len(a) == len(b):
        return a >= b
    return datetime.fromisoformat(a) >= datetime.fromisoformat(b)


def _amounts(bill: Mapping[str, Any]) -> str:
    return f"{bill['electricity_fen']} + {bill['service_fen']} fen"


ORDER_FIELDS = ("electricity_fen", "service_fen", "total_fen", "energy")


def _order_differences(s: Any, row: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields of an order row that differ from the replayed session (only the fields the row has)."""
    bill = s.bill if s.state in ("finished", "abandoned") and s.bill else None
    expected: dict[str, Any] = {"state": s.state}
    if bill is not None:
        expected.update({k: bill[k] for k in ORDER_FIELDS})
    return {k: (row[k], v) for k, v in expected.items() if k in row and row[k] != v}


def reference_mappers(applications: Iterable[type]) -> dict[str, Any]:
    """Each Application's own mapper (transcoder, topics), built in memory without any store."""
    mappers = {}
    for cls in applications:
        app = cls(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        mappers[app.name] = app.mapper
        app.close()
    return mappers
