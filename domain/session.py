"""A charging session, keyed by its 32-digit YKC trade serial (交易流水号).

States::

    requested ──ack ok──▶ starting ──charging──▶ charging ──stop──▶ stopping ──record──▶ finished
        │ └─────────────────charging──────────────▲    └──────────record────────────────────▲
        └─ack fail / start deadline──▶ failed          record deadline / offline deadline ─▶ abandoned

Each state that waits on a pile carries a deadline written in the event that entered it (the 90 s
start deadline, the transaction-record deadline), so a watchdog can enforce them after any restart.
A charging or stopping session whose pile the link recorded offline (``PileOffline``) waits for
the pile at most ``OFFLINE_TIMEOUT``: the deadline is written in that event, and the pile showing
the session again (a charging report or a reading: ``PileOnline``) lifts it, or re-arms the record
deadline of a session waiting for its record.
The platform prices the session from the per-tier energy of the pile's transaction record with the
schedule the session started with; the pile's own amounts are kept beside the bill with the
difference. A record arriving for a session that was abandoned, force-closed or failed (a start
whose reply was lost but that charged all the same) re-prices it
(``Resettled``); the same record delivered again changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from eventsourcing.domain import Aggregate, event

from domain import changes
from domain.aggregate import shallow_clone
from domain.errors import InvalidTransition
from domain.ids import derived_id
from domain.pricing import Bill, price
from domain.tariff import TIERS, TariffSchedule
from domain.text import REASON, checked

START_TIMEOUT = timedelta(seconds=90)  # YKC spec §13.3
RECORD_TIMEOUT = timedelta(minutes=10)  # the pile retries 0x3B for up to ~5 min (P20); we wait twice that
# A pile that drops its link while charging goes on charging and buffers its record (the protocol's
# offline mode); a 4G link usually returns within minutes. After 30 min without the pile the session is
# abandoned and priced from the last reading (the hold is freed for the driver); a record that comes
# later re-prices it (Resettled). 30 min bounds how long a driver's money waits on a silent pile
# while outlasting ordinary link drops and gateway restarts many times over.
OFFLINE_TIMEOUT = timedelta(minutes=30)

TRADE_NO = re.compile(r"^\d{32}$")
# Parsed once per tariff version per process, beside the dict it was parsed from: a session
# holding that very dict (every reading of a cached session) is answered without comparing.
_SCHEDULES: dict[tuple[str, int], tuple[TariffSchedule, dict[str, Any]]] = {}
OPEN_STATES = ("requested", "starting", "charging", "stopping")


def make_trade_no(pile_no: str, gun_no: int, local_time: datetime, sequence: int) -> str:
    """pile (14) + gun (2) + yyMMddHHmmss (12) + sequence (4), as YKC composes it."""
    return f"{pile_no}{gun_no:02d}{local_time:%y%m%d%H%M%S}{sequence % 10000:04d}"


@dataclass(frozen=True)
class SettlementRecord:
    """What a pile reports at the end of a session (the YKC 0x3B frame, protocol-agnostic)."""

    tier_energy: tuple[int, int, int, int]  # 0.0001 kWh, sharp/peak/flat/valley
    pile_tier_amounts: tuple[int, int, int, int]  # 0.0001 yuan, as the pile computed
    pile_total_amount: int  # 0.0001 yuan
    pile_total_energy: int
    meter_start: int
    meter_end: int
    started_at: datetime
    ended_at: datetime
    stop_reason: int
    vin: str = ""
    source: str = "ykc:0x3B"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tier_energy"] = list(self.tier_energy)
        d["pile_tier_amounts"] = list(self.pile_tier_amounts)
        return d


@lru_cache(maxsize=65_536)
def _session_id(trade_no: str) -> UUID:
    """The aggregate id of a session, a name-based uuid: hashed once per trade_no (every frame asks for it)."""
    return derived_id("session", trade_no)


class ChargingSession(Aggregate):
    # Added after sessions were first stored: class defaults for snapshots taken before them.
    offline_since: datetime | None = None  # when the pile link recorded the pile offline, while open
    record_deadline: datetime | None = None  # the record deadline of the stop (StopRequested)

    @staticmethod
    def create_id(trade_no: str) -> UUID:
        return _session_id(trade_no)

    @event("Opened")
    def __init__(self, trade_no: str, tenant_id: UUID, station_id: UUID, pile_no: str, gun_no: int,
                 wallet_id: UUID | None, hold_fen: int, tariff: dict[str, Any], timezone: str,
                 origin: str, opened_at: datetime, start_deadline: datetime | None, author: str) -> None:
        self.tenant_id = tenant_id
        self.station_id = station_id
        self.pile_no = pile_no
        self.gun_no = gun_no
        self.wallet_id = wallet_id
        self.origin = origin
        # trade_no, hold_fen, tariff, timezone, then the state, energy and bill: domain/changes.py
        changes.session_opened(self, {"trade_no": trade_no, "hold_fen": hold_fen, "tariff": tariff,
                                      "timezone": timezone})
        self.opened_at = opened_at
        self.deadline = start_deadline
        self.started_at: datetime | None = None
        self.stop_requested_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.reason = ""
        self.last_reading: dict[str, Any] | None = None
        self.faults: list[dict[str, Any]] = []
        self.record: dict[str, Any] | None = None

    @classmethod
    def open(cls, *, trade_no: str, tenant_id: UUID, station_id: UUID, pile_no: str, gun_no: int,
             wallet_id: UUID | None, hold_fen: int, tariff_id: UUID, tariff_version: int,
             schedule: TariffSchedule, timezone: str, origin: str, at: datetime, author: str) -> ChargingSession:
        if not TRADE_NO.match(trade_no):
            raise InvalidTransition(f"a trade serial is 32 digits, got {trade_no!r}")
        deadline = at + START_TIMEOUT if origin != "offline" else None
        return cls(trade_no=trade_no, tenant_id=tenant_id, station_id=station_id, pile_no=pile_no,
                   gun_no=gun_no, wallet_id=wallet_id, hold_fen=hold_fen,
                   tariff={"id": str(tariff_id), "version": tariff_version, "schedule": schedule.as_dict()},
                   timezone=timezone, origin=origin, opened_at=at, start_deadline=deadline, author=author)

    def __deepcopy__(self, memo: dict[int, Any]) -> ChargingSession:
        """The repository hands commands a deep copy of the cached session; copy only what commands
        mutate in place (the tier counters, the pending events). Every other attribute is immutable
        or only ever rebound, so sharing it is safe, and it makes a cached load ~10x cheaper."""
        clone = shallow_clone(self)
        clone.tier_energy = list(self.tier_energy)
        clone._pending_events = list(self._pending_events)
        return clone

    # ---- read side -------------------------------------------------------------------------
    @property
    def schedule(self) -> TariffSchedule:
        key = (self.tariff["id"], self.tariff["version"])
        source = self.tariff["schedule"]
        parsed = _SCHEDULES.get(key)
        if parsed is None or (parsed[1] is not source and parsed[1] != source):
            parsed = _SCHEDULES[key] = (TariffSchedule.from_dict(source), source)
        return parsed[0]

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def measured_bill(self) -> Bill:
        """The bill the measured energy so far comes to (live amount, force-close, record overdue)."""
        return price(self.tier_energy, self.schedule)

    def _require(self, *states: str, action: str) -> None:
        if self.state not in states:
            raise InvalidTransition(f"cannot {action} a session that is {self.state}",
                                    trade_no=self.trade_no, state=self.state)

    # ---- pile-driven transitions -----------------------------------------------------------
    def acknowledge_start(self, at: datetime, ok: bool, reason: str = "") -> None:
        if self.state != "requested":
            return  # a late or repeated 0x33 after the session moved on says nothing new
        if ok:
            self._start_acknowledged(at=at, ok=True, reason="")
        else:  # one event for every failure, so the wallet policy releases the hold on exactly one name
            self._failed(at=at, reason=reason or "start refused by pile", author="pile")

    @event("StartAcknowledged")
    def _start_acknowledged(self, at: datetime, ok: bool, reason: str) -> None:
        changes.start_acknowledged(self, {"ok": ok})
        if not ok:  # a refusal stored before refusals were recorded as Failed
            self._close(at, reason or "start refused by pile")

    def mark_charging(self, at: datetime) -> None:
        """The pile reports the session charging: it started, or (after the pile was offline) it is back."""
        if self.state in ("requested", "starting"):
            self._charging(at=at)
        else:
            self.pile_online(at)

    @event("Charging")
    def _charging(self, at: datetime) -> None:
        changes.charging(self, {})
        self.started_at = at
        self.deadline = None

    def record_reading(self, at: datetime, energy: int, **measurements: Any) -> None:
        """A realtime meter reading: ``energy`` is the session's energy so far (0.0001 kWh).

        A reading below the last one is kept but flagged, and adds no energy (meters restart,
        frames arrive out of order); energy is never made up.
        """
        self._require("starting", "charging", "stopping", action="record a meter reading on")
        self.pile_online(at)
        anomaly = "energy went backwards" if energy < self.meter_energy else ""
        local = at.astimezone(ZoneInfo(self.timezone))
        tier = self.schedule.tier_at(local)
        self._meter_read(at=at, energy=energy, tier=tier, anomaly=anomaly, measurements=measurements)

    @event("MeterRead")
    def _meter_read(self, at: datetime, energy: int, tier: int, anomaly: str, measurements: dict[str, Any]) -> None:
        changes.meter_read(self, {"energy": energy, "tier": tier, "anomaly": anomaly})
        self.last_reading = {"at": at.isoformat(), "energy": energy, **measurements}

    def record_fault(self, at: datetime, source: str, code: str, detail: str) -> None:
        """A fault the pile reported during this session (a fault bit, a BMS or charger abort)."""
        self._fault_recorded(at=at, source=source, code=code, detail=detail)

    @event("FaultRecorded")
    def _fault_recorded(self, at: datetime, source: str, code: str, detail: str) -> None:
        self.faults = [*self.faults, {"at": at, "source": source, "code": code}]

    # ---- platform-driven transitions -------------------------------------------------------
    def request_stop(self, at: datetime, reason: str, author: str) -> None:
        reason = checked(reason, "stop reason", REASON)
        if self.state == "stopping":
            return
        self._require("requested", "starting", "charging", action="stop")
        self._stop_requested(at=at, reason=reason, author=author, record_deadline=at + RECORD_TIMEOUT)

    @event("StopRequested")
    def _stop_requested(self, at: datetime, reason: str, author: str, record_deadline: datetime) -> None:
        changes.stop_requested(self, {})
        self.stop_requested_at = at
        self.record_deadline = record_deadline
        # a pile that is offline cannot send its record: it keeps the time it has to come back
        self.deadline = record_deadline if self.offline_since is None else max(record_deadline, self.deadline)
        self.reason = reason

    # ---- the pile's link ---------------------------------------------------------------------
    def pile_offline(self, at: datetime) -> None:
        """The pile link recorded the session's pile offline at ``at``. A session the pile was
        charging (or should stop) now waits for it at most ``OFFLINE_TIMEOUT``; a reading taken
        after ``at`` shows the pile is already back, and the report changes nothing."""
        if self.state not in ("charging", "stopping") or self.offline_since is not None:
            return
        if self.last_reading is not None and _parse(self.last_reading["at"]) > at:
            return
        deadline = at + OFFLINE_TIMEOUT
        if self.state == "stopping":
            deadline = max(deadline, self.deadline or deadline)
        self._pile_went_offline(at=at, deadline=deadline)

    @event("PileOffline")
    def _pile_went_offline(self, at: datetime, deadline: datetime) -> None:
        self.offline_since = at
        self.deadline = deadline

    def pile_online(self, at: datetime) -> None:
        """The pile shows the session again (reports it charging, or a reading of it), after it was
        recorded offline: a charging session has no deadline again; one waiting for its record
        gets a record deadline from now (its stop is sent again when the pile logs in)."""
        if self.offline_since is None or not self.is_open or at < self.offline_since:
            return
        deadline = None
        if self.state == "stopping":
            deadline = max(at + RECORD_TIMEOUT, self.record_deadline or at)
        self._pile_came_back(at=at, deadline=deadline)

    @event("PileOnline")
    def _pile_came_back(self, at: datetime, deadline: datetime | None) -> None:
        self.offline_since = None
        self.deadline = deadline

    def fail(self, at: datetime, reason: str, author: str) -> None:
        self._require("requested", "starting", action="fail")
        self._failed(at=at, reason=reason, author=author)

    @event("Failed")
    def _failed(self, at: datetime, reason: str, author: str) -> None:
        changes.failed(self, {})
        self._close(at, reason)

    def settle(self, record: SettlementRecord, at: datetime) -> bool:
        """Price the pile's record. Returns False if this exact record was already applied."""
        rec = record.as_dict()
        if self.record is not None:
            if self.record == _comparable(rec):
                return False
            raise InvalidTransition("a different transaction record was already settled for this session",
                                    trade_no=self.trade_no)
        bill = price(record.tier_energy, self.schedule)
        difference = record.pile_total_amount - bill.total_fen * 100
        if self.state in ("abandoned", "failed"):
            self._resettled(at=at, record=rec, bill=bill.as_dict(), previous_bill=self.bill,
                            pile_difference=difference)
        else:
            self._settled(at=at, record=rec, bill=bill.as_dict(), pile_difference=difference)
        return True

    @event("Settled")
    def _settled(self, at: datetime, record: dict[str, Any], bill: dict[str, Any], pile_difference: int) -> None:
        if self.started_at is None:
            self.started_at = _parse(record["started_at"])
        self.record = _comparable(record)
        changes.settled(self, {"bill": bill, "pile_difference": pile_difference})
        self._close(at, self.reason)

    @event("Resettled")
    def _resettled(self, at: datetime, record: dict[str, Any], bill: dict[str, Any],
                   previous_bill: dict[str, Any] | None, pile_difference: int) -> None:
        self.record = _comparable(record)
        changes.settled(self, {"bill": bill, "pile_difference": pile_difference})
        self._close(at, self.reason)

    def force_close(self, at: datetime, reason: str, author: str) -> None:
        """An operator closes a stuck session; it still prices from the energy measured."""
        self._require(*OPEN_STATES, action="force-close")
        reason = checked(reason, "force-close reason", REASON)
        if not reason:
            raise InvalidTransition("a force-close needs a reason")
        self._abandon(at=at, reason=reason, author=author)

    def expire(self, now: datetime) -> bool:
        """Apply the deadline of the current state if it has passed. Returns True if it did."""
        if self.deadline is None or now < self.deadline or not self.is_open:
            return False
        if self.state in ("requested", "starting"):
            self._failed(at=now, reason="start deadline passed: no charging report within 90 s", author="watchdog")
        elif self.offline_since is not None:
            self._abandon(at=now, reason=f"pile offline since {self.offline_since.isoformat()}: no record",
                          author="watchdog")
        else:
            self._abandon(at=now, reason="transaction record overdue", author="watchdog")
        return True

    def _abandon(self, at: datetime, reason: str, author: str) -> None:
        if self.meter_energy == 0 and self.state in ("requested", "starting"):
            self._failed(at=at, reason=reason, author=author)
        else:
            self._abandoned(at=at, reason=reason, author=author, bill=self.measured_bill().as_dict())

    @event("Abandoned")
    def _abandoned(self, at: datetime, reason: str, author: str, bill: dict[str, Any]) -> None:
        changes.abandoned(self, {"bill": bill})
        self._close(at, reason)

    def _close(self, at: datetime, reason: str) -> None:
        """What every closing event's body adds to its change of state (domain/changes.py): when, why."""
        self.closed_at = at
        self.deadline = None
        self.reason = reason


def _parse(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    """Records compare equal whether their datetimes are objects or ISO strings (after a reload)."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in record.items()}


__all__ = ["ChargingSession", "SettlementRecord", "make_trade_no", "TIERS", "START_TIMEOUT", "RECORD_TIMEOUT",
           "OFFLINE_TIMEOUT"]
