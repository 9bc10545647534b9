"""The relay under faults (issue 11: 3, 4, 5), with real Postgres, real NATS and, where the fault is
about processes, real ``chargeledger relay`` processes.

* Two relays at once (threads, and separate processes): one leads (a Postgres advisory lock), the
  other stands by; every event reaches the stream exactly once and neither dies. A kill -9 of the
  leader mid-batch: the standby takes over within seconds, and the stream holds each notification
  exactly once (compared one for one with the notification logs).
* A relay killed after publishing and before recording, restarted after the stream's duplicate window
  (shrunk to 2 s here), publishes nothing twice; the same after a NATS reconnect.
* Postgres stopped for longer than any timeout (60 s, past the ~50 s after which the relay used to
  die), NATS stopped and restarted, the relay started while NATS is down: it recovers by itself.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import psycopg
import pytest

import adapters.followers.relay.stream as relay_stream
from adapters.servers.nats_users import RELAY, STREAM
from adapters.postgres.env import eventsourcing_env
from adapters.followers.relay.leader import RELAY_LOCK
from adapters.followers.relay.publisher import Relay, keep_running
from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.postgres_server import EmbeddedPostgres, create_database
from domain.ledger import Ledger
from tests.factories import build_world
from tests.integration.test_relay import T0, assert_stream_is_the_logs, charge_sessions, read_stream, wait_for

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys, app; sys.exit(app.main(sys.argv[1:]))"
# A relay process like `chargeledger relay`, with the stream's duplicate window and the batch size given.
RELAY_PROCESS = """
import asyncio, sys
import adapters.followers.relay.stream as relay_stream
from adapters.followers.relay.publisher import Relay
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
database_url, nats_url, window, batch = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
relay_stream.DUPLICATE_WINDOW = window
ledger = Ledger(eventsourcing_env(database_url))
relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_url, batch_size=batch)
asyncio.run(relay.run())
"""
SHORT_WINDOW = 2.0  # seconds: the stream's duplicate window in the tests that outlive it
PG_OUTAGE = 60.0  # seconds: longer than the ~50 s after which the relay used to die (and than any timeout it has)


# ---- helpers ------------------------------------------------------------------------------------------
@contextmanager
def relay_thread(relay: Relay) -> Iterator[threading.Thread]:
    """``relay.run()`` on an event loop in a thread of its own; stopped at the end."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(relay.run(),), name="relay", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        loop.call_soon_threadsafe(relay.stop)
        thread.join(timeout=60)


def backlog(ledger: Ledger, world, readings: int) -> str:
    """A charging session with ``readings`` meter readings, written 500 to a transaction (fast)."""
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=2, wallet_id=world.wallet_id, hold_fen=5_00,
                                    at=T0, author="d")
    ledger.acknowledge_start(trade_no, at=T0, ok=True)
    ledger.mark_charging(trade_no, at=T0)
    for first in range(0, readings, 500):
        ledger.record_readings([{"trade_no": trade_no, "at": T0 + timedelta(seconds=i + 1), "energy": i + 1}
                                for i in range(first, min(readings, first + 500))])
    return trade_no


def tracked(database_url: str, application: str) -> int:
    """The relay's recorded position in ``application``'s log (0 before any relay made its table)."""
    with psycopg.connect(database_url) as conn:
        try:
            row = conn.execute("SELECT notification_id FROM relay_tracking WHERE application_name = %s",
                               (application,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return row[0] if row else 0


def caught_up(ledger: Ledger, database_url: str) -> bool:
    return all(tracked(database_url, app.name) >= (app.recorder.max_notification_id() or 0)
               for app in ledger.applications)


def leader(database_url: str) -> int | None:
    """The pid of the process whose relay holds the leader's lock in this database (None: no leader)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (RELAY_LOCK,)).fetchone()
    return int(row[0].rsplit(" ", 1)[-1]) if row else None


def stream_count(url: str) -> int:
    async def count() -> int:
        nc = await nats.connect(url)
        try:
            return (await nc.jetstream().stream_info(STREAM)).state.messages
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await nc.close()
    return asyncio.run(count())


def last_on_stream(url: str, application: str) -> int:
    """The notification id of the stream's last message of ``application``."""
    async def last() -> int:
        nc = await nats.connect(url)
        try:
            msg = await nc.jetstream().get_last_msg(STREAM, f"chargeledger.{application}.>")
            return int(msg.headers["Chargeledger-Notification-Id"])
        finally:
            await nc.close()
    return asyncio.run(last())


def ledger_id(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT id FROM ledger_identity").fetchone()[0]


class Processes:
    """Child processes of one test, each logging to its own file; whatever is left is killed at the end."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory, self.env, self.running = directory, env, []

    def start(self, name: str, *argv: str) -> subprocess.Popen:
        out = open(self.directory / f"{name}.log", "wb")
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT)
        out.close()
        proc.name = name  # type: ignore[attr-defined]
        self.running.append(proc)
        return proc

    def log(self, proc: subprocess.Popen) -> str:
        return (self.directory / f"{proc.name}.log").read_text(errors="replace")[-3000:]  # type: ignore[attr-defined]

    def alive(self, *procs: subprocess.Popen) -> None:
        for proc in procs:
            name = proc.name  # type: ignore[attr-defined]
            assert proc.poll() is None, f"{name} died (exit {proc.returncode}):\n{self.log(proc)}"

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    env = {**os.environ, "LOG_LEVEL": "WARNING", "CHARGELEDGER_VAR": str(tmp_path / "var")}
    env.pop("DATABASE_URL", None)
    env.pop("NATS_URL", None)
    procs = Processes(tmp_path, env)
    yield procs
    procs.stop_all()
    var = Path(env["CHARGELEDGER_VAR"])  # servers a killed `chargeledger servers` may have left running
    if (var / "postgres").exists():
        EmbeddedPostgres(var / "postgres").stop()
    if (var / "nats").exists():
        EmbeddedNats(var / "nats").stop()


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
    processes.env.update(DATABASE_URL=database_url, NATS_URL=nats_role_urls[RELAY])
    relays = [processes.start("relay-1", "-c", CLI, "relay"), processes.start("relay-2", "-c", CLI, "relay")]
    wait_for(lambda: caught_up(ledger, database_url) or any(p.poll() is not None for p in relays), timeout=120)
    processes.alive(*relays)
    leading = next(p for p in relays if p.pid == leader(database_url))
    standby = next(p for p in relays if p is not leading)
    writer = threading.Thread(target=backlog, args=(ledger, world, 6000))
    writer.start()
    try:  # the leader well into a batch: published past its recorded position
        wait_for(lambda: last_on_stream(nats_url, "Sessions") > tracked(database_url, "Sessions") + 50, timeout=60)
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


# ---- a relay beside a gateway never dies silently ---------------------------------------------------------
def test_an_unexpected_error_in_the_relay_is_logged_and_the_relay_goes_on(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str],
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.cli.relay import running_relay

    failures = iter([RuntimeError("a bug in a batch")])
    relay_batch = Relay.relay_batch

    async def failing_once(self: Relay, *args, **kwargs):  # type: ignore[no-untyped-def]
        error = next(failures, None)
        if error is not None:
            raise error
        return await relay_batch(self, *args, **kwargs)

    monkeypatch.setattr(Relay, "relay_batch", failing_once)
    world = build_world(ledger)
    with running_relay(ledger, database_url, nats_role_urls[RELAY]) as relay:
        charge_sessions(ledger, world, 2)
        wait_for(lambda: caught_up(ledger, database_url), timeout=60)
    assert any(r.exc_info and "a bug in a batch" in str(r.exc_info[1]) for r in caplog.records)
    assert relay.errors == 1
    assert_stream_is_the_logs(ledger, relay.ledger_id, asyncio.run(read_stream(nats_url)))


def test_the_relay_thread_restarts_a_relay_whose_loop_ended(
        ledger: Ledger, database_url: str, nats_url: str, nats_role_urls: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    relay = Relay(ledger.applications, eventsourcing_env(database_url), nats_role_urls[RELAY])
    run = relay.run
    ends: list[BaseException] = [asyncio.CancelledError()]

    async def ends_once() -> None:
        if ends:
            raise ends.pop()
        await run()

    relay.run = ends_once  # type: ignore[method-assign]
    thread = threading.Thread(target=keep_running, args=(relay, 0.1), daemon=True)
    thread.start()
    try:
        charge_sessions(ledger, build_world(ledger), 1)
        wait_for(lambda: caught_up(ledger, database_url), timeout=60)
        assert thread.is_alive()
    finally:
        relay.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert any("relay thread" in r.getMessage() and "restarting" in r.getMessage() for r in caplog.records)


def test_the_gateway_runs_a_relay_unless_told_not_to(
        database_url: str, nats_role_urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import app
    import pile_link.gateway

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("NATS_URL", nats_role_urls[RELAY])
    seen: list[bool] = []

    async def serve(*args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        seen.append(any(t.name == "relay" and t.is_alive() for t in threading.enumerate()))

    monkeypatch.setattr(pile_link.gateway, "serve", serve)
    assert app.main(["gateway", "--port", "0"]) == 0
    assert app.main(["gateway", "--port", "0", "--no-relay"]) == 0
    assert seen == [True, False]



# ---- 11.8: a role stops only the servers it started ------------------------------------------------------
def printed(processes: Processes, proc: subprocess.Popen, prefix: str, suffix: str = "") -> str:
    """The value of the line ``<prefix><value><suffix>`` the process printed."""
    for line in processes.log(proc).splitlines():
        if line.startswith(prefix) and line.endswith(suffix):
            return line[len(prefix):len(line) - len(suffix)]
    raise AssertionError(f"{proc.name} printed no {prefix!r}:\n{processes.log(proc)}")  # type: ignore[attr-defined]


def nats_answers(url: str) -> bool:
    async def connect() -> bool:
        try:
            nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
        except (nats.errors.Error, OSError):
            return False
        await nc.close()
        return True
    return asyncio.run(connect())


def has_table(database_url: str, table: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def accepts(database_url: str) -> bool:
    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


def test_a_relay_stopped_with_ctrl_c_leaves_running_the_servers_it_did_not_start(processes: Processes) -> None:
    """``chargeledger servers`` serves the embedded Postgres and NATS; ``chargeledger relay`` without
    DATABASE_URL / NATS_URL adopts them. Ctrl-C on the relay (SIGINT) stopped that Postgres; now
    both servers stay up, until Ctrl-C on ``chargeledger servers``, which started them, stops them."""
    servers = processes.start("servers", "-c", CLI, "servers")
    wait_for(lambda: "(Ctrl-C stops them)" in processes.log(servers) or servers.poll() is not None, timeout=180)
    processes.alive(servers)
    database_url = printed(processes, servers, "DATABASE_URL=")
    nats_admin = printed(processes, servers, "NATS_URL=", "  # admin")
    relay = processes.start("relay", "-c", CLI, "relay")
    wait_for(lambda: has_table(database_url, "relay_tracking") or relay.poll() is not None, timeout=120)  # running
    processes.alive(relay)
    relay.send_signal(signal.SIGINT)
    try:
        relay.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    assert accepts(database_url), "the relay stopped the Postgres `chargeledger servers` serves"
    assert nats_answers(nats_admin), "the relay stopped the NATS `chargeledger servers` serves"
    assert relay.poll() == 0, processes.log(relay)
    processes.alive(servers)
    servers.send_signal(signal.SIGINT)
    assert servers.wait(timeout=120) == 0, processes.log(servers)
    assert not accepts(database_url), "`chargeledger servers` stops the servers it started"
