"""The fault suite's deployment (tests/e2e/test_fault_suite.py): every role its own process from the CLI
(``tests/cluster.py``), a tenant with drivers and their tokens, what drivers and operators do through it,
and the checks after each scenario (``drain_and_check``).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest

from adapters.audit.replay import replay
from adapters.api.auth import AuthSettings, TokenSigner
from adapters.api.driver.identity import DriverTokens, driver_id_of
from adapters.postgres.env import eventsourcing_env
from adapters.followers.log_follower import iter_events
from adapters.followers.watchdog import FOLLOWUP_GRACE
from domain.books import books_of
from domain.ledger import Ledger
from domain.registry import Pile
from domain.session import ChargingSession
from domain.wallet import Wallet
from pile_link.simulator.fleet import pile_numbers
from projections.runner import Projections
from tests.cluster import ROOT, Cluster, wait_for
from tests.factories import PRICES, SLOTS
from tests.integration.test_relay import assert_stream_is_the_logs, read_stream

PILES, GUNS, SPEED = 6, 2, 30
FIRST_PILE = "99000000000001"
SILENT_PILES = pile_numbers("99000000000901", 4)  # registered, never connected: their starts are never answered
NATS_OUTAGE = 25.0
PG_OUTAGE = 55.0
SEED = int(os.environ.get("CHARGELEDGER_FAULT_SEED", str(random.SystemRandom().randrange(10**6))))
ROLES = ("relay-a", "relay-b", "gateway", "watchdog", "projections", "api")
FIGURES: list[tuple[str, str, float]] = []


@dataclass
class Driver:
    driver_id: str
    wallet_id: UUID
    headers: dict[str, str]


@dataclass
class Suite:
    cluster: Cluster
    ledger: Ledger
    tenant_id: UUID
    drivers: list[Driver]
    guns: list[tuple[str, int]]
    ops_wallet: UUID
    http: httpx.Client
    ledger_id: str
    trades: set[str] = field(default_factory=set)

    def reopen_ledger(self) -> None:
        """A new Ledger (its pool's connections died with a Postgres restart)."""
        self.ledger.close()
        self.ledger = Ledger(eventsourcing_env(self.cluster.database_url))


def figure(scenario: str, measure: str, seconds: float) -> None:
    FIGURES.append((scenario, measure, seconds))
    print(f"RECOVERY {scenario} {measure} {seconds:.2f}", flush=True)


# ---- the deployment -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def suite() -> Iterator[Suite]:
    base = ROOT / "var" / "test"
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="faults-", dir=base))
    directory.chmod(0o755)  # the embedded Postgres may run as its own system user
    cluster = Cluster(directory, piles=PILES, guns=GUNS, first_pile=FIRST_PILE, speed=SPEED)
    ledger = None
    try:
        cluster.start_servers()
        ledger = Ledger(eventsourcing_env(cluster.database_url))
        tenant = ledger.create_tenant("Fault Suite Co.", "admin")
        station = ledger.create_station(tenant, "Faults", "1 Crash Road", 31.23, 121.47, "admin")
        piles = pile_numbers(FIRST_PILE, PILES)
        for pile_no in piles + SILENT_PILES:
            ledger.register_pile(station, pile_no, "DC", GUNS, "admin")
        tariff = ledger.create_tariff(tenant, "standard", PRICES, SLOTS, "admin")
        ledger.assign_tariff(tariff, "admin", station_id=station)
        tokens = DriverTokens(TokenSigner(AuthSettings(cluster.token_key.encode(), timedelta(hours=8))))
        drivers = []
        for i in range(PILES * GUNS):
            driver_id = driver_id_of("wechat", "wx-main", f"o-fault-{i:02d}")
            wallet_id = ledger.open_wallet(tenant, driver_id, driver_id)
            assert wallet_id == Wallet.create_id(tenant, driver_id)
            ledger.top_up(wallet_id, key=f"topup:{driver_id}", amount=3000_00, provider="cash",
                                  payment_ref=f"counter-{i}")
            drivers.append(Driver(driver_id, wallet_id, {"Authorization": f"Bearer {tokens.issue(tenant, driver_id)[0]}"}))
        ops_wallet = ledger.open_wallet(tenant, "fleet-account", "admin")
        ledger.top_up(ops_wallet, key="topup:fleet", amount=1000_00, provider="cash",
                              payment_ref="counter-fleet")
        for role in ROLES:
            cluster.start(role)
        ids: list[str] = []

        def identity() -> bool:  # made by the relay
            with psycopg.connect(cluster.database_url) as conn:
                ids.extend(r[0] for r in conn.execute("SELECT id FROM ledger_identity"))
            return bool(ids)

        wait_for(identity, 60, "the relay's ledger identity")
        ledger_id = ids[0]
        http = httpx.Client(base_url=f"http://127.0.0.1:{cluster.api_port}", timeout=10)
        s = Suite(cluster, ledger, tenant, drivers, [(p, g) for p in piles for g in range(1, GUNS + 1)], ops_wallet,
                  http, ledger_id)
        wait_for(lambda: api_up(s), 60, "the API answers")
        print(f"fault suite: seed {SEED} (CHARGELEDGER_FAULT_SEED={SEED} replays the choices), logs in {directory}")
        yield s
        http.close()
    finally:
        try:
            if FIGURES:
                print("\nfault suite recovery times (s):")
                for scenario, measure, seconds in FIGURES:
                    print(f"  {scenario:22} {measure:34} {seconds:7.2f}")
        finally:
            if ledger is not None:
                try:
                    ledger.close()
                except Exception:  # noqa: BLE001 - its pool may point at a stopped server
                    pass
            cluster.close()
            if not os.environ.get("CHARGELEDGER_FAULT_KEEP"):  # set it to keep the roles' logs for a look
                shutil.rmtree(directory, ignore_errors=True)


def api_up(s: Suite) -> bool:
    try:
        return s.http.get("/driver/wallet", headers=s.drivers[0].headers).status_code == 200
    except httpx.HTTPError:
        return False


# ---- reading the ledger -------------------------------------------------------------------------------
def session_ids(s: Suite, after: int = 0) -> list[UUID]:
    """Every charging session (opened after notification ``after``), from the Sessions log."""
    with psycopg.connect(s.cluster.database_url) as conn:
        rows = conn.execute("SELECT originator_id FROM sessions_events WHERE originator_version = 1 "
                            "AND topic LIKE %s AND notification_id > %s ORDER BY notification_id",
                            ("%ChargingSession%", after)).fetchall()
    return [r[0] for r in rows]


def sessions_head(s: Suite) -> int:
    with psycopg.connect(s.cluster.database_url) as conn:
        return conn.execute("SELECT coalesce(max(notification_id), 0) FROM sessions_events").fetchone()[0]


def load(s: Suite, ids: list[UUID]) -> list[ChargingSession]:
    return s.ledger.sessions.get_all(*((i, ChargingSession, "session") for i in ids))


def session(s: Suite, trade_no: str) -> ChargingSession:
    return s.ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session", fresh=True)


def heads(s: Suite) -> dict[str, int]:
    """Each Application's last notification id."""
    return {app.name: app.recorder.max_notification_id() or 0 for app in s.ledger.applications}


def relay_at(s: Suite, target: dict[str, int]) -> bool:
    with psycopg.connect(s.cluster.database_url) as conn:
        tracked = dict(conn.execute("SELECT application_name, notification_id FROM relay_tracking").fetchall())
    return all(tracked.get(name, 0) >= head for name, head in target.items())


def projections_at(s: Suite, target: dict[str, int]) -> bool:
    with Projections(s.ledger.applications, eventsourcing_env(s.cluster.database_url, pool_size=1)) as p:
        for app in s.ledger.applications:
            for name, recorder in p.recorders.items():
                if app.name in recorder.view.follows() and (p.position(name, app.name) or 0) < target[app.name]:
                    return False
    return True


# ---- what drivers and operators do --------------------------------------------------------------------
def post(s: Suite, path: str, driver: Driver, **kw: Any) -> httpx.Response | None:
    try:
        return s.http.post(path, headers={**driver.headers, **kw.pop("headers", {})}, **kw)
    except httpx.HTTPError:
        return None  # the API is down: a driver's app retries


def start(s: Suite, i: int, key: str) -> httpx.Response | None:
    pile_no, gun_no = s.guns[i]
    return post(s, "/driver/sessions", s.drivers[i], json={"pile_no": pile_no, "gun_no": gun_no},
                headers={"Idempotency-Key": key})


def start_until_accepted(s: Suite, i: int, key: str, timeout: float = 60) -> str:
    """Start (or retry the same key) until 202: the gun not ready yet or the API away are retried."""
    answers: list[httpx.Response | None] = []

    def accepted() -> bool:
        answers.append(start(s, i, key))
        r = answers[-1]
        if r is not None and r.status_code not in (202, 409, 503):
            raise AssertionError(f"start {key}: {r.status_code} {r.text}")
        return r is not None and r.status_code == 202

    wait_for(accepted, timeout, f"start {key} accepted (last: {answers[-1] and answers[-1].text if answers else None})",
             poll=0.2)
    trade_no = answers[-1].json()["trade_no"]  # type: ignore[union-attr]
    s.trades.add(trade_no)
    return trade_no


def start_fleet(s: Suite, scenario: str) -> dict[int, str]:
    """A driver's start on every gun; returns once every session is charging."""
    trades = {i: start_until_accepted(s, i, f"{scenario}-start-{i:02d}") for i in range(len(s.guns))}
    wait_for(lambda: all(session(s, t).state == "charging" for t in trades.values()), 60, "every start charging")
    return trades


def stop(s: Suite, i: int, trade_no: str) -> None:
    """A driver asks to stop, retrying while the API is away; 409: the session no longer charges."""
    def asked() -> bool:
        r = post(s, f"/driver/sessions/{trade_no}/stop", s.drivers[i])
        if r is not None and r.status_code not in (202, 409, 503):
            raise AssertionError(f"stop {trade_no}: {r.status_code} {r.text}")
        return r is not None and r.status_code in (202, 409)
    wait_for(asked, 120, f"stop {trade_no} asked", poll=0.2)


def terminal(s: Suite, trades: Any) -> bool:
    return all(not session(s, t).is_open for t in trades)


def restart_simulate(s: Suite) -> None:
    """A fresh simulated fleet for the scenario (the last one was drained and ended)."""
    proc = s.cluster.processes.get("simulate")
    if proc is not None and proc.poll() is None:
        s.cluster.kill("simulate")  # a scenario that failed before its drain
    s.cluster.start("simulate")
    wait_for(lambda: all_ready(s), 60, "every simulated gun ready (logged in, model taken, reported idle)")


def all_ready(s: Suite) -> bool:
    for pile_no in dict(s.guns):
        pile = s.ledger.registry.get(Pile.create_id(pile_no), Pile, "pile", fresh=True)
        if any(pile.not_ready_because(g) for g in range(1, GUNS + 1)):
            return False
    return True


# ---- after each scenario ------------------------------------------------------------------------------
def drain_and_check(s: Suite, scenario: str) -> None:
    c = s.cluster
    c.alive(*ROLES)
    # every start answered by its pile (accepted or refused), then the fleet drained: charges stopped at the
    # pile, every record confirmed
    wait_for(lambda: all(session(s, t).state not in ("requested", "starting") for t in s.trades), 60,
             "every start answered by the pile")
    rc = c.terminate("simulate", 90)
    assert rc == 0, f"simulate --drain exit {rc}:\n{c.log('simulate')}"
    ids = session_ids(s)
    wait_for(lambda: all(not x.is_open for x in load(s, ids)), 60, "every session terminal")
    sessions = load(s, ids)
    assert {x.trade_no for x in sessions} >= s.trades
    wallets = [d.wallet_id for d in s.drivers] + [s.ops_wallet]
    # A role killed between a session's closing commit and its wallet's leaves the hold to the watchdog's
    # follow-up, applied once FOLLOWUP_GRACE has passed: the hold must close by then, not at once.
    try:
        took = wait_for(lambda: not any(s.ledger.wallet(w).held for w in wallets),
                        FOLLOWUP_GRACE.total_seconds() + 30, "every hold closed")
    except AssertionError:
        raise AssertionError(f"holds left open: {open_holds(s, wallets, sessions)}") from None
    if took > 1:
        figure(scenario, "holds closed by the watchdog's follow-up after", took)
    books = books_of(iter_events(s.ledger.wallets))
    assert books.balanced and books.trial_balance == 0
    target = heads(s)
    wait_for(lambda: relay_at(s, target), 60, "the relay caught up")
    messages = asyncio.run(read_stream(c.nats_url()))
    assert_stream_is_the_logs(s.ledger, s.ledger_id, messages)
    wait_for(lambda: projections_at(s, target), 60, "the projections caught up")
    with psycopg.connect(c.database_url) as conn:
        orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    assert orders == len(sessions), (orders, len(sessions))
    report = replay(c.database_url)
    assert report.ok and not report.differences, report.as_text()
    c.alive(*ROLES)
    print(f"{scenario}: {len(sessions)} sessions, {len(messages)} events on the stream, audit 0 differences")


def open_holds(s: Suite, wallets: list[UUID], sessions: list[ChargingSession]) -> dict[str, Any]:
    """What a hold left open belongs to: the wallet's holds, their sessions, the follow-ups waiting."""
    with psycopg.connect(s.cluster.database_url) as conn:
        followups = conn.execute("SELECT key, command, due, attempts, last_error FROM wallet_followups").fetchall()
    by_trade = {x.trade_no: x for x in sessions}
    return {str(w): {hold: (by_trade[hold].state, by_trade[hold].reason) if hold in by_trade else "no session"
                     for hold in s.ledger.wallet(w).holds}
            for w in wallets if s.ledger.wallet(w).held} | {"wallet_followups": followups}


def rng_for(scenario: str) -> random.Random:
    print(f"{scenario}: seed {SEED}")
    return random.Random(f"{SEED}/{scenario}")
