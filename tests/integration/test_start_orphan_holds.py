"""The follower of orphan holds (issue 11, finding 2) releases a hold the old two-step start left behind
(a hold, and no session), after the grace only, once however many followers sweep, and never one whose
session exists.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.audit.replay import replay
from domain.ledger import Ledger
from domain.session import make_trade_no
from tests.factories import build_world
from tests.integration.crash_points import T0, TOP_UP, process


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
