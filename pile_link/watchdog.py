"""The watchdog: turns session deadlines that passed into commands.

The deadlines are written in the session's events (the 90 s start deadline in ``Opened``, the
transaction-record deadline in ``StopRequested``), never held in an in-memory timer. The watchdog
keeps a small index of open deadlines, ``session_deadlines``, by following the Sessions
notification log; each batch of index changes commits in one transaction with the index's tracking
position, so after any crash it resumes exactly where it stopped. A sweep asks the index which
deadlines passed and sends each session ``expire(now)``, which re-checks the deadline on the
aggregate itself: the index only says where to look, the aggregate decides. Any number of gateway
processes may sweep at once; a second ``expire`` of the same session changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg

from domain.errors import DomainError

log = logging.getLogger("chargeledger.watchdog")

SCHEMA = """
CREATE TABLE IF NOT EXISTS session_deadlines (
    trade_no text PRIMARY KEY,
    deadline timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS session_deadlines_due ON session_deadlines (deadline);
CREATE TABLE IF NOT EXISTS watchdog_tracking (
    application text PRIMARY KEY,
    position bigint NOT NULL
);
"""
CLOSING = {"Failed", "Settled", "Resettled", "Abandoned"}


class Watchdog:
    def __init__(self, ledger: Any, database_url: str, *, batch_size: int = 1000) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.batch_size = batch_size
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(7401)")  # concurrent CREATE IF NOT EXISTS can collide
            try:
                conn.execute(SCHEMA)
            finally:
                conn.execute("SELECT pg_advisory_unlock(7401)")

    def position(self, conn: psycopg.Connection) -> int:
        row = conn.execute("SELECT position FROM watchdog_tracking WHERE application = 'Sessions'").fetchone()
        return row[0] if row else 0

    def catch_up(self) -> int:
        """Bring the deadline index up to the end of the Sessions log. Returns events read."""
        app = self.ledger.sessions
        total = 0
        with psycopg.connect(self.database_url) as conn:
            while True:
                with conn.transaction():
                    # the row lock makes concurrent watchdogs take turns instead of double-applying
                    conn.execute("INSERT INTO watchdog_tracking VALUES ('Sessions', 0) ON CONFLICT DO NOTHING")
                    start = conn.execute("SELECT position FROM watchdog_tracking WHERE application = 'Sessions' "
                                         "FOR UPDATE").fetchone()[0]
                    notifications = app.recorder.select_notifications(start, self.batch_size,
                                                                       inclusive_of_start=False)
                    if not notifications:
                        return total
                    upserts: dict[str, datetime | None] = {}
                    for n in notifications:
                        name = n.topic.rsplit(".", 1)[-1]
                        if name not in ("Opened", "StopRequested", "Charging") and name not in CLOSING:
                            continue
                        event = app.mapper.to_domain_event(n)
                        trade_no = self.trade_no_of(event)
                        if name == "Opened":
                            upserts[trade_no] = event.start_deadline
                        elif name == "StopRequested":
                            upserts[trade_no] = event.record_deadline
                        else:
                            upserts[trade_no] = None
                    with conn.cursor() as cur:
                        for trade_no, deadline in upserts.items():
                            if deadline is None:
                                cur.execute("DELETE FROM session_deadlines WHERE trade_no = %s", (trade_no,))
                            else:
                                cur.execute("INSERT INTO session_deadlines VALUES (%s, %s) ON CONFLICT (trade_no) "
                                            "DO UPDATE SET deadline = EXCLUDED.deadline", (trade_no, deadline))
                        cur.execute("UPDATE watchdog_tracking SET position = %s WHERE application = 'Sessions'",
                                    (notifications[-1].id,))
                    total += len(notifications)

    def trade_no_of(self, event: Any) -> str:
        trade_no = getattr(event, "trade_no", None)
        if trade_no is None:
            trade_no = self.ledger.sessions.get(event.originator_id, object, "session").trade_no
        return trade_no

    def due(self, now: datetime) -> list[str]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT trade_no FROM session_deadlines WHERE deadline <= %s ORDER BY deadline",
                                (now,)).fetchall()
        return [r[0] for r in rows]

    def sweep(self, now: datetime) -> list[str]:
        """Catch up, then expire every session whose deadline passed. Returns the trade serials closed."""
        self.catch_up()
        closed = []
        for trade_no in self.due(now):
            try:
                if self.ledger.expire_session(trade_no, now):
                    closed.append(trade_no)
                    log.warning("session %s: deadline passed, closed by the watchdog", trade_no)
            except DomainError as error:
                log.error("session %s: watchdog could not expire it: %s", trade_no, error)
        if closed:
            self.catch_up()
        return closed
