"""What an infrastructure peer's pushes do to our drivers' roaming charges (we as customer platform).

The handlers (``handlers/notifications.py``) keep every push as it arrived, then call these; the charge
is looked up by the peer that sent the push (its tenant and OperatorID: a peer speaks only for the
charges started with it) and the push's ``StartChargeSeq``:

* ``notification_start_charge_result``: ``StartChargeSeqStat`` 2 makes the charge ``charging``; 4 or 5
  while it never charged fails it (the pile did not start) and its hold goes back to the driver.
* ``notification_equip_charge_status``: 2 while we still wait for the start result is the same news; an
  amount within 1 yuan of the driver's hold stops the charge (``stopping``; the reconciler sends the stop).
* ``notification_stop_charge_result``: nothing for the ledger; the order follows.
* ``notification_charge_order_info``: **settles** the charge: the peer's bill is taken from the driver's
  hold and owed to the peer on ``payable:<OperatorID>`` (``Ledger.settle_roaming``). Agreed
  (``ConfirmResult`` 0) when it is the charge's bill; disputed (1) when no charge of ours has that
  StartChargeSeq, the ConnectorID is not the charge's, the totals do not add up
  (``TotalElecMoney + TotalSeviceMoney != TotalMoney``), or the charge was already settled at other
  amounts (the ledger records that as ``OrderDisputed``; the first bill stands).
* ``check_charge_orders``: each listed order against the charge's settled bill: not found (1), its
  money (2) or its energy (3) differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from adapters.interconnect.amounts import kwh, yuan
from adapters.interconnect.tcec.models.charge import ChargeStatus, StartChargeResult
from adapters.interconnect.tcec.models.codes import ConfirmResult, StartChargeSeqStat
from adapters.interconnect.tcec.models.orders import ChargeOrderInfo, CheckedOrder
from adapters.interconnect.tcec.peer import Peer
from domain.errors import DomainError
from domain.roaming import DISPUTE_TOTALS, RoamingCharge

log = logging.getLogger("chargeledger.interconnect.roaming")
NOT_FOUND, AMOUNT_WRONG, ENERGY_WRONG = 1, 2, 3  # DisputeReason
TOTALS = "TotalElecMoney + TotalSeviceMoney != TotalMoney"
WAITING_TO_START = ("requested", "starting")
HOLD_MARGIN_FEN = 100  # the gateway's own margin (pile_link/gateway.py balance_margin_fen)
HOLD_REACHED = "platform:hold-reached"


def fen(amount: Decimal) -> int:
    """Yuan with at most 2 decimals (the model's rule) as integer fen, exactly."""
    value = amount.scaleb(2)
    if value != value.to_integral_value():
        raise ValueError(f"{amount} yuan is not a whole number of fen")
    return int(value)


def energy_units(power: Decimal) -> int:
    """kWh with at most 4 decimals as the ledger's 0.0001 kWh, exactly."""
    value = power.scaleb(4)
    if value != value.to_integral_value():
        raise ValueError(f"{power} kWh has more than 4 decimals")
    return int(value)


def strings(order: ChargeOrderInfo) -> dict[str, str]:
    """The peer's amounts as it wrote them, kept with the settled bill or a dispute."""
    return {"TotalPower": str(order.TotalPower), "TotalElecMoney": str(order.TotalElecMoney),
            "TotalSeviceMoney": str(order.TotalSeviceMoney), "TotalMoney": str(order.TotalMoney)}


@dataclass(frozen=True)
class Arrivals:
    ledger: Any

    def charge(self, peer: Peer, seq: str) -> RoamingCharge | None:
        return self.ledger.find_roaming(peer.tenant_id, peer.operator_id, seq)

    def started(self, peer: Peer, result: StartChargeResult | ChargeStatus, now: datetime) -> None:
        """A start result, or a charge status (which says the same when the start result was lost, and
        how much the charge has cost so far: at the hold less :data:`HOLD_MARGIN_FEN` we stop it, as the
        gateway stops our own piles, so the driver is not billed beyond what was held)."""
        charge = self.charge(peer, result.StartChargeSeq)
        if charge is None or charge.connector_id != result.ConnectorID:
            return
        if isinstance(result, ChargeStatus) and charge.state == "charging" and \
                fen(result.TotalMoney) + HOLD_MARGIN_FEN >= charge.hold_fen:
            log.info("T/CEC charge %s on %s has cost %s yuan of %s held: stopping it", charge.start_charge_seq,
                     peer.operator_id, result.TotalMoney, charge.hold_fen / 100)
            self.ledger.roaming_stop_requested(charge.id, at=now, author=HOLD_REACHED)  # sent by the reconciler
            return
        stat = result.StartChargeSeqStat
        if stat == StartChargeSeqStat.CHARGING and charge.state in WAITING_TO_START:
            if charge.state == "requested":  # the answer to our start was lost: the pile's news says it all
                charge = self.ledger.roaming_accepted(charge.id, at=now)
            self.ledger.roaming_charging(charge.id, at=now, start_time=result.StartTime)
        elif isinstance(result, StartChargeResult) and charge.state in WAITING_TO_START and \
                stat in (StartChargeSeqStat.FINISHED, StartChargeSeqStat.UNKNOWN):
            self.ledger.roaming_failed(charge.id, at=now, reason=f"{peer.operator_id}'s pile did not start "
                                                                 f"(StartChargeSeqStat {int(stat)})")

    def order(self, peer: Peer, order: ChargeOrderInfo, now: datetime) -> int:
        """Settle the charge with the peer's order; the ConfirmResult to answer."""
        charge = self.charge(peer, order.StartChargeSeq)
        why = self._unacceptable(charge, order)
        if why is not None or charge is None:
            log.warning("T/CEC order %s from %s disputed: %s", order.StartChargeSeq, peer.operator_id, why)
            if charge is not None and why == TOTALS:  # ours: recorded on the charge, once per distinct order
                self.ledger.dispute_roaming(charge.id, at=now, reason=DISPUTE_TOTALS, order=strings(order))
            return ConfirmResult.DISPUTED
        disputes = len(charge.disputes)
        try:
            charge = self.ledger.settle_roaming(
                charge.id, at=now, energy=energy_units(order.TotalPower), electricity_fen=fen(order.TotalElecMoney),
                service_fen=fen(order.TotalSeviceMoney), start_time=order.StartTime, end_time=order.EndTime,
                stop_reason=int(order.StopReason), order=strings(order))
        except DomainError as error:  # e.g. a charge we had failed: nothing to take it from; an operator decides
            log.error("T/CEC order %s from %s could not settle: %s", order.StartChargeSeq, peer.operator_id, error)
            return ConfirmResult.DISPUTED
        if len(charge.disputes) > disputes:
            log.warning("T/CEC order %s from %s differs from the bill settled before; disputed",
                        order.StartChargeSeq, peer.operator_id)
            return ConfirmResult.DISPUTED
        return ConfirmResult.AGREED

    @staticmethod
    def _unacceptable(charge: RoamingCharge | None, order: ChargeOrderInfo) -> str | None:
        if charge is None:
            return "no charge of ours has this StartChargeSeq"
        if charge.connector_id != order.ConnectorID:
            return f"the charge is on {charge.connector_id}, the order names {order.ConnectorID}"
        if order.TotalElecMoney + order.TotalSeviceMoney != order.TotalMoney:
            return TOTALS
        return None

    def dispute_reason(self, peer: Peer, order: CheckedOrder) -> int:
        """0 when the listed order is the charge's settled bill, else its DisputeReason."""
        charge = self.charge(peer, order.StartChargeSeq)
        if charge is None or charge.bill is None:
            return NOT_FOUND
        if yuan(charge.bill["total_fen"]) != order.TotalMoney:
            return AMOUNT_WRONG
        if kwh(charge.bill["energy"]) != order.TotalPower:
            return ENERGY_WRONG
        return 0
