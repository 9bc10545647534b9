"""``tcec_outbox``: every push we owe a peer, kept until the peer has answered it (docs/interconnect.md,
"The outbox").

A row is one call to make: the peer, the interface, the business object (canonical JSON: the 2016
spellings, the peer's dialect is applied when it is sent), and a key unique per peer
(``start:<StartChargeSeq>``, ``order:<StartChargeSeq>``, ``status:<ConnectorID>:<event>``...), so
whatever writes it twice writes it once. Rows are written by the outbox's follower in the same
transaction as its position in the ledger's logs, or by its schedule (periodic charge status, the
daily check) under their keys.

A sender takes the due rows (:meth:`Outbox.take`: their ``due`` moved a lease ahead, skipping rows
another sender holds), calls, and records the outcome: delivered (the answer kept), ignored (a
``Status`` 1 answer: not to be sent again), or a failure, which puts the row back with a growing
pause until it is given up (``failed``). Rows of one ``stream`` (a session's pushes, a connector's
statuses) go in order: a row is not taken while an earlier row of its stream is pending. Everything is
in the table, so a sender that dies or restarts loses nothing and repeats only a call whose answer it
never recorded (the peer dedups those by StartChargeSeq).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from psycopg.rows import class_row, dict_row

from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.models.base import Model

LEASE = timedelta(minutes=2)  # a sender's hold on the rows it took (a call: 10 s to connect, 30 s to answer)
KEEP = timedelta(days=30)  # answered rows are kept this long (a month of what each peer was told), then pruned


@dataclass(frozen=True)
class Push:
    """A push to enqueue: ``stream`` orders it among its kin (None: no order)."""

    interface: str
    key: str
    payload: Model
    stream: str | None = None


@dataclass(frozen=True)
class Row:
    id: int
    peer_id: UUID
    key: str
    interface: str
    payload: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class Linked:
    """A peer the pushes go to: enabled, of the role that hears them, told only what changed after
    ``configured`` (when it was added), with ``our_operator_id`` as it knows us."""

    peer_id: UUID
    tenant_id: UUID
    configured: datetime
    our_operator_id: str


@dataclass(frozen=True)
class Dispute:
    start_charge_seq: str
    reason: int
    total_power: str | None = None
    total_money: str | None = None


INSERT = ("INSERT INTO tcec_outbox (peer_id, key, interface, stream, payload, created_at, due) "
          "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (peer_id, key) DO NOTHING RETURNING id")
TAKE = """
UPDATE tcec_outbox SET due = %(until)s WHERE id IN (
    SELECT o.id FROM tcec_outbox o WHERE o.state = 'pending' AND o.due <= %(now)s
    AND (o.stream IS NULL OR NOT EXISTS (SELECT 1 FROM tcec_outbox e WHERE e.peer_id = o.peer_id
         AND e.stream = o.stream AND e.state = 'pending' AND e.id < o.id))
    ORDER BY o.id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, peer_id, key, interface, payload, attempts, created_at"""


class Outbox:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    # ---- writing ---------------------------------------------------------------------------------------
    @staticmethod
    def add(cursor: Any, peer_id: UUID, push: Push, now: datetime) -> bool:
        """Enqueue ``push`` in the caller's transaction; False if its key was enqueued before."""
        payload = wire.dumps(push.payload.to_wire())
        cursor.execute(INSERT, (peer_id, push.key, push.interface, push.stream, payload, now, now))
        return cursor.fetchone() is not None

    @staticmethod
    def peers(cursor: Any, roles: Sequence[str]) -> dict[UUID, list[Linked]]:
        """tenant -> the enabled peers of ``roles`` (in the caller's transaction)."""
        by_tenant: dict[UUID, list[Linked]] = {}
        cursor.execute("SELECT peer_id, tenant_id, created_at, our_operator_id FROM tcec_peers WHERE role = ANY(%s) "
                       "AND enabled ORDER BY created_at, peer_id", (list(roles),))
        for row in cursor.fetchall():
            by_tenant.setdefault(row[1], []).append(Linked(*row))
        return by_tenant

    def enqueue(self, peer_id: UUID, push: Push, now: datetime) -> bool:
        with self.pool.connection() as conn, conn.cursor() as cursor:
            return self.add(cursor, peer_id, push, now)

    @staticmethod
    def supersede(cursor: Any, peer_id: UUID, key_prefix: str) -> None:
        """Drop the pending rows whose key starts with ``key_prefix`` (stale charge status snapshots)."""
        cursor.execute("UPDATE tcec_outbox SET state = 'superseded' WHERE peer_id = %s AND state = 'pending' "
                       "AND starts_with(key, %s)", (peer_id, key_prefix))

    def prune(self, now: datetime, keep: timedelta = KEEP) -> int:
        """Drop the rows answered (or superseded) before ``now - keep``; pending and given-up rows stay."""
        with self.pool.connection() as conn:
            return conn.execute("DELETE FROM tcec_outbox WHERE state IN ('delivered', 'ignored', 'superseded') "
                                "AND created_at < %s", (now - keep,)).rowcount

    # ---- sending -------------------------------------------------------------------------------------
    def take(self, now: datetime, limit: int, lease: timedelta = LEASE) -> list[Row]:
        with self.pool.connection() as conn:
            rows = conn.cursor(row_factory=class_row(Row)).execute(
                TAKE, {"now": now, "until": now + lease, "limit": limit}).fetchall()
        return sorted(rows, key=lambda r: r.id)

    def answered(self, row_id: int, state: str, answer: str, now: datetime) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE tcec_outbox SET state = %s, answer = %s, delivered_at = %s, "
                         "attempts = attempts + 1 WHERE id = %s", (state, answer, now, row_id))

    def failed(self, row_id: int, error: str, due: datetime | None) -> None:
        """A failed attempt: back with ``due``, or given up (``due`` None)."""
        with self.pool.connection() as conn:
            conn.execute("UPDATE tcec_outbox SET attempts = attempts + 1, last_error = %s, "
                         "state = CASE WHEN %s::timestamptz IS NULL THEN 'failed' ELSE state END, "
                         "due = COALESCE(%s, due) WHERE id = %s", (error[:500], due, due, row_id))

    def record_disputes(self, peer_id: UUID, source: str, disputes: Sequence[Dispute], now: datetime) -> None:
        """What the peer disputed (an order's ConfirmResult, a day's check), kept for the operator."""
        with self.pool.connection() as conn:
            for d in disputes:
                conn.execute(
                    "INSERT INTO tcec_disputes VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (peer_id, source, "
                    "start_charge_seq) DO UPDATE SET reason = excluded.reason, total_power = excluded.total_power, "
                    "total_money = excluded.total_money, recorded_at = excluded.recorded_at",
                    (peer_id, source, d.start_charge_seq, d.reason, d.total_power, d.total_money, now))

    # ---- reading ---------------------------------------------------------------------------------------
    def rows(self, peer_id: UUID) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT id, key, interface, stream, state, attempts, created_at, due, delivered_at, last_error, "
                "answer FROM tcec_outbox WHERE peer_id = %s ORDER BY id", (peer_id,)).fetchall()

    def disputes(self, peer_ids: Sequence[UUID]) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            return conn.cursor(row_factory=dict_row).execute(
                "SELECT * FROM tcec_disputes WHERE peer_id = ANY(%s) ORDER BY recorded_at, source, start_charge_seq",
                (list(peer_ids),)).fetchall()
