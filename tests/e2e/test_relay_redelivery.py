"""Published but not recorded (issue 11.5): a relay killed after publishing and before recording, restarted
after the stream's duplicate window (shrunk to 2 s here), publishes nothing twice; the same after a
NATS reconnect."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import psycopg
import pytest

import adapters.followers.relay.stream as relay_stream
from adapters.servers.nats_users import RELAY
from adapters.postgres.env import eventsourcing_env
from adapters.followers.relay.publisher import Relay
from adapters.servers.nats_server import EmbeddedNats
from domain.ledger import Ledger
from tests.factories import build_world
from tests.integration.test_relay import assert_stream_is_the_logs, charge_sessions, read_stream, wait_for
from tests.e2e.relay_harness import (
    RELAY_PROCESS,
    SHORT_WINDOW,
    Processes,
    backlog,
    caught_up,
    last_on_stream,
    ledger_id,
    relay_thread,
    stream_count,
    tracked,
)
from tests.e2e.relay_harness import processes  # noqa: F401  (the fixture)


# ---- 11.5: published but not recorded, then a restart after the duplicate window ------------------------
def test_a_relay_killed_before_recording_then_restarted_after_the_duplicate_window_repeats_nothing(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str],
        processes: Processes) -> None:
    world = build_world(ledger)
    backlog(ledger, world, 3000)
    relay_args = ("-c", RELAY_PROCESS, database_url, nats_role_urls[RELAY], str(SHORT_WINDOW), "1000000")
    first = processes.start("relay-1", *relay_args)  # one batch per log: nothing recorded until its end
    wait_for(lambda: stream_count(nats_url) >= 500 or first.poll() is not None, timeout=60)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    published, recorded = last_on_stream(nats_url, "Sessions"), tracked(database_url, "Sessions")
    assert published > recorded, "the kill should leave events published but not recorded"
    time.sleep(SHORT_WINDOW * 2)  # past the stream's duplicate window: JetStream would keep a repeat now
    second = processes.start("relay-2", *relay_args)
    wait_for(lambda: caught_up(ledger, database_url) or second.poll() is not None, timeout=120)
    processes.alive(second)
    print(f"\n{published - recorded} events published but not recorded before the kill; none published again")
    assert_stream_is_the_logs(ledger, ledger_id(database_url), asyncio.run(read_stream(nats_url)))


def test_after_a_nats_reconnect_the_relay_reads_the_stream_before_publishing(
        ledger: Ledger, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Events on the stream whose recording was lost (here: the position set back by 31 while NATS is
    down, as a relay killed mid-batch leaves it) are not published again after NATS comes back, even
    past the duplicate window."""
    monkeypatch.setattr(relay_stream, "DUPLICATE_WINDOW", SHORT_WINDOW)
    server = EmbeddedNats(tmp_path / "nats").start()
    relay = Relay(ledger.applications, eventsourcing_env(database_url), server.url_for(RELAY))
    world = build_world(ledger)
    try:
        with relay_thread(relay) as thread:
            charge_sessions(ledger, world, 5)
            wait_for(lambda: caught_up(ledger, database_url))
            server.stop()
            with psycopg.connect(database_url) as conn:
                conn.execute("UPDATE relay_tracking SET notification_id = notification_id - 31 "
                             "WHERE application_name = 'Sessions'")
            time.sleep(SHORT_WINDOW * 2)
            server.start()
            charge_sessions(ledger, world, 2)
            wait_for(lambda: caught_up(ledger, database_url), timeout=60)
            assert thread.is_alive()
        assert_stream_is_the_logs(ledger, relay.ledger_id, asyncio.run(read_stream(server.url)))
    finally:
        server.stop()
