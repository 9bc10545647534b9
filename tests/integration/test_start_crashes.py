"""A start is safe at every crash point (issue 11, finding 2).

A start commits the hold, the opened session and, for a driver's start, the Idempotency-Key's record
in one transaction. Here the process is killed, in effect, just before each statement it sends to
Postgres in turn (and before the end of a pipeline, where the queued statements are sent): its
connection closes and a :class:`Crash` is raised there and at every statement after it, so nothing
the dying process would still try (a release in an exception handler, a claim dropped) reaches the
database, as after ``kill -9``. After each crash a new
process (a new Ledger, cold caches) checks the books: the wallet's money is where it was or in a
hold whose session exists, never in a hold with no session, and ``audit replay`` finds nothing.
A connection lost at the commit writes the start once; on the in-memory stores it is one write too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from domain.start_rules import card_start_rules
from adapters.postgres.recorder import LockedInsertRecorder
from domain.ledger import Ledger
from tests.factories import build_world
from tests.integration.crash_points import (
    CARD,
    T0,
    TOP_UP,
    Crasher,
    after_all_holds,
    assert_books,
    crash_at_every_point,
    process,
    sessions_opened,
)
from tests.integration.crash_points import crasher  # noqa: F401  (the fixture)


# ---- a start killed at every point ------------------------------------------------------------
def test_a_start_killed_at_any_point_leaves_no_hold_without_its_session(ledger: Ledger, database_url: str,
                                                                         crasher: Crasher) -> None:
    world = build_world(ledger, top_up=TOP_UP)

    def start(process: Ledger, point: int) -> Any:
        return process.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=10_00,
                                     at=T0 + timedelta(seconds=point), author="driver-1")

    def check(after: Ledger, point: int, completed: bool) -> None:
        assert_books(after, database_url, world.wallet_id, TOP_UP)

    points = crash_at_every_point(database_url, crasher, start, check)
    assert points >= 4  # the reads, and the writes of the start
    assert after_all_holds(database_url, world.wallet_id) == len(sessions_opened(database_url)) >= 1


def test_a_card_start_at_the_pile_killed_at_any_point_leaves_no_hold_without_its_session(
        ledger: Ledger, database_url: str, crasher: Crasher) -> None:
    world = build_world(ledger, top_up=TOP_UP)
    ledger.bind_credential(world.wallet_id, "card", CARD, "driver-1")

    def start(process: Ledger, point: int) -> Any:
        return process.start_at_pile(pile_no=world.pile_no, gun_no=2, kind="card", value=CARD,
                                     at=T0 + timedelta(seconds=point), rules=card_start_rules(20_00))

    def check(after: Ledger, point: int, completed: bool) -> None:
        assert_books(after, database_url, world.wallet_id, TOP_UP)

    crash_at_every_point(database_url, crasher, start, check)
    assert after_all_holds(database_url, world.wallet_id) == len(sessions_opened(database_url)) >= 1


@pytest.mark.parametrize("lost", ["before the commit", "after the commit"])
def test_a_start_whose_connection_drops_at_its_commit_is_written_once(ledger: Ledger, database_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch, lost: str) -> None:
    """The connection drops as the start's transaction is sent, before its COMMIT or after Postgres
    committed it: the retry asks whether it committed, so the start is written exactly once."""
    world = build_world(ledger, top_up=TOP_UP)
    execute, end = psycopg.Cursor.execute, psycopg.Pipeline.__exit__
    dropped: list[bool] = []

    def drop() -> None:
        dropped.append(True)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    def drop_at_commit(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if query == b"COMMIT" and not dropped and lost == "before the commit":
            cursor.connection.close()  # Postgres rolls back the transaction of a connection that went
            drop()
        return execute(cursor, query, *args, **kwargs)

    def drop_after_commit(pipeline: Any, *exc: Any) -> None:
        end(pipeline, *exc)  # sends the statements and the sync, reads the answers
        if not dropped and lost == "after the commit":
            drop()

    writes: list[int] = []
    write = LockedInsertRecorder._write_together

    def counted_write(recorder: LockedInsertRecorder, *args: Any) -> Any:
        writes.append(1)
        return write(recorder, *args)

    monkeypatch.setattr(psycopg.Cursor, "execute", drop_at_commit)
    monkeypatch.setattr(psycopg.Pipeline, "__exit__", drop_after_commit)
    monkeypatch.setattr(LockedInsertRecorder, "_write_together", counted_write)
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=10_00,
                                    at=T0, author="driver-1")
    assert dropped and sessions_opened(database_url) == [trade_no]
    assert len(writes) == (1 if lost == "after the commit" else 2)  # found committed, or written again
    after = process(database_url)
    try:
        assert after.wallet(world.wallet_id).holds == {trade_no: 10_00}
        assert_books(after, database_url, world.wallet_id, TOP_UP)
    finally:
        after.close()


# ---- in memory: the same one transaction ------------------------------------------------------
def test_in_memory_a_start_whose_session_is_refused_writes_no_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the in-memory stores (unit tests, the simulator) the hold and the session are one write too."""
    ledger = Ledger({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    world = build_world(ledger, top_up=TOP_UP)
    sequences = iter([7, 7, 8])  # the driver's start draws the operator's serial first, then another

    class Drawn:
        @staticmethod
        def randrange(_: int) -> int:
            return next(sequences)

    monkeypatch.setattr(ledger, "serials", Drawn)
    taken = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=None, hold_fen=0, at=T0, author="ops")
    before = [type(e).__name__ for e in ledger.wallets.events.get(world.wallet_id)]
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=10_00,
                                    at=T0, author="driver-1")
    assert trade_no != taken and ledger.session(trade_no).hold_fen == 10_00
    after = [type(e).__name__ for e in ledger.wallets.events.get(world.wallet_id)]
    assert after == [*before, "HoldPlaced"]  # no hold on the taken serial, nothing to release
    assert ledger.wallet(world.wallet_id).holds == {trade_no: 10_00}
