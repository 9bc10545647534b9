"""Driver starts (issue 11, finding 2): one Idempotency-Key, one session. Two starts with one key at once
give one session; a retry after a start killed at any point gives the same session or starts once; one
key racing for two guns opens one session and refuses the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from adapters.api.driver.sessions import DriverSessions
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.driver.starts import StartRequests
from domain.start_rules import StartRules
from adapters.api.driver.identity import DriverPrincipal, driver_id_of
from domain.errors import IdempotencyConflict
from domain.ledger import Ledger
from domain.wallet import Wallet
from tests.factories import build_world
from tests.integration.crash_points import T0, TOP_UP, Crash, Crasher, assert_books, process, sessions_opened
from tests.integration.crash_points import crasher  # noqa: F401  (the fixture)


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
