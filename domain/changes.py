"""What each wallet, session and roaming charge event changes, written once for the aggregates and the auditor.

Every function takes the thing to change and the event's attributes: ``(state, a) -> None``.

* The aggregates' ``@event`` bodies (``domain/wallet.py``, ``domain/session.py``) call them with the
  attributes they were given; what only the live aggregate keeps (idempotency outcomes, times,
  deadlines, the last reading, faults) stays in the bodies.
* The auditor's fast replay (``domain/audit/mirror.py``) calls them on small mirror records with
  each stored event's decoded JSON, through the tables ``WALLET``, ``SESSION`` and ``ROAMING``.

The attributes used here are plain values either way (ints, strings, lists of postings, the bill
and the tariff as dicts), so the same code gives the same state on both paths; a new event that
changes the books or a session's state, energy or bill is written here, once, and listed in its
table. ``tests/unit/test_audit_mirror.py`` proves the mirror and the aggregate agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Change = Callable[[Any, Mapping[str, Any]], None]


# ---- a wallet's books: ``balances`` {account: fen}, ``holds``, ``refunds`` ----------------------------
def _post(w: Any, postings: Iterable[list[Any]]) -> None:
    balances = w.balances
    for account, amount in postings:
        balances[account] = balances.get(account, 0) + amount


def wallet_opened(w: Any, a: Mapping[str, Any]) -> None:
    w.balances = {}  # account -> fen, debit > 0 (the driver's money is a credit on available)
    w.holds = {}  # hold id (trade serial) -> fen still held
    w.refunds = {}  # refund id -> {amount, provider, state}
    w.owed_to = "arrears"  # what an uncovered bill is owed on (domain.wallet.ARREARS)


def credit_line_opened(w: Any, a: Mapping[str, Any]) -> None:
    """A partner's account: an uncovered bill is owed on its receivable account, not arrears."""
    w.owed_to = a["account"]


def posted(w: Any, a: Mapping[str, Any]) -> None:
    """An event whose only change is its postings (a top-up, a charge, a credit back, an adjustment)."""
    _post(w, a["postings"])


def hold_placed(w: Any, a: Mapping[str, Any]) -> None:
    w.holds[a["hold_id"]] = a["postings"][0][1]
    _post(w, a["postings"])


def captured(w: Any, a: Mapping[str, Any]) -> None:
    """The bill out of the hold (``postings``), the rest of it back to the driver (``release``)."""
    del w.holds[a["hold_id"]]
    _post(w, a["postings"])
    _post(w, a["release"])


def released(w: Any, a: Mapping[str, Any]) -> None:
    del w.holds[a["hold_id"]]
    _post(w, a["postings"])


def refund_requested(w: Any, a: Mapping[str, Any]) -> None:
    w.refunds[a["refund_id"]] = {"amount": a["amount"], "provider": a["provider"], "state": "requested"}
    _post(w, a["postings"])


def refund_completed(w: Any, a: Mapping[str, Any]) -> None:
    w.refunds[a["refund_id"]]["state"] = "completed"
    _post(w, a["postings"])


def refund_failed(w: Any, a: Mapping[str, Any]) -> None:
    w.refunds[a["refund_id"]]["state"] = "failed"
    _post(w, a["postings"])


WALLET: dict[str, Change] = {
    "Opened": wallet_opened, "CreditLineOpened": credit_line_opened, "ToppedUp": posted, "HoldPlaced": hold_placed, "Captured": captured,
    "Released": released, "Charged": posted, "CreditedBack": posted, "RefundRequested": refund_requested,
    "RefundCompleted": refund_completed, "RefundFailed": refund_failed, "Adjusted": posted,
    "CapturedToPayable": captured, "ChargedToPayable": posted,
}
"""Every Wallet event (``Wallet.<name>`` in its topic) and its change of the books."""


# ---- a session: its state, measured energy and bill ----------------------------------------------------
def session_opened(s: Any, a: Mapping[str, Any]) -> None:
    s.trade_no = a["trade_no"]
    s.hold_fen = a["hold_fen"]
    s.tariff = a["tariff"]  # {"id", "version", "schedule"}: the version the session started with
    s.timezone = a["timezone"]
    s.state = "requested"
    s.readings = 0
    s.meter_energy = 0  # session energy so far from realtime data, 0.0001 kWh
    s.tier_energy = [0, 0, 0, 0]  # measured energy split by the tier in force at each reading
    s.anomalies = 0
    s.bill = None
    s.pile_difference = None  # pile total − platform total, 0.0001 yuan


def start_acknowledged(s: Any, a: Mapping[str, Any]) -> None:
    s.state = "starting" if a["ok"] else "failed"  # ok is false only in events stored before Failed existed


def charging(s: Any, a: Mapping[str, Any]) -> None:
    s.state = "charging"


def meter_read(s: Any, a: Mapping[str, Any]) -> None:
    """A reading below the last one (``anomaly``) is counted and adds no energy."""
    s.readings += 1
    if a["anomaly"]:
        s.anomalies += 1
    else:
        energy = a["energy"]
        s.tier_energy[a["tier"]] += energy - s.meter_energy
        s.meter_energy = energy


def stop_requested(s: Any, a: Mapping[str, Any]) -> None:
    s.state = "stopping"


def failed(s: Any, a: Mapping[str, Any]) -> None:
    s.state = "failed"


def settled(s: Any, a: Mapping[str, Any]) -> None:
    """Settled, and Resettled (a record for a session already closed): priced from the pile's record."""
    s.bill = a["bill"]
    s.pile_difference = a["pile_difference"]
    s.state = "finished"


def abandoned(s: Any, a: Mapping[str, Any]) -> None:
    """Closed without a record: priced from the energy measured."""
    s.bill = a["bill"]
    s.state = "abandoned"


SESSION: dict[str, Change] = {
    "Opened": session_opened, "StartAcknowledged": start_acknowledged, "Charging": charging,
    "MeterRead": meter_read, "StopRequested": stop_requested, "Failed": failed, "Settled": settled,
    "Resettled": settled, "Abandoned": abandoned,
}
"""The ChargingSession events (``ChargingSession.<name>``) that change what the auditor checks.

FaultRecorded, PileOffline and PileOnline change only what the live session keeps (faults,
deadlines), so they have no entry.
"""


# ---- a roaming charge (domain/roaming.py): its state, hold and bill -----------------------------------
def roaming_requested(r: Any, a: Mapping[str, Any]) -> None:
    r.peer = a["peer"]
    r.start_charge_seq = a["start_charge_seq"]
    r.connector_id = a["connector_id"]
    r.station_id = a["station_id"]
    r.driver_id = a["driver_id"]
    r.hold_fen = a["hold_fen"]
    r.state = "requested"
    r.bill = None
    r.disputes = []


def roaming_accepted(r: Any, a: Mapping[str, Any]) -> None:
    r.state = "starting"


def roaming_charging(r: Any, a: Mapping[str, Any]) -> None:
    r.state = "charging"


def roaming_stop_requested(r: Any, a: Mapping[str, Any]) -> None:
    r.state = "stopping"


def roaming_failed(r: Any, a: Mapping[str, Any]) -> None:
    r.state = "failed"


def roaming_settled(r: Any, a: Mapping[str, Any]) -> None:
    """The peer's order accepted: the bill is its amounts (what we owe the peer for the charge)."""
    r.bill = {"energy": a["energy"], "electricity_fen": a["electricity_fen"], "service_fen": a["service_fen"],
              "total_fen": a["electricity_fen"] + a["service_fen"], "start_time": a["start_time"],
              "end_time": a["end_time"], "stop_reason": a["stop_reason"]}
    r.state = "settled"


def roaming_disputed(r: Any, a: Mapping[str, Any]) -> None:
    r.disputes = [*r.disputes, {"at": a["at"], "reason": a["reason"], "order": dict(a["order"])}]


ROAMING: dict[str, Change] = {
    "Requested": roaming_requested, "Accepted": roaming_accepted, "Charging": roaming_charging,
    "StopRequested": roaming_stop_requested, "Failed": roaming_failed, "Settled": roaming_settled,
    "OrderDisputed": roaming_disputed,
}
"""Every RoamingCharge event (``RoamingCharge.<name>``) and its change of what the auditor checks."""
