"""The watchdog: turns session deadlines that passed into commands, and completes wallet commands.

The deadlines are written in the session's events (the 90 s start deadline in ``Opened``, the
transaction-record deadline in ``StopRequested``, the offline deadline in ``PileOffline``), never
held in an in-memory timer. The watchdog reads them from the ``open_sessions`` index
(:mod:`adapters.followers.open_sessions`, a tracked follower of the Sessions log, so after any crash it
resumes exactly where it stopped). A sweep asks the index which deadlines passed and sends each
session ``expire(now)``, which re-checks the deadline on the aggregate itself: the index only says
where to look, the aggregate decides (and where it decides the deadline is later, the index is
corrected to it).

It also sees that every closed session's money reached the wallet. The process that settles a
session applies the wallet commands right after the session's commit; a crash between the two
commits would leave the hold standing. So each closing event (``Failed``, ``Settled``,
``Resettled``, ``Abandoned``) puts the wallet commands the settlement policy derives from it into
``wallet_followups``, in the same transaction as that follower's tracking position; once a follow-up is
``FOLLOWUP_GRACE`` old, the sweep checks the wallet: a command whose idempotency key the wallet
already holds (the usual case) is dropped without a write; one it does not is applied (the same
command with the same key, so a late direct application changes nothing). A command the wallet
refuses stays, retried with a growing pause and logged each time.

And it releases a start's hold that has no session (:mod:`adapters.followers.orphan_holds`: holds written
by the two-step start of earlier versions, and any other path that might leave one).

**Safe to run twice.** Any number of watchdogs (``chargeledger watchdog`` processes, gateways with
their own) may sweep at once: the followers take turns on their tracking rows, ``expire`` is
version-checked on the session (the loser of a race reloads it, finds it closed and does nothing,
so a hold is released or captured once), and follow-ups are leased (``FOR UPDATE SKIP LOCKED``).
:meth:`Watchdog.run` sweeps until told to stop and survives any outage (:class:`Outage`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg

from adapters.postgres.env import create_tables
from domain.clock import utcnow
from domain.errors import DomainError
from domain.settlement import WalletCommand, wallet_commands
from domain.wallet import Wallet
from adapters.followers import gateway_leases
from adapters.followers.log_follower import DueWork, follow
from adapters.followers.orphan_holds import OrphanHolds
from adapters.followers.open_sessions import TRACKING, TRACKING_TABLE, OpenSessions, session_topics
from adapters.servers.outage import Outage, when_up

log = logging.getLogger("chargeledger.watchdog")

SCHEMA = """
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
"""
CLOSING = ("Failed", "Settled", "Resettled", "Abandoned")
FOLLOWUPS_FOLLOWER = "Sessions"  # the follow-ups' row in watchdog_tracking
FOLLOWUP_GRACE = timedelta(minutes=1)  # the settling process applies the commands itself well before
FOLLOWUP_RETRY = timedelta(minutes=1)  # after a refusal, doubled per attempt up to 2^10 minutes
FOLLOWUP_LEASE = timedelta(minutes=5)  # a sweep's hold on the rows it took
SWEEP_INTERVAL = 5.0  # seconds between sweeps
FOLLOWUPS = DueWork("wallet_followups", "key", ("trade_no", "wallet_id", "command", "arguments"), FOLLOWUP_LEASE,
                    FOLLOWUP_RETRY, log)


class Watchdog:
    def __init__(self, ledger: Any, database_url: str, *, batch_size: int = 1000) -> None:
        self.ledger = ledger
        self.database_url = database_url
        self.batch_size = batch_size
        self.stats: Counter[str] = Counter()
        self.open_sessions = OpenSessions(ledger, database_url, batch_size=batch_size)
        self.orphan_holds = OrphanHolds(ledger, database_url, batch_size=batch_size)
        self.closing_topics = session_topics(CLOSING)
        self.up_since: datetime | None = None  # since when every sweep reached the database
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            create_tables(conn, TRACKING, SCHEMA, gateway_leases.SCHEMA)  # under the schema lock

    def catch_up(self) -> int:
        """Bring the deadline index and the wallet follow-ups up to the end of the Sessions log.
        Returns events read."""
        indexed = self.open_sessions.catch_up()
        with psycopg.connect(self.database_url, connect_timeout=10) as conn:
            return indexed + follow(conn, self.ledger.sessions, TRACKING_TABLE, FOLLOWUPS_FOLLOWER,
                                    self.record_followups, topics=self.closing_topics, batch_size=self.batch_size)

    def record_followups(self, cur: psycopg.Cursor, events: list[Any]) -> None:
        rows = [row for event in events for row in self.followups(event, type(event).__name__)]
        cur.executemany("INSERT INTO wallet_followups (key, trade_no, wallet_id, command, arguments, due) "
                        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING", rows)

    def followups(self, event: Any, name: str) -> list[tuple[str, str, UUID, str, str, datetime]]:
        """The wallet commands a closing event calls for, as ``wallet_followups`` rows."""
        session = self.ledger.sessions.get(event.originator_id, object, "session", fresh=False, copy=False)
        return [(key, trade_no, wallet_id, command, json.dumps(arguments), due)
                for key, trade_no, wallet_id, command, arguments, due in followups_of(session, name, event)]

    def follow_up(self, now: datetime) -> list[str]:
        """Apply the due wallet follow-ups the wallet does not hold yet (leased rows: :class:`DueWork`).
        Returns the keys applied here."""
        return FOLLOWUPS.sweep(self.database_url, now, self.batch_size, self.apply_followup)

    def apply_followup(self, key: str, trade_no: str, wallet_id: UUID, command: str, arguments: dict[str, Any]) -> bool:
        return apply_followup(self.ledger, key, trade_no, wallet_id, command, arguments)

    def due(self, now: datetime) -> list[str]:
        return self.open_sessions.due(now)

    def sweep(self, now: datetime) -> list[str]:
        """Catch up, record offline the piles of gateways that are gone, then expire every session
        whose deadline passed. Returns the trade serials closed."""
        try:
            self.catch_up()
            self.up_since = self.up_since or now
            if now - self.up_since >= gateway_leases.LEASE_TTL:  # long enough for live gateways to renew
                lapsed = gateway_leases.record_lapsed(self.ledger, self.database_url, self.open_sessions, now)
                self.stats["gateways_lapsed"] += len(lapsed)
                if lapsed:
                    self.catch_up()
            closed = expire_due(self.ledger, self.due(now), now, self.open_sessions.correct)
            self.stats["sessions_expired"] += len(closed)
            if closed:
                self.catch_up()
            self.follow_up(now)
            self.stats["orphan_holds_released"] += len(self.orphan_holds.sweep(now))
        except Exception:
            self.up_since = None
            raise
        self.stats["sweeps"] += 1
        return closed

    def run(self, clock: Callable[[], datetime], stopping: threading.Event, interval: float = SWEEP_INTERVAL) -> None:
        """Sweep every ``interval`` seconds until ``stopping`` is set. A sweep that fails (the
        database is down, a statement times out) is logged and tried again with backoff: the loop
        never dies, and says in the log when the outage began and when it ended."""
        outage = Outage("watchdog sweep", "watchdog_sweep", log, self.stats)
        while not stopping.is_set():
            try:
                self.sweep(clock())
            except Exception as error:  # noqa: BLE001 - whatever it was, the next sweep tries again
                pause = outage.failed(error)
            else:
                outage.succeeded()
                pause = interval
            stopping.wait(pause)


# ---- the decisions, without Postgres (the fault simulator runs them on its in-memory stores) ----------
def followups_of(session: Any, name: str, event: Any) -> list[tuple[str, str, UUID, str, dict[str, Any], datetime]]:
    """The wallet commands a closing event calls for: ``(key, trade serial, wallet, command,
    arguments, due)``, due ``FOLLOWUP_GRACE`` after the event."""
    due = event.at + FOLLOWUP_GRACE
    return [(kwargs["key"], session.trade_no, session.wallet_id, command, kwargs, due)
            for command, kwargs in wallet_commands(session, name, event)]


def apply_followup(ledger: Any, key: str, trade_no: str, wallet_id: UUID, command: str,
                   arguments: dict[str, Any]) -> bool:
    """Apply a due follow-up unless the wallet already holds its key. Returns whether it wrote."""
    wallet = ledger.wallets.get(wallet_id, Wallet, "wallet", fresh=False, copy=False)
    if key in wallet.outcomes:  # keys are never dropped: a cached copy that has it is right
        return False
    _, events = ledger.run_wallet_command(wallet_id, WalletCommand(command, arguments))
    if events:
        log.warning("session %s: wallet %s (%s) was not applied after the session closed; applied now",
                    trade_no, command, key)
    return bool(events)


def expire_due(ledger: Any, trade_nos: list[str], now: datetime,
               correct: Callable[[str, datetime | None], None]) -> list[str]:
    """Send each session the index says is due ``expire(now)``; the aggregate decides. One whose own
    deadline is later is given to ``correct``. Returns the trade serials this call closed (another
    watchdog may have closed one a moment before: then it changed nothing)."""
    closed = []
    for trade_no in trade_nos:
        try:
            session, closed_here = ledger.expire_session(trade_no, now)
        except DomainError as error:
            log.error("session %s: watchdog could not expire it: %s", trade_no, error)
            continue
        if session.is_open:  # its own deadline is later than the index said
            correct(trade_no, session.deadline)
        elif closed_here:
            closed.append(trade_no)
            log.warning("session %s: deadline passed, closed by the watchdog (%s)", trade_no, session.reason)
    return closed


def run_role(make_ledger: Callable[[], Any], database_url: str, stopping: threading.Event,
             interval: float = SWEEP_INTERVAL, clock: Callable[[], datetime] | None = None) -> None:
    """``chargeledger watchdog``: the watchdog as a process of its own, until ``stopping`` is set.

    Starting while the database is down waits for it (with backoff, logged), like every outage after."""
    ledger = when_up("watchdog start", log, make_ledger, stopping)
    if ledger is None:
        return
    try:
        watchdog = when_up("watchdog start", log, lambda: Watchdog(ledger, database_url), stopping)
        if watchdog is not None:
            log.warning("watchdog sweeping every %g s", interval)
            watchdog.run(clock or utcnow, stopping, interval)
    finally:
        ledger.close()
