"""A start is safe at every crash point (issue 11, finding 2).

A start commits the hold, the opened session and, for a driver's start, the Idempotency-Key's record
in one transaction. Here the process is killed, in effect, just before each statement it sends to
Postgres in turn (and before the end of a pipeline, where the queued statements are sent): its
connection closes and a :class:`Crash` is raised there and at every statement after it, so nothing
the dying process would still try (a release in an exception handler, a claim dropped) reaches the
database, as after ``kill -9``. After each crash a new
process (a new Ledger, cold caches) checks the books: the wallet's money is where it was or in a
hold whose session exists, never in a hold with no session, and ``audit replay`` finds nothing.

Also: two starts with one key at once give one session; a retry after any crash gives the same
session or starts once; the follower of orphan holds releases a hold the old two-step code left
behind, after the grace only, and never one whose session exists.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from adapters.audit.replay import replay
from adapters.api.driver.sessions import DriverSessions
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.driver.starts import StartRequests
from domain.start_rules import StartRules, card_start_rules
from adapters.api.driver.identity import DriverPrincipal, driver_id_of
from adapters.postgres.env import eventsourcing_env
from adapters.postgres.recorder import LockedInsertRecorder
from domain.errors import IdempotencyConflict, NotFound
from domain.ledger import Ledger
from domain.session import make_trade_no
from domain.wallet import Wallet
from tests.factories import build_world

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


def after_all_holds(database_url: str, wallet_id: Any) -> int:
    ledger = process(database_url)
    try:
        return len(ledger.wallet(wallet_id).holds)
    finally:
        ledger.close()


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


# ---- driver starts: one Idempotency-Key, one session --------------------------------------------
@pytest.fixture
def driver(ledger: Ledger) -> Iterator[tuple[DriverPrincipal, Any]]:
    world = build_world(ledger, top_up=0)
    principal = DriverPrincipal(world.tenant_id, driver_id_of("wechat", "wx-main", "o-driver"), "wechat", "wx-main",
                                "o-driver")
    wallet_id = ledger.open_wallet(world.tenant_id, principal.driver_id, "driver")
    ledger.top_up(wallet_id, key="topup:driver", amount=TOP_UP, provider="wechat",
                  payment_ref="wx-driver")
    now = datetime.now(UTC)
    ledger.pile_connected(world.pile_no, now, "test-gateway", 0x16, "v1")
    for gun_no in (1, 2):
        ledger.report_gun(world.pile_no, gun_no, "idle", True, {}, now)
    yield principal, world


SETTINGS = DriverApiSettings("k1=unused", "https://charge.example.com", start_rules=StartRules(5_00, 20_00))


@contextmanager
def api_process(database_url: str, ledger: Ledger | None = None) -> Iterator[DriverSessions]:
    """An API process: its own Ledger (unless given), its own pool, the driver sessions service."""
    own = ledger is None
    ledger = ledger or process(database_url)
    pool = ConnectionPool(database_url, min_size=1, max_size=2, open=True)
    try:
        yield DriverSessions(ledger, StartRequests(pool), SETTINGS)
    finally:
        pool.close()
        if own:
            ledger.close()


def test_a_retry_after_a_driver_start_killed_at_any_point_gets_one_session(
        ledger: Ledger, database_url: str, crasher: Crasher, driver: tuple[DriverPrincipal, Any]) -> None:
    principal, world = driver
    wallet_id = Wallet.create_id(principal.tenant_id, principal.driver_id)
    point = 0
    while True:
        key = f"crash-retry-{point:04d}"
        before = sessions_opened(database_url)
        completed = None
        with api_process(database_url) as dying:
            with crasher.armed(point):
                try:
                    completed = dying.start(principal, world.pile_no, 1, key, now=T0 + timedelta(seconds=point))
                except Crash:
                    pass
        with api_process(database_url) as after:  # the client retries with the same key, a second later
            trade_no, hold, _ = after.start(principal, world.pile_no, 1, key, now=T0 + timedelta(seconds=point + 1))
            opened = sessions_opened(database_url)[len(before):]
            assert opened == [trade_no], f"crash before step {point}: key {key} opened {opened}"
            if completed is not None:
                assert completed[0] == trade_no
            again = after.start(principal, world.pile_no, 1, key, now=T0 + timedelta(seconds=point + 2))
            assert again == (trade_no, hold, False)
            assert_books(after.ledger, database_url, wallet_id, TOP_UP)
        if completed is not None:
            break
        point += 1
        assert point < 100
    assert point >= 4


def test_two_starts_with_one_key_at_once_open_one_session_and_hold_once(
        ledger: Ledger, database_url: str, driver: tuple[DriverPrincipal, Any]) -> None:
    """Two API processes get the same key at the same moment (a client's retry racing its first try):
    both pass the look-up before either commits; one commits, the other's whole transaction (its hold
    too) is refused by the key's record and it answers the winner's session."""
    principal, world = driver
    wallet_id = Wallet.create_id(principal.tenant_id, principal.driver_id)
    with api_process(database_url) as one, api_process(database_url) as two:
        for round_no in range(4):
            key = f"race-same-key-{round_no}"
            barrier = threading.Barrier(2, timeout=10)
            answers: list[Any] = []
            for api in (one, two):
                api.ledger.request_start = meeting_at(barrier, type(api.ledger).request_start.__get__(api.ledger))

            def go(api: DriverSessions, gun_no: int = 1) -> None:
                try:
                    answers.append(api.start(principal, world.pile_no, gun_no, key, now=T0))
                except Exception as error:  # noqa: BLE001 - the answer is what the test compares
                    answers.append(error)

            before = sessions_opened(database_url)
            threads = [threading.Thread(target=go, args=(api,)) for api in (one, two)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert len(answers) == 2 and all(isinstance(a, tuple) for a in answers), answers
            assert answers[0][:2] == answers[1][:2] and sorted(a[2] for a in answers) == [False, True]
            assert sessions_opened(database_url)[len(before):] == [answers[0][0]]
            assert ledger.wallet(wallet_id).holds.get(answers[0][0]) == answers[0][1]
        assert_books(ledger, database_url, wallet_id, TOP_UP)


def test_one_key_racing_for_two_guns_opens_one_session_and_refuses_the_other(
        ledger: Ledger, database_url: str, driver: tuple[DriverPrincipal, Any]) -> None:
    principal, world = driver
    wallet_id = Wallet.create_id(principal.tenant_id, principal.driver_id)
    with api_process(database_url) as one, api_process(database_url) as two:
        barrier = threading.Barrier(2, timeout=10)
        for api in (one, two):
            api.ledger.request_start = meeting_at(barrier, type(api.ledger).request_start.__get__(api.ledger))
        answers: dict[int, Any] = {}

        def go(api: DriverSessions, gun_no: int) -> None:
            try:
                answers[gun_no] = api.start(principal, world.pile_no, gun_no, "race-two-guns", now=T0)
            except IdempotencyConflict as error:
                answers[gun_no] = error

        threads = [threading.Thread(target=go, args=(api, gun)) for api, gun in ((one, 1), (two, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        won = [a for a in answers.values() if isinstance(a, tuple)]
        assert len(won) == 1 and len([a for a in answers.values() if isinstance(a, IdempotencyConflict)]) == 1
        assert sessions_opened(database_url) == [won[0][0]]
        assert_books(ledger, database_url, wallet_id, TOP_UP)


def meeting_at(barrier: threading.Barrier, request_start: Callable[..., str]) -> Callable[..., str]:
    """request_start that first waits for the other process to reach it too (or 10 s)."""
    def start(**kwargs: Any) -> str:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            pass
        return request_start(**kwargs)
    return start


# ---- the follower of orphan holds --------------------------------------------------------------
def old_two_step_hold(ledger: Ledger, wallet_id: Any, pile_no: str, seq: int, amount: int) -> str:
    """What the pre-fix start left when killed between its two commits: a hold, and no session."""
    trade_no = make_trade_no(pile_no, 1, T0, seq)
    ledger.hold(wallet_id, key=f"hold:{trade_no}", hold_id=trade_no, amount=amount)
    return trade_no


def test_the_follower_releases_a_hold_with_no_session_after_the_grace_only(ledger: Ledger,
                                                                            database_url: str) -> None:
    from adapters.followers.orphan_holds import GRACE, OrphanHolds

    world = build_world(ledger, top_up=TOP_UP)
    placed = datetime.now(UTC)
    orphan = old_two_step_hold(ledger, world.wallet_id, world.pile_no, 1, 30_00)
    started = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=20_00,
                                   at=T0, author="driver-1")
    ledger.hold(world.wallet_id, key="hold:not-a-session", hold_id="not-a-session", amount=5_00)
    follower = OrphanHolds(ledger, database_url)

    assert follower.sweep(placed + GRACE - timedelta(seconds=30)) == []  # the start may still be committing
    assert set(ledger.wallet(world.wallet_id).holds) == {orphan, started, "not-a-session"}

    assert follower.sweep(placed + GRACE + timedelta(seconds=30)) == [orphan]
    wallet = ledger.wallet(world.wallet_id)
    assert set(wallet.holds) == {started, "not-a-session"}
    assert wallet.outcomes.get(f"release:{orphan}") is not None  # request_start's own release key

    assert follower.sweep(placed + timedelta(days=1)) == []
    other = process(database_url)  # a second watchdog, later: nothing more
    try:
        assert OrphanHolds(other, database_url).sweep(placed + timedelta(days=2)) == []
    finally:
        other.close()
    assert set(ledger.wallet(world.wallet_id).holds) == {started, "not-a-session"}


def test_two_followers_sweeping_at_once_release_an_orphan_once(ledger: Ledger, database_url: str) -> None:
    from adapters.followers.orphan_holds import GRACE, OrphanHolds

    world = build_world(ledger, top_up=TOP_UP)
    placed = datetime.now(UTC)
    orphans = {old_two_step_hold(ledger, world.wallet_id, world.pile_no, seq, 1_00) for seq in range(1, 9)}
    others = [process(database_url) for _ in range(2)]
    try:
        followers = [OrphanHolds(other, database_url) for other in others]
        barrier = threading.Barrier(2)
        released: list[list[str]] = []

        def sweep(follower: OrphanHolds) -> None:
            barrier.wait()
            released.append(follower.sweep(placed + GRACE + timedelta(seconds=30)))

        threads = [threading.Thread(target=sweep, args=(f,)) for f in followers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(k for r in released for k in r) == sorted(orphans)
    finally:
        for other in others:
            other.close()
    wallet = ledger.wallet(world.wallet_id)
    assert (wallet.available, wallet.held) == (TOP_UP, 0)
    releases = [e for e in ledger.wallets.events.get(world.wallet_id) if type(e).__name__ == "Released"]
    assert len(releases) == len(orphans)
    report = replay(database_url, live=None, orders=None)
    assert report.ok, report.as_text()


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
