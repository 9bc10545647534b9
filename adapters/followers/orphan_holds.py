"""The follower of orphan holds: a start's hold whose session never got written is released.

A start commits its hold and its session in one transaction (``Ledger.request_start``), so a hold
without its session cannot be made any more. Holds written before that (the two-step start: the
hold committed, then the session, with a crash between them) stay held forever, and nothing else
would release them: the watchdog follows sessions, and these have none. This follower finds them,
and keeps finding any that some other path might leave (defence in depth).

It follows the Wallets notification log with its own tracking position (``orphan_hold_tracking``,
:mod:`adapters.followers.log_follower`).
Each ``HoldPlaced`` whose hold id is a trade serial (a start's hold) becomes a row of
``orphan_hold_checks``, due :data:`GRACE` after the event, written in the same transaction as the
position, so after any crash it resumes exactly where it stopped and notes every hold once. A
sweep takes the due rows and asks: does a session with that trade serial exist? If it does (the
usual case), the row is dropped without a write: the session's own end (settled, failed,
abandoned) releases or captures its hold, and the watchdog sees to that. If none exists and the
wallet still holds it, the hold is released with the idempotency key ``release:<trade serial>``,
the key ``request_start``'s own release used, so a release that happened meanwhile (or a second
sweep) changes nothing.

Safe to run in any number of processes at once: catching up takes the tracking row's lock, so
followers take turns; a sweep leases the rows it takes (their ``due`` moved :data:`LEASE` ahead,
skipping rows another sweep holds), and a row whose check fails is put back with a growing pause
and its error, never blocking the rows behind it. ``sweep(now)`` is what the watchdog role calls.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.utils import get_topic

from adapters.followers.log_follower import DueWork, LogFollower, follow, tracking_ddl
from domain.errors import UnknownHold
from domain.session import TRADE_NO, ChargingSession
from domain.settlement import release_hold
from domain.wallet import Wallet

log = logging.getLogger("chargeledger.orphan_holds")

TRACKING = "orphan_hold_tracking"
SCHEMA = """
CREATE TABLE IF NOT EXISTS orphan_hold_checks (
    trade_no text PRIMARY KEY,  -- the hold's id: a start's trade serial
    wallet_id uuid NOT NULL,
    due timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
CREATE INDEX IF NOT EXISTS orphan_hold_checks_due ON orphan_hold_checks (due);
""" + tracking_ddl(TRACKING)
GRACE = timedelta(minutes=2)  # a start's session commits with its hold (before the fix: milliseconds after)
LEASE = timedelta(minutes=5)  # a sweep's hold on the rows it took
RETRY = timedelta(minutes=1)  # after a failed check, doubled per attempt up to 2^10 minutes
DUE = DueWork("orphan_hold_checks", "trade_no", ("wallet_id",), LEASE, RETRY, log)


class OrphanHolds(LogFollower):
    schema = SCHEMA

    def catch_up(self) -> int:
        """Note every start's hold placed since the tracking position. Returns the holds read."""
        with psycopg.connect(self.database_url, connect_timeout=10) as conn:
            return follow(conn, self.ledger.wallets, TRACKING, self.ledger.wallets.name, self.note,
                          topics=[f"{get_topic(Wallet)}.HoldPlaced"], batch_size=self.batch_size)

    def note(self, cursor: psycopg.Cursor[Any], events: list[Any]) -> None:
        cursor.executemany("INSERT INTO orphan_hold_checks (trade_no, wallet_id, due) VALUES (%s, %s, %s) "
                           "ON CONFLICT (trade_no) DO NOTHING",
                           [check for event in events for check in self.check_of(event)])

    @staticmethod
    def check_of(event: Any) -> list[tuple[str, UUID, datetime]]:
        """A hold to check later, if the event placed a start's hold (its id a trade serial)."""
        if not TRADE_NO.match(event.hold_id):
            return []
        return [(event.hold_id, event.originator_id, event.timestamp + GRACE)]

    def sweep(self, now: datetime) -> list[str]:
        """Catch up, then check every hold due by ``now``. Returns the trade serials released here."""
        self.catch_up()
        return DUE.sweep(self.database_url, now, self.batch_size, self.release_if_orphaned)

    def release_if_orphaned(self, trade_no: str, wallet_id: UUID) -> bool:
        return release_if_orphaned(self.ledger, trade_no, wallet_id)


def release_if_orphaned(ledger: Any, trade_no: str, wallet_id: UUID) -> bool:
    """Release the hold if no session has its trade serial and the wallet still holds it (no
    Postgres: the fault simulator runs it too). Returns whether it released."""
    if ledger.sessions.exists(ChargingSession.create_id(trade_no)):
        return False
    if trade_no not in ledger.wallets.get(wallet_id, Wallet, "wallet").holds:
        return False  # released or captured meanwhile
    try:
        _, events = ledger.run_wallet_command(wallet_id, release_hold(trade_no))
    except UnknownHold:
        return False  # closed between the look and the release
    if events:
        log.warning("hold %s on wallet %s had no session: released", trade_no, wallet_id)
    return bool(events)
