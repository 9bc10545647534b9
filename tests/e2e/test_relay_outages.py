"""The relay through outages (issue 11.4): Postgres stopped for longer than any timeout (60 s, past the
~50 s after which the relay used to die), NATS stopped and restarted, the relay started while Postgres or
NATS is down: it recovers by itself, and stops when asked while it waits."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path

import pytest

from adapters.servers.nats_users import RELAY
from adapters.postgres.env import eventsourcing_env
from adapters.followers.relay.publisher import Relay
from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.postgres_server import EmbeddedPostgres, create_database
from domain.ledger import Ledger
from tests.factories import build_world
from tests.integration.test_relay import assert_stream_is_the_logs, charge_sessions, read_stream, wait_for
from tests.e2e.relay_harness import CLI, PG_OUTAGE, Processes, caught_up, leader, ledger_id, relay_thread
from tests.e2e.relay_harness import processes  # noqa: F401  (the fixture)


# ---- 11.4: outages --------------------------------------------------------------------------------------
def test_the_relay_outlives_a_postgres_outage_longer_than_any_timeout(
        tmp_path: Path, nats_url: str, nats_role_urls: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    """Postgres down for 60 s (the relay used to die after ~50 s, and nothing restarted it): the relay
    keeps retrying, says so in its log, and catches up by itself once Postgres is back."""
    caplog.set_level(logging.WARNING, logger="adapters.followers.relay")
    tmp_path.chmod(0o755)  # the embedded Postgres may run as its own system user
    pg = EmbeddedPostgres(tmp_path / "postgres").start()
    try:
        database_url = create_database(pg.url, "outage")
        ledger = Ledger(eventsourcing_env(database_url))
        relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_role_urls[RELAY])
        world = build_world(ledger)
        with relay_thread(relay) as thread:
            charge_sessions(ledger, world, 3)
            wait_for(lambda: caught_up(ledger, database_url))
            pg.stop()
            down = time.monotonic()
            while time.monotonic() - down < PG_OUTAGE:
                assert thread.is_alive(), f"the relay died {time.monotonic() - down:.0f} s into the outage"
                time.sleep(1)
            pg.start()
            back = time.monotonic()
            charge_sessions(ledger, world, 3)
            wait_for(lambda: caught_up(ledger, database_url), timeout=120)
            print(f"\nPostgres back: relay caught up {time.monotonic() - back:.2f} s later "
                  f"(including writing 3 sessions)")
            assert thread.is_alive() and relay.is_leader
        messages = [r.getMessage() for r in caplog.records]
        assert any("unavailable" in m for m in messages) and any(" back after " in m for m in messages)
        assert relay.errors > 0
        assert_stream_is_the_logs(ledger, relay.ledger_id, asyncio.run(read_stream(nats_url)))
        relay.close()
        ledger.close()
    finally:
        pg.stop()


def test_a_relay_process_started_while_postgres_is_down_waits_for_it(
        tmp_path: Path, nats_url: str, nats_role_urls: dict[str, str], processes: Processes) -> None:
    tmp_path.chmod(0o755)
    pg = EmbeddedPostgres(tmp_path / "postgres").start()
    try:
        database_url = create_database(pg.url, "late")
        pg.stop()
        processes.env.update(DATABASE_URL=database_url, NATS_URL=nats_role_urls[RELAY])
        relay = processes.start("relay", "-c", CLI, "relay")
        wait_for(lambda: "database unavailable" in processes.log(relay) or relay.poll() is not None, timeout=120)
        processes.alive(relay)
        pg.start()
        wait_for(lambda: leader(database_url) == relay.pid or relay.poll() is not None, timeout=120)
        processes.alive(relay)
        ledger = Ledger(eventsourcing_env(database_url))
        try:
            charge_sessions(ledger, build_world(ledger), 2)
            wait_for(lambda: caught_up(ledger, database_url), timeout=60)
            assert "database back after" in processes.log(relay)
            assert_stream_is_the_logs(ledger, ledger_id(database_url), asyncio.run(read_stream(nats_url)))
        finally:
            ledger.close()
        relay.send_signal(signal.SIGINT)
        assert relay.wait(timeout=60) == 0, processes.log(relay)
    finally:
        pg.stop()


def test_the_relay_starts_while_nats_is_down_and_outlives_a_nats_outage(
        ledger: Ledger, database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.followers.relay")
    server = EmbeddedNats(tmp_path / "nats").start()
    server.stop()  # its port and users are kept: it comes back at the same address
    relay = Relay(ledger.applications, eventsourcing_env(database_url), server.url_for(RELAY))
    world = build_world(ledger)
    try:
        with relay_thread(relay) as thread:
            charge_sessions(ledger, world, 2)
            time.sleep(3)  # longer than the relay's NATS connect and request timeouts (2 s)
            assert thread.is_alive() and relay.published == 0
            assert any("NATS unavailable" in r.getMessage() for r in caplog.records)
            server.start()
            wait_for(lambda: caught_up(ledger, database_url), timeout=60)
            server.stop()
            charge_sessions(ledger, world, 3)  # the ledger goes on writing
            time.sleep(5)
            assert thread.is_alive() and not caught_up(ledger, database_url)
            server.start()
            back = time.monotonic()
            wait_for(lambda: caught_up(ledger, database_url), timeout=60)
            print(f"\nNATS back: relay caught up {time.monotonic() - back:.2f} s later")
            assert thread.is_alive()
        messages = [r.getMessage() for r in caplog.records]
        assert "relay: NATS connected" in messages and "relay: NATS disconnected" in messages
        assert_stream_is_the_logs(ledger, relay.ledger_id, asyncio.run(read_stream(server.url)))
    finally:
        server.stop()


def test_a_relay_waiting_for_nats_stops_when_asked(ledger: Ledger, database_url: str, tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats").start()
    server.stop()
    relay = Relay(ledger.applications, eventsourcing_env(database_url), server.url_for(RELAY))
    with relay_thread(relay) as thread:
        time.sleep(1)
        assert thread.is_alive()
    assert not thread.is_alive()
