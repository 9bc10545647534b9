"""Our driver on a peer's pile, end to end (issue 13's must-show): two chargeledger instances on loopback, each
on its own database, linked with one credential set per direction. A, the infrastructure operator, runs its
real YKC gateway (a scripted pile over TCP), its API with the T/CEC door under uvicorn, and
`chargeledger tcec-outbox` in a process of its own; B, the customer platform, its API (the door and the driver
API) under uvicorn. Every call between them is real HTTP: B's driver API calls A's door with the production
client at A's loopback URL, A's outbox calls B's door.

B's driver finds A's station through B's driver API, starts on A's pile, watches it charge (the live status
asked of A), stops it; A's pile record settles the session, A's outbox pushes the order, and B's driver pays
exactly A's bill: B's ``payable:APLATFORM`` and A's ``receivable:BPLATFORM`` are that bill. A's daily
``check_charge_orders`` finds B agreeing (no dispute); with A's amount tampered by a fen, B disputes it
(reason 2). Both platforms' audit replays balance.

B's catalogue comes from one run of the real `chargeledger peers pull` (a subprocess on B's database), once A's
pile has reported its gun: the driver then browses what that pull brought, at a moment the test chooses. B's
own `tcec-outbox` with a short ``--pull-interval`` would pull the same, but the test would wait on the interval
and race its pulls; B's outbox has nothing else to do here (its reconciler only acts on charges without a
trustworthy answer, and every answer here is one). A's catalogue answers from its read views, which a
deployment keeps with `chargeledger projections`; the test catches them up in process before the pull.
A's daily check runs as one in-process ``OutboxRole.step`` at 02:00 of the next China day, on A's database,
after A's outbox process has been stopped (waiting for a real 01:00 is not an option).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from psycopg_pool import ConnectionPool

from adapters.api.driver.settings import DriverApiSettings
from adapters.audit.replay import replay
from adapters.followers.log_follower import iter_events
from adapters.interconnect.mapping import connector_code, station_code
from adapters.interconnect.outbox.role import OutboxRole
from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec.interfaces import Role
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from domain.books import books_of
from domain.ledger import Ledger
from domain.pricing import price
from domain.start_rules import StartRules
from domain.tariff import TIERS
from domain.wallet import Wallet
from pile_link.gateway import Gateway
from pile_link.ykc import RemoteStart, RemoteStartReply, RemoteStop, RemoteStopReply, TransactionConfirm
from projections.runner import Projections
from tests.e2e.gateway_harness import CHARGING, IDLE, PRICE_PER_TIER, Clock, local, run, until
from tests.e2e.roaming_deployment import OutboxProcess, Served, b_side, cli, free_port, rows  # noqa: F401
from tests.factories import PRICES, SLOTS, build_world
from tests.ykc_pile import ScriptedPile, settlements_done

A_ID, B_ID = "APLATFORM", "BPLATFORM"
OTHER_PILE = "55000000000001"
OPENID = "wechat:wx-main:o-roamer-1"
TOP_UP, HOLD_MAX = 150_00, 200_00
SHANGHAI = ZoneInfo("Asia/Shanghai")


def yuan(units: int) -> str:
    """A tariff price (1/100000 yuan) as the driver API shows it: yuan with 4 places."""
    return f"{units / 100000:.4f}"


def prices_at(*instants: datetime) -> set[str]:
    """The total price (yuan/kWh) of the test tariff's tier at each instant, China time."""
    tiers = {TIERS[SLOTS[t.hour * 2 + t.minute // 30]] for t in (i.astimezone(SHANGHAI) for i in instants)}
    return {yuan(PRICES[tier]["electricity"] + PRICES[tier]["service"]) for tier in tiers}


def books(ledger: Ledger) -> dict[str, int]:
    return books_of(iter_events(ledger.wallets)).accounts


def audit(ledger: Ledger, database_url: str) -> None:
    with Projections(ledger.applications, eventsourcing_env(database_url)) as views:
        views.catch_up()  # the auditor compares the views with the ledger too
    report = replay(database_url)
    assert report.ok, report.as_text()
    assert report.trial_balance == 0


def test_a_driver_of_b_charges_on_as_ykc_pile_pays_as_bill_and_the_daily_check_agrees_until_tampered(
        ledger: Ledger, database_url: str, nats_url: str, b_side: tuple[str, Ledger, ConnectionPool],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "chargeledger.interconnect.roaming")
    b_url, b_ledger, b_pool = b_side
    keys_a, keys_b = SecretBox.generate_setting("a1"), SecretBox.generate_setting("b1")
    world = build_world(ledger, top_up=0)
    build_world(ledger, pile_no=OTHER_PILE, driver="other")  # another tenant of A: never B's to see

    def views_of_a() -> None:
        """A's read views caught up, as `chargeledger projections` keeps them."""
        with Projections(ledger.applications, eventsourcing_env(database_url)) as views:
            views.catch_up()

    views_of_a()
    a_served = Served(ledger, database_url, keys_a, free_port())
    b_served = Served(b_ledger, b_url, keys_b, free_port(), driver=DriverApiSettings(
        SecretBox.generate_setting("p1"), "https://b.example.com", start_rules=StartRules(5_00, HOLD_MAX)))
    outbox = OutboxProcess(database_url, nats_url, keys_a, tmp_path / "outbox.log")
    b_tenant = uuid.uuid4()
    station, gun1 = station_code(world.station_id), connector_code(world.pile_no, 1)
    wallet_id = b_ledger.open_wallet(b_tenant, OPENID, "test")
    b_ledger.top_up(wallet_id, key="top-up:roamer-1", amount=TOP_UP, provider="wechat", payment_ref="wx-roamer-1")
    with ExitStack() as stack:  # whatever fails, every server and process is stopped
        a_pool = stack.enter_context(ConnectionPool(database_url, min_size=1, max_size=2, open=True))
        stack.callback(a_served.stop)
        a_served.start()  # its door creates the interconnect's tables
        stack.callback(b_served.stop)
        b_served.start()
        a_store, b_store = Store(a_pool, SecretBox.from_setting(keys_a)), Store(b_pool, SecretBox.from_setting(keys_b))
        b_on_a = a_store.peers.configure(world.tenant_id, B_ID, our_operator_id=A_ID, role=Role.CUSTOMER,
                                         base_url=f"{b_served.url}/evcs/v1", status_interval=1)
        a_on_b = b_store.peers.configure(b_tenant, A_ID, our_operator_id=B_ID, base_url=f"{a_served.url}/evcs/v1",
                                         role=Role.INFRASTRUCTURE, outbound=b_on_a.inbound)
        b_on_a = a_store.peers.set_outbound(world.tenant_id, B_ID, a_on_b.inbound)
        assert b_served.app is not None
        token, _ = b_served.app.state.driver_identity.tokens.issue(b_tenant, OPENID)
        driver = stack.enter_context(httpx.Client(base_url=b_served.url, headers={"Authorization": f"Bearer {token}"},
                                                  timeout=30))
        stack.callback(outbox.stop)
        outbox.start()

        async def b_api(method: str, path: str, **options: Any) -> httpx.Response:
            return await asyncio.to_thread(driver.request, method, path, **options)

        def b_charge_is(seq: str, state: str) -> bool:
            charge = b_ledger.find_roaming(b_tenant, A_ID, seq)
            return charge is not None and charge.state == state

        async def scenario(gateway: Gateway, clock: Clock) -> tuple[str, str, tuple[int, int, int, int]]:
            pile = ScriptedPile(world.pile_no)
            await pile.login(gateway.port)
            pile.send(pile.realtime(1, status=IDLE, plugged=0))
            await until(lambda: ledger.registry.pile(world.pile_no).guns["1"]["status"] == "idle")
            await asyncio.to_thread(views_of_a)  # A's catalogue answers from its read views
            pulled = await asyncio.to_thread(cli, b_url, nats_url, keys_b, "peers", "pull", A_ID,
                                             "--tenant", str(b_tenant))
            assert pulled.returncode == 0, pulled.stdout + pulled.stderr
            assert pulled.stdout.startswith(f"{A_ID}: complete, 1 stations"), pulled.stdout  # A's tenant only

            listed = await b_api("GET", "/driver/roaming/stations")
            assert listed.status_code == 200, listed.text
            (found,) = listed.json()["stations"]
            assert (found["operator_id"], found["station_id"], found["name"]) == (A_ID, station, "Station 1")
            assert found["connectors"] == {"free": 1, "total": 2}  # gun 1 idle, unplugged; gun 2 not reported yet
            before = datetime.now(timezone.utc)
            detail = await b_api("GET", f"/driver/roaming/stations/{A_ID}/{station}")
            after = datetime.now(timezone.utc)
            assert detail.status_code == 200, detail.text
            connector = {c["connector_id"]: c for c in detail.json()["connectors"]}[gun1]
            assert connector["status"] == "idle"
            assert connector["price_now"]["total"] in prices_at(before, after)  # A's tariff, now

            headers = {"Idempotency-Key": "roam-start-0001"}
            body = {"operator_id": A_ID, "connector_id": gun1, "station_id": station}
            started = await b_api("POST", "/driver/roaming/sessions", json=body, headers=headers)
            assert started.status_code == 202, started.text
            seq = started.json()["start_charge_seq"]
            assert (started.json()["state"], started.json()["hold_fen"]) == ("starting", TOP_UP)
            _, start = await pile.expect_frame(RemoteStart)  # A's gateway tells the pile (0x34)
            assert start.gun_no == "01"
            again = await b_api("POST", "/driver/roaming/sessions", json=body, headers=headers)  # the app's retry
            assert (again.status_code, again.json()["start_charge_seq"], again.json()["replayed"]) == (202, seq, True)
            assert rows(database_url, "SELECT trade_no FROM tcec_starts") == [(start.trade_no,)]  # one start at A
            pile.send(RemoteStartReply(start.trade_no, world.pile_no, "01", 1, 0))
            for i in range(1, 4):  # the gateway's clock stays near the outbox's (the real one)
                clock.now += timedelta(seconds=1)
                pile.send(pile.realtime(1, status=CHARGING, trade_no=start.trade_no, energy=i * 2500))
            await until(lambda: ledger.session(start.trade_no).readings == 3)
            await until(lambda: b_charge_is(seq, "charging"), 30)  # A's outbox pushed the start result

            watched = await b_api("GET", f"/driver/roaming/sessions/{A_ID}/{seq}")
            assert watched.status_code == 200, watched.text
            live = watched.json()["live"]  # from A: its answer to query_equip_charge_status
            assert (watched.json()["state"], live["energy_kwh"], live["connector_status"]) == ("charging", "0.7500", 3)
            assert "showing the last push" not in caplog.text  # A answered: not B's copy of a push

            stopped = await b_api("POST", f"/driver/roaming/sessions/{A_ID}/{seq}/stop")
            assert (stopped.status_code, stopped.json()["state"]) == (202, "stopping")
            await pile.expect(RemoteStop)  # 0x36
            pile.send(RemoteStopReply(world.pile_no, "01", 1, 0))
            now = local(clock)
            energy = [0, 0, 0, 0]
            energy[SLOTS[(now.hour * 60 + now.minute) // 30]] = 7600
            pile.send(pile.record(start.trade_no, 1, tuple(energy), PRICE_PER_TIER,  # type: ignore[arg-type]
                                  now - timedelta(minutes=3), now))  # 0x3B
            assert (await pile.expect(TransactionConfirm)).result == 0
            await settlements_done(gateway)
            await pile.close()
            return seq, start.trade_no, tuple(energy)  # type: ignore[return-value]

        seq, trade_no, energy = run(ledger, database_url, nats_url, scenario)
        asyncio.run(until(lambda: b_charge_is(seq, "settled"), 30))  # A's outbox pushed the order
        done = driver.get(f"/driver/roaming/sessions/{A_ID}/{seq}").json()
        outbox.stop()
        assert "Traceback" not in (tmp_path / "outbox.log").read_text()

        session = ledger.session(trade_no)
        bill = session.bill["total_fen"]
        assert session.bill == price(energy, session.schedule).as_dict() and bill > 0
        assert (done["state"], done["bill"]["total_fen"], done["live"]) == ("settled", bill, None)
        b_wallet = b_ledger.wallet(Wallet.create_id(b_tenant, OPENID))
        assert (b_wallet.available, b_wallet.held) == (TOP_UP - bill, 0)  # exactly A's bill, the hold back
        assert -books(b_ledger)[f"payable:{A_ID}"] == books(ledger)[f"receivable:{B_ID}"] == bill

        # A's daily check, as the outbox's next step after 01:00 of the next China day runs it
        (ended,) = rows(database_url, "SELECT ended_at FROM tcec_starts WHERE start_charge_seq = %s", seq)[0]
        day = ended.astimezone(SHANGHAI).date()
        next_day = datetime(day.year, day.month, day.day, 2, tzinfo=SHANGHAI) + timedelta(days=1)
        role = OutboxRole(ledger, database_url, a_store)  # the production client, to B's loopback URL
        stack.callback(role.close)
        role.step(next_day)
        assert a_store.outbox.disputes([b_on_a.peer_id]) == []
        (check,) = [r for r in a_store.outbox.rows(b_on_a.peer_id) if r["interface"] == "check_charge_orders"]
        assert (check["state"], check["answer"]) == ("delivered", "TotalDisputeOrder 0")
        with a_pool.connection() as conn:  # A's books now say one fen more
            conn.execute("UPDATE tcec_starts SET total_fen = total_fen + 1 WHERE start_charge_seq = %s", (seq,))
            conn.execute("DELETE FROM tcec_outbox WHERE key LIKE 'check:%%'")
        role.step(next_day + timedelta(minutes=5))
        disputes = a_store.outbox.disputes([b_on_a.peer_id])
        assert [(d["start_charge_seq"], d["reason"]) for d in disputes] == [(seq, 2)]  # the amount differs
    audit(ledger, database_url)
    audit(b_ledger, b_url)
