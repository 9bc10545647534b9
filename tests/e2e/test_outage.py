"""Issue 11, finding 4 (the gateway's and the watchdog's part): they recover by themselves from a
database or a NATS outage, with backoff, and say so in their log.

Each test has servers of its own (an ``EmbeddedPostgres`` or an ``EmbeddedNats`` under ``var/test``)
that it stops and starts again; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from adapters.servers.nats_users import GATEWAY, RELAY
from adapters.postgres.env import eventsourcing_env
from adapters.servers.nats_server import EmbeddedNats
from adapters.servers.postgres_server import EmbeddedPostgres, create_database
from adapters.cli.relay import running_relay
from domain.ledger import Ledger
from domain.session import ChargingSession
from pile_link.gateway import Gateway
from adapters.followers.watchdog import Watchdog
from pile_link.ykc import (
    Heartbeat,
    HeartbeatAck,
    ReadRealtime,
    Reboot,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    StartAuthReply,
    StartRequest,
    TransactionConfirm,
)
from tests.factories import World, build_world
from tests.e2e.gateway_harness import CHARGING, PRICE_PER_TIER, Clock, local
from tests.ykc_pile import ScriptedPile

ROOT = Path(__file__).resolve().parents[2]
OUTAGE = 12.0  # seconds: longer than the gateway used to retry a write-behind batch (20 x 0.5 s)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


async def until(predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.fixture
def own_dir() -> Iterator[Path]:
    """A directory for this test's own servers, under ./var/test as the suite's servers (not under
    /tmp, which other test runs on the machine clean up)."""
    base = ROOT / "var" / "test"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="outage-", dir=base))
    path.chmod(0o755)  # the embedded Postgres may run as its own system user
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def own_postgres(own_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(own_dir / "postgres").start()
    yield server
    server.stop()


CARD = "00000000DEADBEEF"


def card_world(own_postgres: EmbeddedPostgres) -> tuple[str, Ledger, World]:
    """A database of its own on ``own_postgres``, a Ledger that waits 1 s at most for a pooled
    connection (10 s by default: writes fail fast while Postgres is away), and a driver with a card."""
    url = create_database(own_postgres.url, "outage")
    ledger = Ledger({**eventsourcing_env(url), "POSTGRES_CONNECT_TIMEOUT": "1"})
    world = build_world(ledger, top_up=100_00)
    ledger.bind_credential(world.wallet_id, "card", CARD, "driver-1")
    return url, ledger, world


async def card_start(gateway: Gateway, world: World) -> tuple[ScriptedPile, str]:
    """A pile logged in to ``gateway``, gun 1 started with the driver's card: (the pile, the trade serial)."""
    pile = ScriptedPile(world.pile_no)
    await pile.login(gateway.port)
    pile.send(StartRequest(world.pile_no, "01", 1, 0, bytes.fromhex(CARD), bytes(16), "0" * 17))
    return pile, (await pile.expect(StartAuthReply)).trade_no


def fresh(ledger: Ledger, trade_no: str) -> ChargingSession:
    return ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session", fresh=True)


def test_the_watchdog_sweeps_on_through_a_database_outage_and_says_so(own_postgres: EmbeddedPostgres,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "chargeledger.watchdog")
    url = create_database(own_postgres.url, "outage")
    ledger = Ledger(eventsourcing_env(url))
    try:
        world = build_world(ledger)
        t0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)
        trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id, hold_fen=10_00,
                                        at=t0, author="driver-1")
        now = [t0]
        stopping = threading.Event()
        watchdog = Watchdog(ledger, url)
        thread = threading.Thread(target=watchdog.run, args=(lambda: now[0], stopping, 0.1), daemon=True)
        thread.start()
        try:
            wait_for(lambda: watchdog.stats["sweeps"] >= 1)
            own_postgres.stop()
            wait_for(lambda: watchdog.stats["watchdog_sweep_failures"] >= 3)
            assert thread.is_alive()
            own_postgres.start()
            now[0] = t0 + timedelta(minutes=2)  # the start deadline passed during the outage
            wait_for(lambda: watchdog.stats["sessions_expired"] == 1)
        finally:
            stopping.set()
            thread.join(30)
        assert not thread.is_alive()
        assert fresh(ledger, trade_no).state == "failed" and ledger.wallet(world.wallet_id).held == 0
        assert watchdog.stats["watchdog_sweep_recoveries"] == 1
        assert "watchdog sweep unavailable" in caplog.text and "watchdog sweep back after" in caplog.text
    finally:
        ledger.close()


def test_a_pile_charging_through_a_database_outage_loses_no_reading_and_its_record_is_answered_once_stored(
        own_postgres: EmbeddedPostgres, nats_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Readings queued while Postgres is away are written when it is back, however long it was away;
    heartbeats are answered meanwhile; a 0x3B gets no 0x40 until its settlement committed (the pile
    sends it again), never a 0x40 for a record that was not stored."""
    caplog.set_level(logging.WARNING, "chargeledger.pile_link")
    url, ledger, world = card_world(own_postgres)
    clock = Clock()

    async def main() -> str:
        gateway = Gateway(ledger, database_url=url, nats_url=nats_url, clock=clock, sweep_interval=0.5, owed_wait=0.5)
        await gateway.start()
        try:
            pile, trade_no = await card_start(gateway, world)
            energy = 0
            for _ in range(2):
                energy += 1000
                pile.send(pile.realtime(1, status=CHARGING, trade_no=trade_no, energy=energy))
            await until(lambda: fresh(ledger, trade_no).readings == 2)

            await asyncio.to_thread(own_postgres.stop)
            started = time.monotonic()
            while time.monotonic() - started < OUTAGE:  # readings every second, heartbeats answered
                energy += 1000
                clock.now += timedelta(seconds=15)
                pile.send(pile.realtime(1, status=CHARGING, trade_no=trade_no, energy=energy))
                pile.send(Heartbeat(world.pile_no, "01", 0))
                await pile.expect(HeartbeatAck)
                await asyncio.sleep(1)
            now = local(clock)
            record = pile.record(trade_no, 1, (0, 0, energy, 0), PRICE_PER_TIER, now - timedelta(minutes=5), now)
            pile.send(record)
            with pytest.raises(asyncio.TimeoutError):  # not stored: not answered
                await pile.expect(TransactionConfirm, timeout=3)
            await asyncio.to_thread(own_postgres.start)
            for _ in range(60):  # the pile sends its record again until it is answered
                pile.send(record)
                try:
                    confirm = await pile.expect(TransactionConfirm, timeout=2)
                    break
                except asyncio.TimeoutError:
                    continue
            assert (confirm.trade_no, confirm.result) == (trade_no, 0)
            sent = energy // 1000
            session = fresh(ledger, trade_no)
            assert session.state == "finished" and session.readings == sent and session.meter_energy == energy
            assert gateway.stats["readings_dropped"] == 0
            assert gateway.stats["readings_write_failures"] >= 1
            assert gateway.stats["readings_write_recoveries"] >= 1
            return trade_no
        finally:
            await gateway.stop()

    try:
        asyncio.run(asyncio.wait_for(main(), 180))
        assert "writing readings back after" in caplog.text
        assert ledger.wallet(world.wallet_id).held == 0
    finally:
        ledger.close()


def test_a_write_behind_batch_waits_through_an_outage_of_any_length_and_is_written_in_order() -> None:
    """While the database cannot be reached, a failed batch is never dropped, however many attempts
    fail; a batch the database refuses while it is up still is, after MAX_WRITE_ATTEMPTS."""
    from collections import Counter

    from pile_link.write_behind import MAX_WRITE_ATTEMPTS, WriteBehind

    class Pool:
        stats: Counter[str] = Counter()

        async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
            return fn(*args)

    database = {"up": False}
    written: list[int] = []

    def write(batch: list[int]) -> list[Exception | None]:
        if not database["up"]:
            raise OSError("connection refused")
        written.extend(batch)
        return [None] * len(batch)

    async def scenario() -> None:
        behind = WriteBehind(Pool(), "readings", write, reachable=lambda: database["up"])  # type: ignore[arg-type]
        for item in range(3):
            behind.add(item)
            for _ in range(MAX_WRITE_ATTEMPTS * 3):
                with pytest.raises(OSError):
                    await behind.flush()
        assert behind.pending == [0, 1, 2] and Pool.stats["readings_dropped"] == 0
        database["up"] = True
        behind.add(3)
        await behind.flush()
        assert written == [0, 1, 2, 3] and Pool.stats["readings_write_recoveries"] == 1

    asyncio.run(scenario())


def test_the_gateway_follows_nats_again_after_an_outage_delivers_what_is_owed_and_replays_nothing_older(
        own_dir: Path, ledger: Ledger, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """NATS stops while a pile charges; a stop is asked for meanwhile. When NATS is back the gateway
    follows again from where it was: the pile gets its 0x36, and no command older than the gateway
    (a reboot asked for before it started) is sent, as a consumer restarted from the stream's start would."""
    caplog.set_level(logging.WARNING, "chargeledger.pile_link")
    server = EmbeddedNats(own_dir / "nats").start()
    world = build_world(ledger, top_up=100_00)
    tariff = ledger.tariff_for(ledger.registry.pile(world.pile_no))
    clock = Clock()
    ledger.confirm_billing_model(world.pile_no, tariff.id, tariff.tariff_version, clock())  # nothing owed at login
    try:
        with running_relay(ledger, database_url, server.url_for(RELAY)) as relay:
            ledger.reboot_pile(world.pile_no, author="ops", at=clock())  # history, before the gateway
            wait_for(relay.caught_up)

            async def main() -> None:
                gateway = Gateway(ledger, database_url=database_url, nats_url=server.url_for(GATEWAY), clock=clock,
                                  sweep_interval=3600, owed_wait=0.5)
                await gateway.start()
                try:
                    pile = ScriptedPile(world.pile_no)
                    await pile.login(gateway.port)
                    trade_no = await gateway.run(ledger.request_start, pile_no=world.pile_no, gun_no=1,
                                                 wallet_id=world.wallet_id, hold_fen=50_00, at=clock(),
                                                 author="driver-1")
                    assert (await pile.expect(RemoteStart)).trade_no == trade_no  # through NATS
                    pile.send(RemoteStartReply(trade_no, world.pile_no, "01", 1, 0))
                    pile.send(pile.realtime(1, status=CHARGING, trade_no=trade_no, energy=1000))
                    await until(lambda: fresh(ledger, trade_no).state == "charging")

                    await asyncio.to_thread(server.stop)
                    await gateway.run(ledger.request_stop, trade_no, "driver-1", "driver", clock())
                    started = time.monotonic()
                    while time.monotonic() - started < OUTAGE:  # the pile is served meanwhile
                        pile.send(Heartbeat(world.pile_no, "01", 0))
                        await pile.expect(HeartbeatAck)
                        await asyncio.sleep(1)
                    await asyncio.to_thread(server.start)
                    await pile.expect(RemoteStop, timeout=60)
                    # a command after the outage arrives after anything older on its subject would
                    await gateway.run(ledger.read_realtime, world.pile_no, author="ops", at=clock(), gun_no=2)
                    while (await pile.expect(ReadRealtime, timeout=60)).gun_no != "02":
                        pass  # (a 0x12 for gun 1 may have asked for the gun's report after the login)
                    assert not [m for _, m in pile.received if isinstance(m, Reboot)]
                    assert gateway.stats["nats_reconnects"] >= 1
                finally:
                    await gateway.stop()

            asyncio.run(asyncio.wait_for(main(), 180))
    finally:
        server.stop()
    assert "NATS reconnected; following the command subjects again" in caplog.text


def test_the_projections_wait_out_a_database_outage_without_holding_back_any_view(
        own_postgres: EmbeddedPostgres) -> None:
    """Postgres away mid-run: every view waits it out (backoff, logged), none is recorded as failing
    in projection_health (an outage is no view's failure), and events written after it are projected."""
    from projections import health
    from projections.runner import Projections
    from tests.factories import record

    kept = KeptLogs("projections.runner")  # its own handler: what other tests did to the root's is no matter
    url = create_database(own_postgres.url, "views")
    env = eventsourcing_env(url)
    ledger = Ledger(env)
    projections = Projections(ledger.applications, env)
    try:
        world = build_world(ledger)

        def settle_one(minute: int) -> str:
            t0 = datetime(2026, 11, 22, 2, minute, tzinfo=timezone.utc)
            trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=1, wallet_id=world.wallet_id,
                                            hold_fen=10_00, at=t0, author="driver-1")
            ledger.settle(trade_no, record((0, 0, 5000, 0), t0, 5), t0 + timedelta(minutes=6))
            return trade_no

        stopping = threading.Event()
        thread = threading.Thread(target=projections.run_forever, args=(stopping,), daemon=True)
        first = settle_one(0)
        thread.start()
        try:
            wait_for(lambda: projections.caught_up())
            own_postgres.stop()
            time.sleep(12)  # longer than a connection attempt may wait (POSTGRES_CONNECT_TIMEOUT 10 s): one fails
            assert thread.is_alive()
            own_postgres.start()
            second = settle_one(10)
            wait_for(lambda: projections.caught_up())
        finally:
            stopping.set()
            thread.join(30)
        assert not projections.failing
        with psycopg.connect(url) as conn:
            assert health.failing(conn) == []
            states = dict(conn.execute("SELECT trade_no, state FROM orders").fetchall())
        assert states == {first: "finished", second: "finished"}, states
        assert "projections: database unavailable" in kept.text and "projections: database back after" in kept.text
    finally:
        kept.close()
        projections.close()
        ledger.close()


class KeptLogs(logging.Handler):
    """The WARNING and above records of one logger, kept by a handler on that logger itself."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.logger, self.lines = logging.getLogger(name), []
        self.level_before, self.disabled_before = self.logger.level, self.logger.disabled
        self.logger.disabled = False  # a library's logging.config call may have disabled existing loggers
        self.logger.setLevel(logging.WARNING)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def close(self) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level_before)
        self.logger.disabled = self.disabled_before
        super().close()
