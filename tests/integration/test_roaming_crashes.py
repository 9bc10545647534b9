"""A roaming charge's money on Postgres: its start, its order and its failure killed at every point, the audit
replay of the stored events, and the other followers of the Sessions log meeting the new events.

Each command that moves money saves the charge and the wallet in one transaction, so a process killed
before any statement leaves both as they were or both changed: a ``roam:`` hold exists exactly while
its charge is open, what the wallet paid the peer is the charge's bill, and ``audit replay`` finds
nothing (tests/integration/crash_points.py kills the process as test_start_crashes.py does).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from adapters.audit.replay import replay
from adapters.followers.watchdog import Watchdog
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from projections import health
from projections.runner import Projections
from tests.factories import build_world
from tests.integration.crash_points import T0, Crasher, crash_at_every_point
from tests.integration.crash_points import crasher  # noqa: F401  (the fixture)
from tests.integration.test_roaming_charges import PEER, seq, settle, start


def assert_books(ledger: Ledger, database_url: str, world: Any, total: int) -> None:
    """Every open charge holds its hold and only those; what the peer is owed is the settled bills; the
    driver's money adds up; the audit agrees."""
    wallet = ledger.wallet(world.wallet_id)
    charges = [c for n in range(1, 4) if (c := ledger.find_roaming(world.tenant_id, PEER, seq(n)))]
    assert wallet.holds == {c.hold_id: c.hold_fen for c in charges if c.is_open}
    owed = sum(c.bill["total_fen"] for c in charges if c.state == "settled")
    assert -wallet.balances.get(f"payable:{PEER}", 0) == owed
    assert wallet.available + wallet.held - wallet.arrears == total - owed
    report = replay(database_url, live=None, orders=None)
    assert report.ok, report.as_text()
    assert report.accounts.get(f"payable:{PEER}", 0) == -owed


@pytest.mark.parametrize("step", ["start", "settle above the hold", "settle below the hold", "fail"])
def test_a_roaming_command_killed_at_any_point_leaves_the_charge_and_the_wallet_agreeing(
        ledger: Ledger, database_url: str, crasher: Crasher, step: str) -> None:
    world = build_world(ledger, top_up=100_00)
    if step != "start":
        start(ledger, world)

    def command(process: Ledger, point: int) -> Any:
        charge = process.find_roaming(world.tenant_id, PEER, seq(1))
        if step == "start":
            return start(process, world, at=T0 + timedelta(seconds=point))
        if step == "fail":
            return process.roaming_failed(charge.id, at=T0, reason="refused")
        return settle(process, charge, 31_00 if step == "settle above the hold" else 12_00, 3_00)

    def check(after: Ledger, point: int, completed: bool) -> None:
        assert_books(after, database_url, world, 100_00)

    assert crash_at_every_point(database_url, crasher, command, check) >= 2
    final = ledger.find_roaming(world.tenant_id, PEER, seq(1))
    assert final is not None
    assert final.state == {"start": "requested", "fail": "failed"}.get(step, "settled")


def test_the_audit_replay_is_clean_and_the_peers_payables_equal_their_bills(ledger: Ledger,
                                                                             database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    a, b, c, d = (start(ledger, world, n=n, hold_fen=20_00, peer=peer)
                  for n, peer in ((1, PEER), (2, PEER), (3, "CPLATFORM"), (4, PEER)))
    settle(ledger, a, 22_00, 2_00)  # above the hold (by what a pile runs on)
    settle(ledger, b, 5_00, 1_00)  # below it
    settle(ledger, c, 8_00, 0)
    settle(ledger, c, 9_00, 0)  # a differing order: disputed, no money
    ledger.roaming_failed(d.id, at=T0, reason="refused")
    ledger.top_up(world.wallet_id, key="t2", amount=10_00, provider="cash", payment_ref="cash")
    for fast in (True, False):
        report = replay(database_url, fast=fast)
        assert report.ok, report.as_text()
        assert (report.accounts["payable:APLATFORM"], report.accounts["payable:CPLATFORM"]) == (-30_00, -8_00)
        assert report.checks["roaming_match_wallets"] == {"status": "ok", "checked": 4, "differences": 0}
        assert report.counts["roaming_by_state"] == {"settled": 3, "failed": 1}
        assert report.trial_balance == 0 and "revenue:electricity" not in report.accounts
    # a hold whose charge failed without the wallet following is found
    e = start(ledger, world, n=5, hold_fen=5_00)
    ledger.sessions.update(e.id, type(e), "roaming charge", lambda charge: charge.fail(T0, "no wallet"))
    report = replay(database_url)
    assert [d.check for d in report.differences] == ["holds_closed"] and seq(5) in report.differences[0].message


def test_the_other_followers_of_the_sessions_log_pass_over_roaming_events(ledger: Ledger, database_url: str) -> None:
    """The views, the watchdog (deadline index, wallet follow-ups, orphan holds) read the Sessions and
    Wallets logs with roaming events in them: none fails, none acts on a roaming charge's hold."""
    world = build_world(ledger, top_up=100_00)
    charge = start(ledger, world)
    settle(ledger, start(ledger, world, n=2), 10_00, 0)
    ledger.roaming_failed(start(ledger, world, n=3).id, at=T0, reason="refused")
    with Projections(ledger.applications, eventsourcing_env(database_url)) as views:
        views.catch_up()
        assert views.caught_up()
    with psycopg.connect(database_url) as conn:
        assert health.failing(conn) == []
    watchdog = Watchdog(ledger, database_url)
    assert watchdog.sweep(T0 + timedelta(days=1)) == []
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM wallet_followups").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM orphan_hold_checks").fetchone()[0] == 0
    assert ledger.wallet(world.wallet_id).holds == {charge.hold_id: 30_00}  # still its open charge's
