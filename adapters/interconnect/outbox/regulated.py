"""``notification_charge_order_info`` to regulator peers for every closed session of their tenant, whoever
started it (the app, a card, the pile, a customer platform): a regulator wants all orders (docs/interconnect.md,
"Regulators").

Called by the session follower (``sessions.py``) for each batch, in the same transaction as its position:
on ``Settled`` and ``Abandoned`` the order (``charges.order_info``, the bill to the fen, as a customer gets
it), keyed ``order:<StartChargeSeq>``; on ``Resettled`` (a late record re-priced it) again with the new bill,
``order:<StartChargeSeq>:<version>``. To every enabled regulator peer of the session's tenant configured
before the close. The StartChargeSeq is the customer platform's own for a session it started (the
regulator hears of that order from both platforms under one id), else ours (``mapping.session_seq``: our
OperatorID as that regulator knows us and 18 hexadecimal digits of the session's uuid).

Each order pushed is also kept in ``tcec_peer_orders`` (peer, StartChargeSeq, session, end, energy, total;
re-priced: updated), what the peer's daily ``check_charge_orders`` lists (:func:`ended_between`), and the
stored way back from a regulator's StartChargeSeq (a dispute) to the session.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.interconnect.charges import order_info
from adapters.interconnect.mapping import connector_code, session_seq, stop_reason
from adapters.interconnect.store.outbox import Outbox, Push
from domain.session import ChargingSession

CLOSING = ("Settled", "Abandoned", "Resettled")
REGULATORS = ("regulator",)
INTERFACE = "notification_charge_order_info"


def _instant(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


class RegulatedOrders:
    def __init__(self, ledger: Any) -> None:
        self.ledger = ledger

    def apply(self, cursor: Any, events: list[Any], starts: dict[UUID, dict[str, Any]]) -> None:
        """``starts``: the batch's ``tcec_starts`` rows by session (sessions a customer platform started)."""
        closing = [e for e in events if type(e).__name__ in CLOSING]
        peers = Outbox.peers(cursor, REGULATORS) if closing else {}
        if not peers:
            return
        for e in closing:
            session = self.ledger.sessions.get(e.originator_id, ChargingSession, "session", copy=False)
            linked = [p for p in peers.get(session.tenant_id, []) if p.configured <= e.timestamp]
            if linked:
                self.closed(cursor, session, e, linked, starts.get(e.originator_id))

    def closed(self, cursor: Any, session: ChargingSession, e: Any, linked: list[Any],
               start: dict[str, Any] | None) -> None:
        record = getattr(e, "record", None)
        if record is not None:
            began, end = _instant(record["started_at"]), _instant(record["ended_at"])
        else:  # abandoned: from the first report (or the request) to the close
            began, end = session.started_at or session.opened_at, e.at
        connector = connector_code(session.pile_no, session.gun_no)
        reason = stop_reason(record["stop_reason"] if record is not None else None,
                             by_peer=bool(start and start["stopped_by_peer"]))
        for peer in linked:
            seq = start["start_charge_seq"] if start else session_seq(peer.our_operator_id, e.originator_id)
            order = order_info(session, e.bill, seq, connector, began, end, reason)
            if not Outbox.add(cursor, peer.peer_id, Push(INTERFACE, f"order:{seq}", order, f"seq:{seq}"), e.timestamp):
                Outbox.add(cursor, peer.peer_id, Push(INTERFACE, f"order:{seq}:{e.originator_version}", order,
                                                      f"seq:{seq}"), e.timestamp)
            cursor.execute(
                "INSERT INTO tcec_peer_orders VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (peer_id, start_charge_seq) "
                "DO UPDATE SET ended_at = excluded.ended_at, energy = excluded.energy, total_fen = excluded.total_fen",
                (peer.peer_id, seq, e.originator_id, max(began, end), e.bill["energy"], e.bill["total_fen"]))


def ended_between(pool: Any, peer_id: UUID, start: datetime, end: datetime) -> list[tuple[str, int, int]]:
    """(StartChargeSeq, energy, total) of the orders pushed to the peer that ended in [start, end)."""
    with pool.connection() as conn:
        return conn.execute("SELECT start_charge_seq, energy, total_fen FROM tcec_peer_orders WHERE peer_id = %s "
                            "AND ended_at >= %s AND ended_at < %s ORDER BY ended_at, start_charge_seq",
                            (peer_id, start, end)).fetchall()
