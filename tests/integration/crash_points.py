"""A process killed before each statement it sends to Postgres in turn, and the books checked after it, for
the start's crash tests (tests/integration/test_start_*.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from adapters.audit.replay import replay
from adapters.postgres.env import eventsourcing_env
from domain.errors import NotFound
from domain.ledger import Ledger

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
CARD = "A1B2C3D4E5F60708"
TOP_UP = 1_000_00


class Crash(BaseException):
    """The process died here: no handler runs after it (a BaseException, as a kill is to the code)."""


class Crasher:
    """Kills the test thread's 'process' just before its n-th statement to Postgres.

    While armed, every ``Cursor.execute`` (``Connection.execute`` goes through it) and every end of
    a pipeline (where psycopg sends the queued statements' sync) of the arming thread counts as one
    step; the n-th closes the connection it was about to use (as a killed process's connections
    close: Postgres rolls back what they had not committed) and raises :class:`Crash`, and so does
    every step after it, so a dying process writes nothing more. Pool threads (opening connections)
    are not counted.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at: int | None = None
        self.steps = 0
        self.dead = False
        self.thread = 0
        execute, end = psycopg.Cursor.execute, psycopg.Pipeline.__exit__
        crasher = self

        def counted_execute(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            crasher.step(cursor.connection)
            return execute(cursor, *args, **kwargs)

        def counted_end(pipeline: Any, *exc: Any) -> None:
            try:
                crasher.step(pipeline._conn)
            except Crash as crash:
                end(pipeline, Crash, crash, None)  # psycopg leaves pipeline mode (on the closed connection)
                raise
            end(pipeline, *exc)

        monkeypatch.setattr(psycopg.Cursor, "execute", counted_execute)
        monkeypatch.setattr(psycopg.Pipeline, "__exit__", counted_end)

    def step(self, connection: psycopg.Connection[Any]) -> None:
        if self.at is None or threading.get_ident() != self.thread:
            return
        if self.dead or self.steps == self.at:
            self.dead = True
            connection.close()
            raise Crash(f"killed before step {self.at}")
        self.steps += 1

    @contextmanager
    def armed(self, at: int) -> Iterator[None]:
        self.at, self.steps, self.dead, self.thread = at, 0, False, threading.get_ident()
        try:
            yield
        finally:
            self.at = None


@pytest.fixture
def crasher(monkeypatch: pytest.MonkeyPatch) -> Crasher:
    return Crasher(monkeypatch)


def process(database_url: str) -> Ledger:
    """A new process's Ledger: its own small pools and empty caches."""
    return Ledger(eventsourcing_env(database_url, pool_size=1, max_overflow=2))


def crash_at_every_point(database_url: str, crasher: Crasher, start: Callable[[Ledger, int], Any],
                         check: Callable[[Ledger, int, bool], None]) -> int:
    """Run ``start(ledger, point)`` in a new process killed before step 0, 1, 2, ... until one run
    completes; after each, ``check(new process, point, completed)``. Returns the crash points tried."""
    point = 0
    while True:
        dying = process(database_url)
        completed = False
        try:
            with crasher.armed(point):
                try:
                    start(dying, point)
                    completed = True
                except Crash:
                    pass
        finally:
            dying.close()  # its connections go: Postgres rolls back what they had not committed
        after = process(database_url)
        try:
            check(after, point, completed)
        finally:
            after.close()
        if completed:
            return point
        point += 1
        assert point < 100, "a start should not take 100 statements"


def assert_books(ledger: Ledger, database_url: str, wallet_id: Any, total: int) -> None:
    """The wallet's money is available or in a hold whose session exists with that hold; the audit agrees."""
    wallet = ledger.wallet(wallet_id)
    assert wallet.available + wallet.held == total
    for hold_id, amount in wallet.holds.items():
        try:
            session = ledger.session(hold_id)
        except NotFound:
            pytest.fail(f"hold {hold_id} of {amount} fen has no session")
        assert (session.wallet_id, session.hold_fen) == (wallet_id, amount)
    report = replay(database_url, live=None, orders=None)
    assert report.ok, report.as_text()


def sessions_opened(database_url: str) -> list[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT state FROM sessions_events WHERE topic LIKE %s ORDER BY notification_id",
                            ("%.Opened",)).fetchall()
    return [json.loads(bytes(r[0]))["trade_no"] for r in rows]


def after_all_holds(database_url: str, wallet_id: Any) -> int:
    ledger = process(database_url)
    try:
        return len(ledger.wallet(wallet_id).holds)
    finally:
        ledger.close()
