"""The fault suite (issue 11): the documented multi-process deployment, a small fleet charging, and one
role killed (kill -9) or one server stopped per scenario; afterwards nothing is lost.

Every role is its own OS process started from the CLI (``tests/cluster.py``): two ``chargeledger
relay`` (a leader and a standby), ``gateway --no-relay --no-watchdog``, ``watchdog``, ``projections
run``, ``api``, and ``simulate --drain`` with 6 piles x 2 guns charging at x30 speed. Drivers start and
stop through the real HTTP driver API (a token signed with the API's key, as a login would give; a
wallet topped up in cash at the counter); the watchdog scenario adds operator starts on piles that
never answer, back-dated so their 90 s start deadline is already due.

Scenarios, in order, each seeded (``random.Random(seed)`` picks the moments and the victims; the seed is
printed; ``CHARGELEDGER_FAULT_SEED=<n>`` replays the choices):

* kill -9 of the API during a burst of starts; every driver retries with the same Idempotency-Key;
* kill -9 of the gateway during a burst of stops (and the records they produce), restarted;
* kill -9 of the leading relay mid-batch (a backlog of 2,000 readings being published); the standby
  takes over; the killed one restarted (as the standby);
* kill -9 of the watchdog with start deadlines due (and more falling due while it is down), restarted;
* kill -9 of the projections mid-batch, restarted;
* NATS stopped for 25 s: longer than any NATS timeout of a role (the relay's and the gateway's
  reconnect pauses top out at 10 s; their clients never give up reconnecting);
* Postgres stopped for 55 s, the fleet drained during the outage (records wait for it): past the ~50 s after which the relay used to die and longer than every
  database timeout (the watchdog's backoff tops out at 30 s, the relay's at 10 s, the gateway's
  write-behind at 5 s, a pooled connection wait at 10 s).

After each: the fleet is drained (SIGTERM to ``simulate --drain``: exit 0 = every record confirmed),
then every session is terminal, every hold closed, the trial balance zero, ``audit replay`` finds 0
differences, the JetStream stream equals the database's notification logs one for one (each event
once, in order, same bytes), the projections have caught up and the orders view has one row per
session. Each scenario prints its recovery times (``RECOVERY <scenario> <measure> <seconds>``):
these are the figures in docs/operations.md.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import psycopg
import pytest

from adapters.followers.relay.leader import RELAY_LOCK
from adapters.postgres.leader_lock import holder_pid
from tests.cluster import wait_for
from tests.e2e.fault_deployment import (
    GUNS,
    NATS_OUTAGE,
    PG_OUTAGE,
    ROLES,
    SILENT_PILES,
    Suite,
    api_up,
    drain_and_check,
    figure,
    heads,
    load,
    projections_at,
    relay_at,
    restart_simulate,
    rng_for,
    session,
    session_ids,
    sessions_head,
    start,
    start_fleet,
    start_until_accepted,
    stop,
    terminal,
)
from tests.e2e.fault_deployment import suite  # noqa: F401  (the fixture)


# ---- the scenarios ------------------------------------------------------------------------------------
@pytest.mark.timeout(240)
def test_api_killed_during_a_burst_of_starts(suite: Suite) -> None:
    s, c, rng = suite, suite.cluster, rng_for("api")
    restart_simulate(s)
    mark = sessions_head(s)
    keys = {i: f"api-burst-{i}" for i in range(len(s.guns))}
    first: dict[int, httpx.Response | None] = {}

    def burst(i: int) -> None:
        time.sleep(rng_delays[i])
        first[i] = start(s, i, keys[i])

    rng_delays = [rng.uniform(0, 0.3) for _ in keys]
    threads = [threading.Thread(target=burst, args=(i,)) for i in keys]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.1, 0.5))
    c.kill("api")
    for t in threads:
        t.join(30)
    time.sleep(rng.uniform(0.2, 1.5))
    c.start("api")
    restarted = time.monotonic()
    trades = {i: start_until_accepted(s, i, keys[i]) for i in keys}
    figure("api kill -9", "restart to every start answered", time.monotonic() - restarted)
    for i, r in first.items():  # an answer before the kill is the one the retry gets
        if r is not None and r.status_code == 202:
            assert r.json()["trade_no"] == trades[i]
    opened = load(s, session_ids(s, mark))
    by_wallet: dict[UUID, list[str]] = {}
    for x in opened:
        by_wallet.setdefault(x.wallet_id, []).append(x.trade_no)
    for i, trade_no in trades.items():  # one key, one session
        assert by_wallet.get(s.drivers[i].wallet_id) == [trade_no], (i, by_wallet.get(s.drivers[i].wallet_id))
    print(f"api: {sum(1 for r in first.values() if r is not None and r.status_code == 202)} of {len(keys)} "
          "starts answered before the kill")
    wait_for(lambda: all(session(s, t).state == "charging" for t in trades.values()), 60, "every start charging")
    drain_and_check(s, "api")


@pytest.mark.timeout(240)
def test_gateway_killed_during_stops_and_records(suite: Suite) -> None:
    s, c, rng = suite, suite.cluster, rng_for("gateway")
    restart_simulate(s)
    trades = start_fleet(s, "gateway")
    order = list(trades)
    rng.shuffle(order)
    kill_after = rng.uniform(0.1, 0.8)

    def stops() -> None:
        for i in order:
            stop(s, i, trades[i])
            time.sleep(0.05)

    stopper = threading.Thread(target=stops)
    stopper.start()
    time.sleep(kill_after)
    c.kill("gateway")
    time.sleep(rng.uniform(0.5, 3.0))
    c.start("gateway")
    restarted = time.monotonic()
    stopper.join(120)
    wait_for(lambda: terminal(s, trades.values()), 120, "every stopped session terminal")
    figure("gateway kill -9", "restart to every stop settled", time.monotonic() - restarted)
    for t in trades.values():  # stopped by the platform's 0x36 (0x40), not by the drain yet
        x = session(s, t)
        assert x.state == "finished" and x.record["stop_reason"] != 0x45, (t, x.state, x.record)
    drain_and_check(s, "gateway")


def relay_leader(s: Suite) -> int | None:
    """The pid of the relay process holding the leader's lock (None: none leads)."""
    return holder_pid(s.cluster.database_url, RELAY_LOCK)


@pytest.mark.timeout(240)
def test_relay_leader_killed_mid_batch(suite: Suite) -> None:
    """A backlog of 2,000 readings (an operator's session on a silent pile, written 500 to a transaction)
    is being published when the leader is killed: the standby takes over, publishes each event once."""
    s, c, rng = suite, suite.cluster, rng_for("relay")
    restart_simulate(s)
    trades = start_fleet(s, "relay")
    now = datetime.now(UTC)
    backlog = s.ledger.request_start(pile_no=SILENT_PILES[0], gun_no=1, wallet_id=s.ops_wallet, hold_fen=10_00,
                                     at=now, author="ops")
    s.trades.add(backlog)
    s.ledger.acknowledge_start(backlog, at=now, ok=True)
    s.ledger.mark_charging(backlog, at=now)
    wait_for(lambda: relay_leader(s) is not None, 30, "a relay leads")
    leader_pid = relay_leader(s)
    victim = next(name for name in ("relay-a", "relay-b") if c.pid(name) == leader_pid)
    kill_after = rng.uniform(0.2, 1.0)
    writing = time.monotonic()
    for first in range(0, 2000, 500):
        s.ledger.record_readings([{"trade_no": backlog, "at": now + timedelta(seconds=i + 1), "energy": i + 1}
                                  for i in range(first, first + 500)])
    time.sleep(max(0.0, writing + kill_after - time.monotonic()))
    target = heads(s)
    with psycopg.connect(c.database_url) as conn:
        behind = target["Sessions"] - conn.execute(
            "SELECT notification_id FROM relay_tracking WHERE application_name = 'Sessions'").fetchone()[0]
    c.kill(victim)
    killed = time.monotonic()
    print(f"relay: leader {victim} killed {kill_after:.2f} s into a backlog of 2,000 readings, "
          f"{behind} Sessions events behind")
    stopped = rng.sample(sorted(trades), len(trades) // 2)
    for i in stopped:  # these reach the gateway only through the relay that takes over
        stop(s, i, trades[i])
    wait_for(lambda: relay_leader(s) not in (None, leader_pid), 30, "the standby leads")
    figure("relay kill -9 (leader)", "kill to standby leading", time.monotonic() - killed)
    wait_for(lambda: relay_at(s, target), 60, "the standby caught up")
    figure("relay kill -9 (leader)", "kill to backlog published", time.monotonic() - killed)
    wait_for(lambda: terminal(s, [trades[i] for i in stopped]), 90, "the stopped sessions terminal")
    figure("relay kill -9 (leader)", "kill to every stop settled", time.monotonic() - killed)
    s.ledger.force_close(backlog, at=datetime.now(UTC), reason="silent pile", author="ops")
    time.sleep(rng.uniform(0.2, 1.5))
    c.start(victim)  # back, as the standby
    drain_and_check(s, "relay")


@pytest.mark.timeout(240)
def test_watchdog_killed_with_deadlines_due(suite: Suite) -> None:
    s, c, rng = suite, suite.cluster, rng_for("watchdog")
    restart_simulate(s)
    start_fleet(s, "watchdog")
    guns = [(p, g) for p in SILENT_PILES for g in range(1, GUNS + 1)]
    rng.shuffle(guns)
    before = rng.randint(1, len(guns) - 1)

    def due_start(pile_no: str, gun_no: int) -> str:
        """An operator's start on a pile that never answers, 100 s ago: its 90 s deadline is due."""
        trade_no = s.ledger.request_start(pile_no=pile_no, gun_no=gun_no, wallet_id=s.ops_wallet, hold_fen=10_00,
                                          at=datetime.now(UTC) - timedelta(seconds=100), author="ops")
        s.trades.add(trade_no)
        return trade_no

    due = [due_start(*g) for g in guns[:before]]
    time.sleep(rng.uniform(0.0, 1.2))
    c.kill("watchdog")
    due += [due_start(*g) for g in guns[before:]]  # fall due while no watchdog runs
    time.sleep(rng.uniform(0.5, 2.5))
    open_at_restart = sum(1 for t in due if session(s, t).is_open)
    c.start("watchdog")
    restarted = time.monotonic()
    wait_for(lambda: terminal(s, due), 60, "every due session expired")
    figure("watchdog kill -9", "restart to every due deadline applied", time.monotonic() - restarted)
    print(f"watchdog: {len(due)} deadlines due, {open_at_restart} still open at the restart")
    for t in due:
        assert session(s, t).state == "failed"
    assert s.ledger.wallet(s.ops_wallet).held == 0
    drain_and_check(s, "watchdog")


@pytest.mark.timeout(240)
def test_projections_killed_mid_batch(suite: Suite) -> None:
    s, c, rng = suite, suite.cluster, rng_for("projections")
    restart_simulate(s)
    trades = start_fleet(s, "projections")
    time.sleep(rng.uniform(0.3, 2.0))
    c.kill("projections")
    for i in rng.sample(sorted(trades), len(trades) // 2):
        stop(s, i, trades[i])
    time.sleep(rng.uniform(0.5, 3.0))
    target = heads(s)
    c.start("projections")
    restarted = time.monotonic()
    wait_for(lambda: projections_at(s, target), 60, "the projections caught up")
    figure("projections kill -9", "restart to caught up", time.monotonic() - restarted)
    drain_and_check(s, "projections")


@pytest.mark.timeout(300)
def test_nats_stopped_longer_than_any_timeout(suite: Suite) -> None:
    s, c, rng = suite, suite.cluster, rng_for("nats")
    restart_simulate(s)
    trades = start_fleet(s, "nats")
    time.sleep(rng.uniform(0.3, 1.5))
    c.nats.stop()
    stopped_at = time.monotonic()
    victims = rng.sample(sorted(trades), len(trades) // 2)
    moments = sorted(rng.uniform(0, NATS_OUTAGE - 2) for _ in victims)
    for i, moment in zip(victims, moments):  # drivers stop while NATS is away: owed until delivered
        time.sleep(max(0.0, stopped_at + moment - time.monotonic()))
        stop(s, i, trades[i])
    time.sleep(max(0.0, stopped_at + NATS_OUTAGE - time.monotonic()))
    c.alive(*ROLES)
    c.nats.start()
    back = time.monotonic()
    target = heads(s)
    wait_for(lambda: relay_at(s, target), 90, "the relay caught up")
    figure("NATS down 25 s", "back to relay caught up", time.monotonic() - back)
    wait_for(lambda: terminal(s, [trades[i] for i in victims]), 90, "the stops asked during the outage settled")
    figure("NATS down 25 s", "back to every stop settled", time.monotonic() - back)
    drain_and_check(s, "nats")


@pytest.mark.timeout(360)
def test_postgres_stopped_longer_than_any_timeout(suite: Suite) -> None:
    """Stops asked just before the outage, and the fleet drained during it: the piles stop, their
    records wait (unanswered) until Postgres is back, then every one is stored and confirmed."""
    s, c, rng = suite, suite.cluster, rng_for("postgres")
    restart_simulate(s)
    trades = start_fleet(s, "postgres")
    victims = rng.sample(sorted(trades), len(trades) // 2)
    for i in victims:  # asked just before the outage: their stops and records may cross it
        stop(s, i, trades[i])
    time.sleep(rng.uniform(0.0, 1.0))
    c.postgres.stop()
    stopped_at = time.monotonic()
    time.sleep(rng.uniform(5.0, PG_OUTAGE - 10))
    os.killpg(c.pid("simulate"), signal.SIGTERM)  # drained while Postgres is away
    time.sleep(max(0.0, stopped_at + PG_OUTAGE - time.monotonic()))
    c.alive(*ROLES, "simulate")
    c.postgres.start()
    back = time.monotonic()
    s.reopen_ledger()
    wait_for(lambda: api_up(s), 60, "the API answers")
    figure("Postgres down 55 s", "back to the API answering", time.monotonic() - back)
    rc = c.processes["simulate"].wait(120)
    assert rc == 0, f"simulate --drain exit {rc}:\n{c.log('simulate')}"
    figure("Postgres down 55 s", "back to every record confirmed", time.monotonic() - back)
    wait_for(lambda: terminal(s, trades.values()), 120, "every session terminal")
    figure("Postgres down 55 s", "back to every session terminal", time.monotonic() - back)
    target = heads(s)
    wait_for(lambda: relay_at(s, target), 120, "the relay caught up")
    figure("Postgres down 55 s", "back to relay caught up", time.monotonic() - back)
    wait_for(lambda: projections_at(s, target), 120, "the projections caught up")
    figure("Postgres down 55 s", "back to projections caught up", time.monotonic() - back)
    drain_and_check(s, "postgres")
