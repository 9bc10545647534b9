"""``tcec_starts``: the sessions started on our piles for a peer's users, by the peer's ``StartChargeSeq``.

A start's row (peer, StartChargeSeq, connector, trade serial) is written by the start itself, in the
same transaction as the session (``Ledger.request_start(alongside=...)``, as the driver API's
Idempotency-Key rows are): a StartChargeSeq has a row exactly when its session exists, and two
starts with one StartChargeSeq racing cannot both commit (it is the primary key; the loser's
transaction, session included, is refused whole, and it answers the winner's session). A start
refused by a rule (the connector busy, the pile offline) writes nothing, so the peer's retry is
judged afresh. The session keeps the StartChargeSeq too, in its ``Opened`` event's author
(``tcec:<OperatorID>:<StartChargeSeq>``), so an auditor and the order view see it without this table.

The outbox's follower (``outbox/follower.py``) keeps the rest of the row: the session's state, when it
began charging, whether its start result was pushed, whether the peer stopped it, and its end,
energy and total once billed (what ``check_charge_orders`` reconciles by day).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import class_row

from adapters.postgres.recorder import Statement
from domain.session import ChargingSession

COLUMNS = ("peer_id, start_charge_seq, tenant_id, connector_id, trade_no, session_id, requested_at, state, "
           "charging_at, start_pushed, stopped_by_peer, ended_at, energy, total_fen")


@dataclass(frozen=True)
class Start:
    peer_id: UUID
    start_charge_seq: str
    tenant_id: UUID
    connector_id: str
    trade_no: str
    session_id: UUID
    requested_at: datetime
    state: str
    charging_at: datetime | None
    start_pushed: bool
    stopped_by_peer: bool
    ended_at: datetime | None
    energy: int | None
    total_fen: int | None


def author(operator_id: str, seq: str) -> str:
    """The author of a session started for a peer: its OperatorID and StartChargeSeq."""
    return f"tcec:{operator_id}:{seq}"


class Starts:
    INSERT = ("INSERT INTO tcec_starts (peer_id, start_charge_seq, tenant_id, connector_id, trade_no, session_id, "
              "requested_at) VALUES (%s, %s, %s, %s, %s, %s, %s)")

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def find(self, peer_id: UUID, seq: str) -> Start | None:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=class_row(Start)).execute(
                f"SELECT {COLUMNS} FROM tcec_starts WHERE peer_id = %s AND start_charge_seq = %s",
                (peer_id, seq)).fetchone()

    def record(self, peer_id: UUID, seq: str, tenant_id: UUID, connector_id: str,
               now: datetime) -> Callable[[str], list[Statement]]:
        """The row of a start, for its trade serial, to write in the start's own transaction."""
        return lambda trade_no: [Statement(self.INSERT, (peer_id, seq, tenant_id, connector_id, trade_no,
                                                         ChargingSession.create_id(trade_no), now))]

    @staticmethod
    def of_sessions(cursor: Any, session_ids: list[UUID]) -> dict[UUID, Start]:
        """The starts of these sessions (those started for a peer), locked for the caller's transaction."""
        if not session_ids:
            return {}
        rows = cursor.connection.cursor(row_factory=class_row(Start)).execute(
            f"SELECT {COLUMNS} FROM tcec_starts WHERE session_id = ANY(%s) FOR UPDATE", (session_ids,)).fetchall()
        return {row.session_id: row for row in rows}

    def ended_between(self, peer_id: UUID, start: datetime, end: datetime) -> list[Start]:
        """The peer's billed sessions that ended in [start, end): a day's orders."""
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=class_row(Start)).execute(
                f"SELECT {COLUMNS} FROM tcec_starts WHERE peer_id = %s AND ended_at >= %s AND ended_at < %s "
                "AND total_fen IS NOT NULL ORDER BY ended_at, start_charge_seq", (peer_id, start, end)).fetchall()

    def charging(self) -> list[Start]:
        """Every session started for a peer that is charging now (their status pushes)."""
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=class_row(Start)).execute(
                f"SELECT {COLUMNS} FROM tcec_starts WHERE state = 'charging' ORDER BY charging_at").fetchall()
