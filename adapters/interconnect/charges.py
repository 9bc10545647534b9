"""A ledger session as T/CEC's live snapshot (``ChargeStatus``) and final order (``ChargeOrderInfo``).

The same builders answer ``query_equip_charge_status`` and make the pushes
(``notification_equip_charge_status``, ``notification_charge_order_info``), so a peer reads the same
figures whichever way it asks. Money is the ledger's: the bill of a closed session, else what the
energy measured so far comes to (``ChargingSession.measured_bill``, the driver API's live amount),
each priced by ``domain.pricing.price`` with the tariff version the session started with.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.interconnect.amounts import charge_details, kwh, tenths, yuan
from adapters.interconnect.mapping import connector_status, seq_stat
from adapters.interconnect.tcec.models.charge import ChargeStatus
from adapters.interconnect.tcec.models.orders import ChargeOrderInfo
from domain.session import ChargingSession


def _instant(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def started(session: ChargingSession) -> datetime:
    """When the session began charging (the pile's report or record), else when it was asked for."""
    record = session.record or {}
    return session.started_at or _instant(record.get("started_at")) or session.opened_at


def last_sample(session: ChargingSession) -> datetime:
    """The time of the latest figure: the record's end, the last reading, or the close."""
    record = session.record or {}
    reading = session.last_reading or {}
    candidates = [_instant(record.get("ended_at")), _instant(reading.get("at")), session.closed_at]
    found = [c for c in candidates if c is not None]
    return max([started(session), *found[:1]])


def bill_of(session: ChargingSession) -> dict[str, Any]:
    """The bill (closed and priced) or what the energy so far comes to."""
    return session.bill if session.bill is not None else session.measured_bill().as_dict()


def snapshot(session: ChargingSession, pile: Any, seq: str, connector_id: str) -> ChargeStatus:
    """``query_equip_charge_status`` and its push: the session now. ``pile`` is its Pile aggregate (the
    connector's status as the pile link last reported it)."""
    gun = pile.guns[str(session.gun_no)]
    reading: Mapping[str, Any] = session.last_reading or {}
    bill = bill_of(session)
    start, end = started(session), last_sample(session)
    details = charge_details(bill, session.schedule, session.timezone, start, end)
    soc = reading.get("soc_pct")
    return ChargeStatus(
        StartChargeSeq=seq, StartChargeSeqStat=seq_stat(session.state), ConnectorID=connector_id,
        ConnectorStatus=connector_status(enabled=pile.enabled, online=pile.online, status=gun["status"],
                                         plugged=gun["plugged"], faults=gun["faults"]),
        CurrentA=tenths(reading.get("current_da")), VoltageA=tenths(reading.get("voltage_dv")),
        Soc=None if soc is None else int(soc), StartTime=start, EndTime=end,
        TotalPower=kwh(bill["energy"]), ElecMoney=yuan(bill["electricity_fen"]),
        SeviceMoney=yuan(bill["service_fen"]), TotalMoney=yuan(bill["total_fen"]),
        SumPeriod=len(details), ChargeDetails=details)


def order_info(session: ChargingSession, bill: Mapping[str, Any], seq: str, connector_id: str, start: datetime,
               end: datetime, stop_reason: int) -> ChargeOrderInfo:
    """``notification_charge_order_info``: ``bill`` is the closing event's (Settled, Resettled,
    Abandoned); ``session`` gives the tariff schedule and time zone its details are laid on."""
    end = max(start, end)
    details = charge_details(bill, session.schedule, session.timezone, start, end)
    return ChargeOrderInfo(
        StartChargeSeq=seq, ConnectorID=connector_id, StartTime=start, EndTime=end, TotalPower=kwh(bill["energy"]),
        TotalElecMoney=yuan(bill["electricity_fen"]), TotalSeviceMoney=yuan(bill["service_fen"]),
        TotalMoney=yuan(bill["total_fen"]), StopReason=stop_reason, SumPeriod=len(details), ChargeDetails=details)
