"""A roaming charge: our driver charges on another operator's (an infrastructure peer's) pile over T/CEC.

We are the customer platform. We hold the driver's money when we ask the peer to start
(``query_start_charge``), and pay the peer's order (``notification_charge_order_info``) from it: the
bill goes to ``payable:<peer>`` (what we owe the peer), never to our revenue. The charge is keyed by
the StartChargeSeq we made (27 letters or digits) with the tenant and the peer::

    requested ──accepted──▶ starting ──charging──▶ charging ──stop──▶ stopping ──order──▶ settled
        │  └──────────────────charging───────────────▲   └────────────order──────────────▲
        ├──stop──▶ stopping   (an order may come without a start result: settled from requested or starting)
        └──refused / never confirmed──▶ failed (also from starting, or stopping before it charged)

A peer's order for a charge we had failed (the start was confirmed after all, e.g. after our
timeout) settles it: the driver charged, the peer bills us; the hold was released, so the whole bill
is charged beyond it (``Settled.from_hold`` is then false). A second order that differs from the
settled one is recorded (``OrderDisputed``) and changes nothing else, and so is a first order far above
the driver's hold (:func:`beyond_the_hold`): the charge stays open with its hold for a corrected order.

What each event changes in the state the auditor reads is written once, in :mod:`domain.changes`
(``ROAMING``); what it means for the wallet is :func:`wallet_commands` (the use case saves the charge
and the wallet together: :mod:`domain.use_cases.roaming`).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import changes
from domain.errors import InvalidAmount, InvalidTransition
from domain.ids import derived_id
from domain.money import energy_to_kwh_str, fen_to_yuan_str
from domain.settlement import WalletCommand
from domain.text import NAME, REASON, checked
from domain.wallet import PEER

START_CHARGE_SEQ = re.compile(r"^[0-9A-Za-z]{27}$")
HOLD = "roam:"  # a roaming charge's hold id: roam:<StartChargeSeq>
OPEN_STATES = ("requested", "starting", "charging", "stopping")
DISPUTE_MONEY, DISPUTE_ENERGY, DISPUTE_TOTALS = 2, 3, 4  # T/CEC's order confirmation failure reasons
RUN_ON_FEN = 5_00  # what a peer's pile stopped at the hold may still run on: 5 yuan, or a tenth of the hold if more


def beyond_the_hold(hold_fen: int, total_fen: int) -> bool:
    """A bill a peer may not send for this hold: above it by more than a pile stopped at it runs on
    (:data:`RUN_ON_FEN`, or a tenth of the hold). We stop a roaming charge when the peer's own status says
    it reached the hold less 1 yuan, as the gateway stops our piles; a bill far above means the peer did
    not stop when told or bills what was not charged."""
    return total_fen > hold_fen + max(RUN_ON_FEN, hold_fen // 10)


def hold_id(start_charge_seq: str) -> str:
    return f"{HOLD}{start_charge_seq}"


def order_strings(energy: int, electricity_fen: int, service_fen: int) -> dict[str, str]:
    """An order's amounts as T/CEC writes them (``TotalPower`` kWh, money in yuan), exactly."""
    return {"TotalPower": energy_to_kwh_str(energy), "TotalElecMoney": fen_to_yuan_str(electricity_fen),
            "TotalSeviceMoney": fen_to_yuan_str(service_fen),
            "TotalMoney": fen_to_yuan_str(electricity_fen + service_fen)}


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidAmount(f"{what} must be an integer >= 0, got {value!r}")
    return value


def _instant(value: Any, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidTransition(f"{what} must be a time with its zone, got {value!r}")
    return value


class RoamingCharge(Aggregate):
    @staticmethod
    def create_id(tenant_id: UUID, peer: str, start_charge_seq: str) -> UUID:
        return derived_id("roaming", tenant_id, peer, start_charge_seq)

    @event("Requested")
    def __init__(self, tenant_id: UUID, peer: str, start_charge_seq: str, connector_id: str, station_id: str,
                 wallet_id: UUID, driver_id: str, hold_fen: int, at: datetime, author: str) -> None:
        self.tenant_id = tenant_id
        self.wallet_id = wallet_id
        # peer, seq, connector, station, driver, hold, then the state, bill, disputes: domain/changes.py
        changes.roaming_requested(self, {"peer": peer, "start_charge_seq": start_charge_seq,
                                         "connector_id": connector_id, "station_id": station_id,
                                         "driver_id": driver_id, "hold_fen": hold_fen})
        self.requested_at = at
        self.author = author
        self.start_time: datetime | None = None
        self.closed_at: datetime | None = None
        self.reason = ""

    @classmethod
    def request(cls, *, tenant_id: UUID, peer: str, start_charge_seq: str, connector_id: str, station_id: str,
                wallet_id: UUID, driver_id: str, hold_fen: int, at: datetime, author: str) -> RoamingCharge:
        """A new charge in 'requested', its arguments checked (nothing is made of bad input)."""
        if not isinstance(peer, str) or not PEER.match(peer):
            raise InvalidTransition(f"a peer is a T/CEC OperatorID (9 letters or digits), got {peer!r}")
        if not isinstance(start_charge_seq, str) or not START_CHARGE_SEQ.match(start_charge_seq):
            raise InvalidTransition(f"a StartChargeSeq is 27 letters or digits, got {start_charge_seq!r}")
        if isinstance(hold_fen, bool) or not isinstance(hold_fen, int) or hold_fen <= 0:
            raise InvalidAmount(f"a roaming start holds a whole number of fen above zero, got {hold_fen!r}")
        return cls(tenant_id=tenant_id, peer=peer, start_charge_seq=start_charge_seq,
                   connector_id=checked(connector_id, "connector id", NAME, required=True),
                   station_id=checked(station_id, "station id", NAME), wallet_id=wallet_id, driver_id=driver_id,
                   hold_fen=hold_fen, at=_instant(at, "at"), author=author)

    # ---- read side -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def hold_id(self) -> str:
        return hold_id(self.start_charge_seq)

    def _refuse(self, action: str) -> InvalidTransition:
        return InvalidTransition(f"cannot {action} a roaming charge that is {self.state}",
                                 start_charge_seq=self.start_charge_seq, state=self.state)

    # ---- what the peer answers and tells -------------------------------------------------------
    def accept(self, at: datetime) -> None:
        """The peer answered ``query_start_charge`` with SuccStat 0."""
        if self.state == "requested":
            self._accepted(at=_instant(at, "at"))
        elif self.state == "failed":
            raise self._refuse("accept")  # we gave up on it and released the hold: the caller stops it

    @event("Accepted")
    def _accepted(self, at: datetime) -> None:
        changes.roaming_accepted(self, {})

    def mark_charging(self, at: datetime, start_time: datetime) -> None:
        """``notification_start_charge_result`` with StartChargeSeqStat 2; a resend changes nothing."""
        if self.state in ("requested", "starting"):
            self._charging(at=_instant(at, "at"), start_time=_instant(start_time, "start time"))
        elif self.state == "failed":
            raise self._refuse("mark charging")

    @event("Charging")
    def _charging(self, at: datetime, start_time: datetime) -> None:
        changes.roaming_charging(self, {})
        self.start_time = start_time

    def request_stop(self, at: datetime, author: str) -> None:
        """We asked the peer to stop (``query_stop_charge``); on a charge already stopping or over, nothing."""
        if self.state in ("requested", "starting", "charging"):
            self._stop_requested(at=_instant(at, "at"), author=author)

    @event("StopRequested")
    def _stop_requested(self, at: datetime, author: str) -> None:
        changes.roaming_stop_requested(self, {})

    def fail(self, at: datetime, reason: str) -> None:
        """The start was refused or never confirmed: only before it charged (its hold is then released)."""
        reason = checked(reason, "failure reason", REASON)
        if self.state == "failed":
            return
        if self.state not in ("requested", "starting", "stopping") or self.start_time is not None:
            raise self._refuse("fail")
        self._failed(at=_instant(at, "at"), reason=reason)

    @event("Failed")
    def _failed(self, at: datetime, reason: str) -> None:
        changes.roaming_failed(self, {})
        self.closed_at = at
        self.reason = reason

    def settle(self, at: datetime, energy: int, electricity_fen: int, service_fen: int, start_time: datetime,
               end_time: datetime, stop_reason: int, order: dict[str, str] | None = None) -> bool:
        """The peer's order. Returns False if it changed nothing (the same order again, or a differing
        one recorded as disputed). The bill is paid from the hold up to its amount, the rest beyond it; a
        first bill :func:`beyond_the_hold` is disputed (money) and settles nothing: the hold stays, for a
        corrected order, or an operator."""
        for value, what in ((energy, "energy"), (electricity_fen, "electricity fee"), (service_fen, "service fee"),
                            (stop_reason, "stop reason")):
            _count(value, what)
        for instant, what in ((at, "at"), (start_time, "start time"), (end_time, "end time")):
            _instant(instant, what)
        if self.state == "settled":
            bill = self.bill
            if (bill["energy"], bill["electricity_fen"], bill["service_fen"]) == (energy, electricity_fen, service_fen):
                return False
            money = (bill["electricity_fen"], bill["service_fen"]) != (electricity_fen, service_fen)
            self.dispute(at, DISPUTE_MONEY if money else DISPUTE_ENERGY,
                         order or order_strings(energy, electricity_fen, service_fen))
            return False
        total = electricity_fen + service_fen
        if beyond_the_hold(self.hold_fen, total):  # disputed (money); the charge waits for a corrected order
            self.dispute(at, DISPUTE_MONEY, order or order_strings(energy, electricity_fen, service_fen))
            return False
        from_hold = self.state != "failed"
        captured = min(total, self.hold_fen) if from_hold else 0
        self._settled(at=at, energy=energy, electricity_fen=electricity_fen, service_fen=service_fen,
                      start_time=start_time, end_time=end_time, stop_reason=stop_reason, captured_fen=captured,
                      charged_fen=total - captured, from_hold=from_hold)
        return True

    @event("Settled")
    def _settled(self, at: datetime, energy: int, electricity_fen: int, service_fen: int, start_time: datetime,
                 end_time: datetime, stop_reason: int, captured_fen: int, charged_fen: int,
                 from_hold: bool) -> None:
        changes.roaming_settled(self, {"energy": energy, "electricity_fen": electricity_fen,
                                       "service_fen": service_fen, "start_time": start_time, "end_time": end_time,
                                       "stop_reason": stop_reason})
        if self.start_time is None:
            self.start_time = start_time
        self.closed_at = at

    def dispute(self, at: datetime, reason: int, order: dict[str, str]) -> bool:
        """An order we did not accept (reason 2 money, 3 energy, 4 inconsistent totals): recorded once per
        distinct order; the charge's state is unchanged. Returns whether it recorded it."""
        if reason not in (DISPUTE_MONEY, DISPUTE_ENERGY, DISPUTE_TOTALS):
            raise InvalidTransition(f"a dispute's reason is 2, 3 or 4, got {reason!r}")
        if not isinstance(order, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                   for k, v in order.items()):
            raise InvalidTransition("a disputed order is the peer's amounts as strings")
        order = {k: checked(v, k, 64) for k, v in order.items()}
        if any(d["reason"] == reason and d["order"] == order for d in self.disputes):
            return False
        self._disputed(at=_instant(at, "at"), reason=reason, order=order)
        return True

    @event("OrderDisputed")
    def _disputed(self, at: datetime, reason: int, order: dict[str, str]) -> None:
        changes.roaming_disputed(self, {"at": at, "reason": reason, "order": order})


def wallet_commands(charge: Any, event_name: str, event: Any) -> list[WalletCommand]:
    """The wallet commands one charge event calls for (``charge`` is the aggregate after it); keys
    derived from the StartChargeSeq, so running them again changes nothing."""
    hold = hold_id(charge.start_charge_seq)
    if event_name == "Failed":
        return [WalletCommand("release", {"key": f"release:{hold}", "hold_id": hold})]
    if event_name != "Settled":
        return []
    commands = []
    if getattr(event, "from_hold", True):
        commands.append(WalletCommand("capture_to_payable", {"key": f"capture:{hold}", "hold_id": hold,
                                                             "amount": event.captured_fen, "peer": charge.peer}))
    if event.charged_fen:
        commands.append(WalletCommand("charge_to_payable", {"key": f"charge:{hold}", "amount": event.charged_fen,
                                                            "peer": charge.peer, "reference": hold}))
    return commands


__all__ = ["HOLD", "OPEN_STATES", "START_CHARGE_SEQ", "RoamingCharge", "hold_id", "order_strings",
           "wallet_commands"]
