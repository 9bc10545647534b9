"""A roaming session's pushes, from the Sessions log: its start result, its stop result and its order.

Only sessions started for a peer (a row in ``tcec_starts``) are followed; each event also moves that
row on (state, when charging began, whether the peer stopped it, the end, energy and total once
billed), in the same transaction as the pushes and the follower's position:

* ``Charging``: ``notification_start_charge_result`` (2, charging; StartTime when it began);
* ``Failed`` before charging: the start result with 4 (finished: it never charged);
* ``StopRequested`` by the peer (author ``tcec:<OperatorID>``): remembered for the order's StopReason;
* ``Settled``, ``Abandoned``: the start result if none was sent (a session whose first report was its
  record), ``notification_stop_charge_result`` (4, SuccStat 0) and ``notification_charge_order_info``
  with the session's bill; stale charge status snapshots are dropped;
* ``Resettled`` (a late record re-priced an abandoned or failed session): the order again, with the new
  bill (and the stop result, if the session had none).

The pushes of one session share a stream (its StartChargeSeq), so they reach the peer in this order.
Every closed session, started for a peer or not, is also an order for the tenant's regulators
(``regulated.py``), in the same transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from eventsourcing.utils import get_topic

from adapters.interconnect.charges import order_info
from adapters.interconnect.mapping import stop_reason
from adapters.interconnect.outbox.regulated import RegulatedOrders
from adapters.interconnect.store.outbox import Outbox, Push
from adapters.interconnect.store.starts import Start, Starts
from adapters.interconnect.tcec.models.charge import StartChargeResult, StopChargeResult
from adapters.interconnect.tcec.models.codes import StartChargeSeqStat, SuccStat
from domain.session import ChargingSession

EVENTS = ("StartAcknowledged", "Charging", "StopRequested", "Failed", "Settled", "Resettled", "Abandoned")
TOPICS = [f"{get_topic(ChargingSession)}.{name}" for name in EVENTS]
CLOSING = ("Settled", "Abandoned", "Resettled")


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


class SessionPushes:
    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger
        self.regulated = RegulatedOrders(ledger)

    def apply(self, cursor: Any, events: list[Any]) -> None:
        starts = Starts.of_sessions(cursor, list(dict.fromkeys(e.originator_id for e in events)))
        rows = {sid: dict(vars(start)) for sid, start in starts.items()}
        for e in events:
            row = rows.get(e.originator_id)
            if row is not None:
                self.event(cursor, row, type(e).__name__, e)
        self.regulated.apply(cursor, events, rows)
        for sid, row in rows.items():
            cursor.execute("UPDATE tcec_starts SET state = %(state)s, charging_at = %(charging_at)s, start_pushed = "
                           "%(start_pushed)s, stopped_by_peer = %(stopped_by_peer)s, ended_at = %(ended_at)s, energy = "
                           "%(energy)s, total_fen = %(total_fen)s WHERE session_id = %(session_id)s", row)

    def event(self, cursor: Any, row: dict[str, Any], name: str, e: Any) -> None:
        seq, connector = row["start_charge_seq"], row["connector_id"]

        def push(interface: str, key: str, payload: Any) -> bool:
            return Outbox.add(cursor, row["peer_id"], Push(interface, key, payload, f"seq:{seq}"), e.timestamp)

        def start_result(stat: StartChargeSeqStat, at: datetime) -> None:
            push("notification_start_charge_result", f"start:{seq}", StartChargeResult(
                StartChargeSeq=seq, StartChargeSeqStat=stat, ConnectorID=connector, StartTime=at))
            row["start_pushed"] = True

        if name == "StartAcknowledged":
            row["state"] = "starting" if e.ok and row["state"] == "requested" else row["state"]
        elif name == "Charging":
            row["state"], row["charging_at"] = "charging", e.at
            if not row["start_pushed"]:
                start_result(StartChargeSeqStat.CHARGING, e.at)
        elif name == "StopRequested":
            row["state"] = "stopping"
            row["stopped_by_peer"] = row["stopped_by_peer"] or str(e.author).startswith("tcec:")
        elif name == "Failed":
            row["state"], row["ended_at"] = "failed", e.at
            if not row["start_pushed"]:
                start_result(StartChargeSeqStat.FINISHED, row["requested_at"])
            Outbox.supersede(cursor, row["peer_id"], f"charge:{seq}:")
        elif name in CLOSING:
            self.closed(cursor, row, name, e, push, start_result)

    def closed(self, cursor: Any, row: dict[str, Any], name: str, e: Any, push: Any, start_result: Any) -> None:
        seq, connector = row["start_charge_seq"], row["connector_id"]
        session = self.ledger.sessions.get(e.originator_id, ChargingSession, "session", copy=False)
        record = getattr(e, "record", None)
        if record is not None:
            start, end = _instant(record["started_at"]), _instant(record["ended_at"])
        else:  # abandoned: from the first report to the close
            start, end = row["charging_at"] or row["requested_at"], e.at
        if not row["start_pushed"]:
            start_result(StartChargeSeqStat.CHARGING, start)
        push("notification_stop_charge_result", f"stop:{seq}", StopChargeResult(  # once, whatever closed it
            StartChargeSeq=seq, StartChargeSeqStat=StartChargeSeqStat.FINISHED, ConnectorID=connector,
            SuccStat=SuccStat.SUCCESS))
        reason = stop_reason(record["stop_reason"] if record is not None else None, by_peer=row["stopped_by_peer"])
        order = order_info(session, e.bill, seq, connector, start, end, reason)
        if not push("notification_charge_order_info", f"order:{seq}", order):  # re-priced: the order again
            push("notification_charge_order_info", f"order:{seq}:{e.originator_version}", order)
        Outbox.supersede(cursor, row["peer_id"], f"charge:{seq}:")
        row.update(state="finished" if name != "Abandoned" else "abandoned", ended_at=max(start, end),
                   energy=e.bill["energy"], total_fen=e.bill["total_fen"])
