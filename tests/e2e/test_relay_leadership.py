"""Two relays at once (issue 11.3), with real Postgres and NATS: threads, and separate ``chargeledger relay``
processes. One leads (a Postgres advisory lock), the other stands by; every event reaches the stream
exactly once and neither dies. A leader whose lock connection breaks, or that is killed (kill -9)
mid-batch: a relay takes over within seconds, and the stream holds each notification exactly once
(compared one for one with the notification logs)."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import psycopg

from adapters.servers.nats_users import RELAY
from adapters.postgres.env import eventsourcing_env
from adapters.followers.relay.leader import RELAY_LOCK
from adapters.followers.relay.publisher import Relay
from domain.ledger import Ledger
from tests.factories import build_world
from tests.integration.test_relay import assert_stream_is_the_logs, charge_sessions, read_stream, wait_for
from tests.e2e.relay_harness import (
    CLI,
    Processes,
    backlog,
    caught_up,
    last_on_stream,
    leader,
    ledger_id,
    relay_thread,
    tracked,
)
from tests.e2e.relay_harness import processes  # noqa: F401  (the fixture)


# ---- 11.3: two relays -----------------------------------------------------------------------------------
def test_two_relays_in_one_process_publish_every_event_once_and_neither_dies(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str]) -> None:
    env = eventsourcing_env(database_url)
    first = Relay(ledger.applications, env, nats_role_urls[RELAY], batch_size=20)
    second = Relay(ledger.applications, env, nats_role_urls[RELAY], batch_size=20)
    world = build_world(ledger)
    with relay_thread(first) as first_thread, relay_thread(second) as second_thread:
        charge_sessions(ledger, world, 20)
        backlog(ledger, world, 300)
        wait_for(lambda: caught_up(ledger, database_url)
                 or not (first_thread.is_alive() and second_thread.is_alive()))
        assert first_thread.is_alive() and second_thread.is_alive(), "a relay died"
        events = sum(len(app.recorder.select_notifications(None, 1_000_000)) for app in ledger.applications)
        assert first.published + second.published == events, "both published: one should have stood by"
        assert [first.is_leader, second.is_leader].count(True) == 1
        leading, standing_by = (first, second) if first.is_leader else (second, first)
        leading.stop()  # lets its lock go: the standby takes over
        wait_for(lambda: standing_by.is_leader, timeout=30)
        charge_sessions(ledger, world, 5)
        wait_for(lambda: caught_up(ledger, database_url))
        assert standing_by.published > 0 and standing_by.errors == 0
    assert not first_thread.is_alive() and not second_thread.is_alive()
    assert_stream_is_the_logs(ledger, first.ledger_id, asyncio.run(read_stream(nats_url)))


def test_a_leader_whose_lock_connection_breaks_stops_and_a_relay_takes_over(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str]) -> None:
    """The session holding the leader's lock is killed three times while events stream in: each time
    the leader stops publishing and a relay (either) takes the lock again; nothing is lost, repeated
    or reordered, and neither relay dies."""
    env = eventsourcing_env(database_url)
    relays = [Relay(ledger.applications, env, nats_role_urls[RELAY], batch_size=50) for _ in range(2)]
    world = build_world(ledger)
    with relay_thread(relays[0]) as first, relay_thread(relays[1]) as second:
        wait_for(lambda: leader(database_url) is not None)
        writer = threading.Thread(target=backlog, args=(ledger, world, 4000))
        writer.start()
        try:
            for _ in range(3):
                wait_for(lambda: leader(database_url) is not None, timeout=30)
                before = sum(r.takeovers for r in relays)
                with psycopg.connect(database_url, autocommit=True) as conn:
                    conn.execute("SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' "
                                 "AND l.granted AND l.objid = %s AND l.database = (SELECT oid FROM pg_database "
                                 "WHERE datname = current_database())", (RELAY_LOCK,))
                wait_for(lambda: sum(r.takeovers for r in relays) > before, timeout=30)
                time.sleep(0.3)
        finally:
            writer.join()
        wait_for(lambda: caught_up(ledger, database_url), timeout=120)
        assert first.is_alive() and second.is_alive()
    assert sum(r.takeovers for r in relays) >= 4
    assert_stream_is_the_logs(ledger, relays[0].ledger_id, asyncio.run(read_stream(nats_url)))


def test_two_relay_processes_and_a_kill_9_of_the_leader_mid_batch(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str],
        processes: Processes) -> None:
    """Two ``chargeledger relay`` processes relay a backlog: one leads, the other stands by, neither
    dies. Then the leader is killed (SIGKILL) in the middle of a batch of a second backlog: the standby
    takes the lock within seconds, and the stream ends up with every notification exactly once."""
    world = build_world(ledger)
    backlog(ledger, world, 3000)
    # one acknowledgement at a time: the window (docs/operations.md) publishes a batch so fast that the moment
    # between a batch published and its position recorded, which this test kills the leader in, is hard to catch
    processes.env.update(DATABASE_URL=database_url, NATS_URL=nats_role_urls[RELAY], RELAY_WINDOW="1")
    relays = [processes.start("relay-1", "-c", CLI, "relay"), processes.start("relay-2", "-c", CLI, "relay")]
    wait_for(lambda: caught_up(ledger, database_url) or any(p.poll() is not None for p in relays), timeout=120)
    processes.alive(*relays)
    leading = next(p for p in relays if p.pid == leader(database_url))
    standby = next(p for p in relays if p is not leading)
    writer = threading.Thread(target=backlog, args=(ledger, world, 6000))
    writer.start()
    try:  # the leader into a batch: published past its recorded position
        wait_for(lambda: last_on_stream(nats_url, "Sessions") > tracked(database_url, "Sessions"), timeout=60)
        leading.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        leading.wait(timeout=30)
        published, recorded = last_on_stream(nats_url, "Sessions"), tracked(database_url, "Sessions")
        wait_for(lambda: leader(database_url) == standby.pid, timeout=30)
        takeover = time.monotonic() - killed
    finally:
        writer.join()
    wait_for(lambda: caught_up(ledger, database_url), timeout=120)
    caught = time.monotonic() - killed
    processes.alive(standby)
    print(f"\nkill -9 of the leader: {published - recorded} events published but not recorded; "
          f"standby led after {takeover:.2f} s, caught up {caught:.2f} s after the kill")
    assert_stream_is_the_logs(ledger, ledger_id(database_url), asyncio.run(read_stream(nats_url)))
