"""Every follower role twice, as ``chargeledger serve --role ...`` processes (issue 15, item 1): kill -9 the
one doing the work, and the other carries on within seconds, nothing lost and nothing done twice.

* ``relay`` and ``projections`` lead by an advisory lock each: the standby takes the lock after the kill
  and catches up (the relay's stream equals the logs; the views reach the logs' heads).
* ``watchdog``: both sweep, taking turns; after one is killed the survivor applies the deadlines that
  come due, each session failed once.

Each prints the measured takeover (``TAKEOVER <role> <seconds>``), quoted in docs/operations.md.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import psycopg

from adapters.postgres.leader_lock import holder_pid
from adapters.followers.relay.leader import RELAY_LOCK
from adapters.postgres.env import eventsourcing_env
from adapters.postgres.leader_lock import PROJECTIONS_LOCK
from adapters.servers.nats_users import READER, RELAY
from domain.ledger import Ledger
from projections.runner import Projections
from tests.e2e.relay_harness import CLI, Processes, backlog, caught_up, ledger_id
from tests.e2e.relay_harness import processes  # noqa: F401  (the fixture)
from tests.e2e.test_watchdog import closing_events, requested_sessions
from tests.factories import build_world
from tests.integration.test_relay import assert_stream_is_the_logs, charge_sessions, read_stream, wait_for


holder = holder_pid  # the pid leading by an advisory lock (adapters/postgres/leader_lock.py)


def serve_twice(processes: Processes, role: str, *options: str) -> list:
    return [processes.start(f"{role}-{i}", "-c", CLI, "serve", "--role", role, *options) for i in (1, 2)]


def kill_leader(processes: Processes, procs: list, database_url: str, key: int) -> tuple[object, float]:
    """kill -9 the holder of ``key``; returns (the standby, seconds until it held the lock)."""
    wait_for(lambda: holder(database_url, key) in {p.pid for p in procs}, timeout=60)
    processes.alive(*procs)
    leading = next(p for p in procs if p.pid == holder(database_url, key))
    standby = next(p for p in procs if p is not leading)
    leading.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    leading.wait(timeout=30)
    wait_for(lambda: holder(database_url, key) == standby.pid, timeout=30)
    return standby, time.monotonic() - killed


def test_two_relays_served_by_role_a_kill_9_of_the_leader_and_the_standby_publishes_the_rest(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str],
        processes: Processes) -> None:
    world = build_world(ledger)
    processes.env.update(DATABASE_URL=database_url, NATS_URL=nats_role_urls[RELAY])
    relays = serve_twice(processes, "relay")
    charge_sessions(ledger, world, 5)
    wait_for(lambda: caught_up(ledger, database_url), timeout=120)
    standby, takeover = kill_leader(processes, relays, database_url, RELAY_LOCK)
    backlog(ledger, world, 1000)
    wait_for(lambda: caught_up(ledger, database_url), timeout=120)
    processes.alive(standby)
    print(f"\nTAKEOVER relay {takeover:.2f}")
    assert_stream_is_the_logs(ledger, ledger_id(database_url), asyncio.run(read_stream(nats_url)))


def views_at_heads(ledger: Ledger, database_url: str) -> bool:
    with Projections(ledger.applications, eventsourcing_env(database_url, pool_size=1)) as views:
        return views.caught_up()


def test_two_projections_one_leads_the_other_stands_by_and_takes_over_after_a_kill_9(
        ledger: Ledger, database_url: str, nats_role_urls: dict[str, str], processes: Processes) -> None:
    world = build_world(ledger)
    processes.env.update(DATABASE_URL=database_url, NATS_URL=nats_role_urls[READER], LOG_LEVEL="INFO")
    procs = serve_twice(processes, "projections", "--standby-interval", "0.5")
    charge_sessions(ledger, world, 5)
    wait_for(lambda: views_at_heads(ledger, database_url), timeout=120)
    wait_for(lambda: all("projections: standby" in processes.log(p) or "projections: leading" in processes.log(p)
                         for p in procs), timeout=30)
    assert ["projections: leading" in processes.log(p) for p in procs].count(True) == 1, "both led at once"
    standby, takeover = kill_leader(processes, procs, database_url, PROJECTIONS_LOCK)
    killed_at = time.monotonic() - takeover
    charge_sessions(ledger, world, 5)
    backlog(ledger, world, 2000)
    wait_for(lambda: views_at_heads(ledger, database_url), timeout=120)
    caught = time.monotonic() - killed_at
    processes.alive(standby)
    assert "projections: leading" in processes.log(standby)
    print(f"\nTAKEOVER projections {takeover:.2f} (views caught up {caught:.2f} s after the kill)")
    with psycopg.connect(database_url) as conn:  # one order row per session: nothing applied twice
        sessions = conn.execute("SELECT count(*) FROM sessions_events WHERE originator_version = 1 "
                                "AND topic LIKE '%ChargingSession%'").fetchone()[0]
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    assert sessions == orders == 11  # 5 + 5 charging sessions and the backlog's


def test_two_watchdogs_one_killed_and_the_survivor_applies_every_deadline_once(
        ledger: Ledger, database_url: str, nats_role_urls: dict[str, str], processes: Processes) -> None:
    world = build_world(ledger, top_up=100_00)
    processes.env.update(DATABASE_URL=database_url, NATS_URL=nats_role_urls[READER])
    procs = serve_twice(processes, "watchdog", "--interval", "0.2")
    first = requested_sessions(ledger, world, 4, datetime.now(timezone.utc) - timedelta(minutes=5))
    wait_for(lambda: sum(closing_events(ledger)[0].values()) == len(first), timeout=60)
    processes.alive(*procs)
    procs[0].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    procs[0].wait(timeout=30)
    second = requested_sessions(ledger, world, 4, datetime.now(timezone.utc) - timedelta(minutes=5))
    wait_for(lambda: sum(closing_events(ledger)[0].values()) == len(first) + len(second), timeout=60)
    took = time.monotonic() - killed
    processes.alive(procs[1])
    print(f"\nTAKEOVER watchdog {took:.2f} (4 due start deadlines applied by the survivor)")
    # each hold's release is the wallet's own transaction just after its session's Failed: wait for the last
    wait_for(lambda: closing_events(ledger)[1] >= len(first + second), timeout=30)
    failed, released = closing_events(ledger)
    assert failed == Counter({t: 1 for t in first + second}) and released == len(first + second)
    assert ledger.wallet(world.wallet_id).held == 0
