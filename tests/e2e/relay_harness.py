"""What the relay's fault tests share (tests/e2e/test_relay_*.py): a relay on a thread of its own, a backlog
of readings, where the relay and the stream are, and ``chargeledger relay`` processes with their logs.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import nats
import nats.js.errors
import psycopg
import pytest

from adapters.postgres.leader_lock import holder_pid
from adapters.servers.nats_users import STREAM
from adapters.followers.relay.leader import RELAY_LOCK
from adapters.followers.relay.publisher import Relay
from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.postgres_server import EmbeddedPostgres
from domain.ledger import Ledger
from tests.integration.test_relay import T0

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
    return holder_pid(database_url, RELAY_LOCK)


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
