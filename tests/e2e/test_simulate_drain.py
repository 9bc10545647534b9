"""``chargeledger simulate --drain`` (issue 11, finding 8): a run ends with every charge stopped at the
pile and every record confirmed, so an operator testing a deployment can end it cleanly.

The simulator runs as the CLI, in a process of its own, over real TCP against the real gateway
(relay, NATS and Postgres real too). SIGTERM ends the run: with ``--drain`` the piles refuse new
starts, stop their charges as a driver pressing stop would, and the process exits 0 once every
0x3B was answered by a 0x40, or 1 with the list of records still unconfirmed after
``--drain-timeout``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from adapters.cli.relay import running_relay
from domain.errors import PileUnavailable
from domain.ledger import Ledger
from pile_link.gateway import Gateway
from tests.factories import build_world

ROOT = Path(__file__).resolve().parents[2]
CLI = "import sys, app; sys.exit(app.main(sys.argv[1:]))"
PILES = ("32010600019236", "32010600019237")


def simulate(port: int, out: Path, *extra: str) -> subprocess.Popen:
    """``chargeledger simulate`` against the gateway: 2 piles x 2 guns, plugged, fast link timers."""
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    with open(out, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", CLI, "simulate", "--port", str(port), "--first-pile", PILES[0], "--piles", "2",
             "--guns", "2", "--plugged", "--speed", "20", "--seed", "5", "--heartbeat", "1", "--record-retry", "1",
             *extra], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


async def start_everywhere(ledger: Ledger, gateway: Gateway, wallet_id, hold_fen: int) -> list[str]:
    """A start on every gun, as a driver's (the gun must be ready: the pile logged in and reported it)."""
    trades = []
    deadline = time.monotonic() + 30
    for pile_no in PILES:
        for gun_no in (1, 2):
            while True:
                try:
                    trades.append(await gateway.run(
                        ledger.request_start, pile_no=pile_no, gun_no=gun_no, wallet_id=wallet_id, hold_fen=hold_fen,
                        at=datetime.now(UTC), author="driver-1", require_ready=True))
                    break
                except PileUnavailable:
                    assert time.monotonic() < deadline, "the simulated piles never became ready"
                    await asyncio.sleep(0.2)
    return trades


async def until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


def stopped(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def charging_world(ledger: Ledger):
    world = build_world(ledger, top_up=200_00, pile_no=PILES[0])
    ledger.register_pile(world.station_id, PILES[1], "DC", 2, "admin")
    return world


def drain_a_charging_fleet(ledger: Ledger, database_url: str, nats_url: str, wallet_id: Any, out: Path,
                           drain_timeout: str, *, gateway_gone: bool) -> tuple[list[str], int]:
    """Simulated piles charging on every gun against a gateway, then SIGTERM with ``--drain``
    (``gateway_gone``: the gateway stopped first, so nobody answers the records). Returns the trade
    serials and the simulator's exit status."""
    async def main() -> tuple[list[str], int]:
        gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, sweep_interval=3600)
        await gateway.start()
        proc = simulate(gateway.port, out, "--drain", "--drain-timeout", drain_timeout)
        try:
            trades = await start_everywhere(ledger, gateway, wallet_id, 30_00)
            await until(lambda: all(ledger.session(t).state == "charging" for t in trades), 30)
            if gateway_gone:
                await gateway.stop()
            proc.send_signal(signal.SIGTERM)
            return trades, await asyncio.to_thread(stopped, proc, 60 if gateway_gone else 90)
        finally:
            if proc.poll() is None:
                proc.kill()
            await gateway.stop()

    with running_relay(ledger, database_url, nats_url):
        return asyncio.run(asyncio.wait_for(main(), 150))


def test_sigterm_with_drain_stops_every_charge_at_the_pile_and_exits_once_every_record_is_confirmed(
        ledger: Ledger, database_url: str, nats_url: str, charging_world, tmp_path: Path) -> None:
    out = tmp_path / "simulate.log"
    trades, rc = drain_a_charging_fleet(ledger, database_url, nats_url, charging_world.wallet_id, out, "60",
                                        gateway_gone=False)
    assert rc == 0, out.read_text()
    text = out.read_text()
    assert "drained: every record confirmed" in text and "records unconfirmed 0" in text, text
    for trade_no in trades:
        session = ledger.session(trade_no)
        assert session.state == "finished", (trade_no, session.state)
        assert session.record["stop_reason"] == 0x45  # stopped at the pile, as a driver pressing stop
    assert ledger.wallet(charging_world.wallet_id).held == 0


def test_records_left_unconfirmed_at_the_drain_timeout_are_listed_and_the_exit_status_is_1(
        ledger: Ledger, database_url: str, nats_url: str, charging_world, tmp_path: Path) -> None:
    out = tmp_path / "simulate.log"
    trades, rc = drain_a_charging_fleet(ledger, database_url, nats_url, charging_world.wallet_id, out, "3",
                                        gateway_gone=True)
    assert rc == 1, out.read_text()
    text = out.read_text()
    assert "drain: 4 records not confirmed:" in text, text
    for trade_no in trades:
        assert trade_no in text
