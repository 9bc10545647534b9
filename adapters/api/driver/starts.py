"""Idempotent driver starts: which session each (tenant, driver, Idempotency-Key) started, so that a
client's retry gets that session back instead of a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from adapters.postgres.env import create_tables
from adapters.postgres.recorder import Statement
from domain.errors import IdempotencyConflict

KEPT = timedelta(hours=24)  # how long an Idempotency-Key's start is remembered
START_REQUESTS_DDL = """
CREATE TABLE IF NOT EXISTS driver_start_requests (
    tenant_id uuid NOT NULL, driver_id text NOT NULL, key text NOT NULL, request_hash text NOT NULL,
    trade_no text, hold_fen bigint, claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, driver_id, key))"""


class StartRequests:
    """Which session each (tenant, driver, Idempotency-Key) started: a retry gets that session back.

    The key's row (request hash, trade serial, hold) is written by the start itself, in the same
    transaction as the hold and the session (:meth:`record`, given to ``Ledger.request_start``), so
    a key has a row exactly when its session exists. There is no claim before the start and no
    "in progress" state: a look-up (:meth:`find`) either finds the committed row or nothing, and
    two starts with one key racing past it cannot both commit (the key is the primary key; the
    loser's whole transaction, hold included, is refused). A start refused by a domain rule writes
    nothing, so a retry is judged afresh. Rows are kept 24 h; each look-up drops its driver's
    older rows (and rows the pre-atomic code left unfinished, with no trade serial). The table is
    not the ledger: it only remembers which answer a key got.
    """

    INSERT = ("INSERT INTO driver_start_requests (tenant_id, driver_id, key, request_hash, trade_no, hold_fen, "
              "claimed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        with pool.connection() as conn:
            create_tables(conn, START_REQUESTS_DDL)

    def find(self, tenant_id: UUID, driver_id: str, key: str, request_hash: str,
             now: datetime) -> tuple[str, int] | None:
        """(trade serial, hold) of the start this key made within 24 h, else None; raises
        :class:`IdempotencyConflict` if the key started another pile or gun."""
        driver = {"tenant": tenant_id, "driver": driver_id, "key": key, "since": now - KEPT}
        with self.pool.connection() as conn:
            found = conn.execute(
                "WITH dropped AS (DELETE FROM driver_start_requests WHERE tenant_id = %(tenant)s AND "
                "driver_id = %(driver)s AND (claimed_at < %(since)s OR trade_no IS NULL)) "
                "SELECT request_hash, trade_no, hold_fen FROM driver_start_requests WHERE tenant_id = %(tenant)s "
                "AND driver_id = %(driver)s AND key = %(key)s AND claimed_at >= %(since)s AND trade_no IS NOT NULL",
                driver).fetchone()
        if found is None:
            return None
        stored_hash, trade_no, hold_fen = found
        if stored_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used for another start request", key=key)
        return trade_no, int(hold_fen)

    def record(self, tenant_id: UUID, driver_id: str, key: str, request_hash: str, hold_fen: int,
               now: datetime) -> Callable[[str], list[Statement]]:
        """The key's row for a start's trade serial, to write in the start's own transaction."""
        return lambda trade_no: [Statement(self.INSERT, (tenant_id, driver_id, key, request_hash, trade_no,
                                                         hold_fen, now))]

