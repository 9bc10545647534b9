"""The watchdog: turns session deadlines that passed into commands.

The deadlines are written in the session's events (the 90 s start deadline in ``Opened``, the
transaction-record deadline in ``StopRequested``), never held in an in-memory timer. The watchdog
keeps a small index of open deadlines, ``session_deadlines``, by following the Sessions
notification log; each batch of index changes commits in one transaction with the index's tracking
position, so after any crash it resumes exactly where it stopped. A sweep asks the index which
deadlines passed and sends each session ``expire(now)``, which re-checks the deadline on the
aggregate itself: the index only says where to look, the aggregate decides. Any number of gateway
processes may sweep at once; a second ``expire`` of the same session changes nothing.

It also sees that every closed session's money reached the wallet. The process that settles a
session applies the wallet commands right after the session's commit; a crash between the two
commits would leave the hold standing. So each closing event (``Failed``, ``Settled``,
``Resettled``, ``Abandoned``) puts the wallet commands the settlement policy derives from it into
``wallet_followups``, in the same transaction as the tracking position; once a follow-up is
``FOLLOWUP_GRACE`` old, the sweep checks the wallet: a command whose idempotency key the wallet
already holds (the usual case) is dropped without a write; one it does not is applied (the same
command with the same key, so a late direct application changes nothing). A command the wallet
refuses stays, retried with a growing pause and logged each time.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from adapters.postgres import create_tables
from domain.errors import DomainError
from domain.settlement import wallet_commands
from domain.wallet import Wallet

log = logging.getLogger("chargeledger.watchdog")

SCHEMA = """
CREATE TABLE IF NOT EXISTS session_deadlines (
    trade_no text PRIMARY KEY,
    deadline timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS session_deadlines_due ON session_deadlines (deadline);
CREATE TABLE IF NOT EXISTS wallet_followups (
    key text PRIMARY KEY,  -- the wallet command's idempotency key
    trade_no text NOT NULL,
    wallet_id uuid NOT NULL,
    command text NOT NULL,
    arguments jsonb NOT NULL,
    due timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX IF NOT EXISTS wallet_followups_due ON wallet_followups (due);
CREATE TABLE IF NOT EXISTS watchdog_tracking (
    application text PRIMARY KEY,
    position bigint NOT NULL
);
"""
CLOSING = {"Failed", "Settled", "Resettled", "Abandoned"}
FOLLOWUP_GRACE = timedelta(minutes=1)  # the settling process applies the commands itself well before
FOLLOWUP_RETRY = timedelta(minutes=1)  # after a refusal, doubled per attempt up to 2^10 minutes
FOLLOWUP_LEASE = timedelta(minutes=5)  # a sweep's hold on the rows it took


class Watchdog:
    def __init__(self, ledger: Any, database_url: str, *, batch_size: int = 1000) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.batch_size = batch_size
        with psycopg.connect(database_url, autocommit=True) as conn:
            create_tables(conn, SCHEMA)  # under the schema lock: concurrent CREATE IF NOT EXISTS can collide

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
                    followups: list[tuple[str, str, UUID, str, str, datetime]] = []
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
                            followups.extend(self.followups(event, name))
                    with conn.cursor() as cur:
                        cur.executemany("INSERT INTO wallet_followups (key, trade_no, wallet_id, command, arguments, "
                                        "due) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING", followups)
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

    def followups(self, event: Any, name: str) -> list[tuple[str, str, UUID, str, str, datetime]]:
        """The wallet commands a closing event calls for, as ``wallet_followups`` rows."""
        session = self.ledger.sessions.get(event.originator_id, object, "session", fresh=False, copy=False)
        due = event.at + FOLLOWUP_GRACE
        return [(kwargs["key"], session.trade_no, session.wallet_id, command, json.dumps(kwargs), due)
                for command, kwargs in wallet_commands(session, name, event)]

    def follow_up(self, now: datetime) -> list[str]:
        """Apply the due wallet follow-ups the wallet does not hold yet. Returns the keys applied here.

        Rows are leased (their ``due`` moved ``FOLLOWUP_LEASE`` ahead, skipping rows another
        gateway holds), so concurrent sweeps share the work and one crashed mid-way leaves its rows
        to be taken again. A row that fails, for whatever reason, is put back with a growing pause
        and its error: it never blocks the rows behind it.
        """
        applied = []
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "UPDATE wallet_followups SET due = %s WHERE key IN (SELECT key FROM wallet_followups WHERE due <= %s "
                "ORDER BY due LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING key, trade_no, wallet_id, command, arguments, attempts",
                (now + FOLLOWUP_LEASE, now, self.batch_size)).fetchall()
            for key, trade_no, wallet_id, command, arguments, attempts in rows:
                try:
                    wallet = self.ledger.wallets.get(wallet_id, Wallet, "wallet", fresh=False, copy=False)
                    if key not in wallet.outcomes:  # keys are never dropped: a cached copy that has it is right
                        _, events = self.ledger.wallet_update(wallet_id, command, **arguments)
                        if events:
                            applied.append(key)
                            log.warning("session %s: wallet %s (%s) was not applied after the session closed; "
                                        "applied now", trade_no, command, key)
                except Exception as error:  # noqa: BLE001 - one row's failure must not hold back the others
                    pause = FOLLOWUP_RETRY * 2 ** min(attempts, 10)  # at most about 17 hours
                    conn.execute("UPDATE wallet_followups SET attempts = attempts + 1, last_error = %s, due = %s "
                                 "WHERE key = %s", (f"{type(error).__name__}: {error}", now + pause, key))
                    log.error("session %s: wallet %s (%s) refused: %s; retrying in %s", trade_no, command, key,
                              error, pause)
                    continue
                conn.execute("DELETE FROM wallet_followups WHERE key = %s", (key,))
        return applied

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
        self.follow_up(now)
        return closed
