"""Roaming end to end: B, a customer platform on its own database, starts a charge for its user on A's YKC pile
through A's T/CEC door; the real gateway sends the pile its start, the pile charges, B stops it, the pile's
record settles it. A's outbox (`chargeledger tcec-outbox`, a process of its own) pushes the start result, the
charge status, the stop result and the order to B's door (uvicorn on loopback). The order is the ledger's
price of the session, owed on B's receivable in A's books. B is taken down before the stop: the stop result
and the order fail, A's outbox is killed and started again, and each is delivered exactly once.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.audit.replay import replay
from adapters.followers.log_follower import iter_events
from adapters.interconnect.client import TcecClient
from adapters.interconnect.door import InterconnectSettings, mount
from adapters.interconnect.mapping import connector_code, station_code
from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.models.charge import ChargeStatusRequest, StartChargeRequest, StopChargeRequest
from adapters.interconnect.tcec.models.policy import BusinessPolicyRequest
from adapters.interconnect.tcec.models.stations import StationsInfoRequest
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from domain.books import books_of
from domain.ledger import Ledger
from domain.pricing import price
from pile_link.gateway import Gateway
from pile_link.owed import ROAMING_BALANCE_FEN
from pile_link.ykc import RemoteStart, RemoteStartReply, RemoteStop, RemoteStopReply, TransactionConfirm
from projections.runner import Projections
from tests.e2e.gateway_harness import CHARGING, PRICE_PER_TIER, Clock, local, run, until
from tests.e2e.roaming_deployment import (  # noqa: F401
    B_ID, OutboxProcess, Served, b_side, free_port, link_a_and_b, rows)
from tests.factories import SLOTS, build_world
from tests.ykc_pile import ScriptedPile, settlements_done

SEQ = f"{B_ID}{1:018d}"
OTHER_PILE = "55000000000001"
IDLE = 2  # YKC realtime status byte


def received(b_url: str, interface: str) -> list[tuple[dict, int]]:
    return [(wire.loads(payload), times) for payload, times in rows(
        b_url, "SELECT payload, times FROM tcec_received WHERE interface = %s ORDER BY id", interface)]


def test_b_charges_its_user_on_as_pile_and_a_pushes_the_bill_once_across_bs_outage_and_a_restart(
        ledger: Ledger, database_url: str, nats_url: str, b_side: tuple[str, Ledger, ConnectionPool],
        tmp_path: Path) -> None:
    b_url, b_ledger, b_pool = b_side
    keys_a, keys_b = SecretBox.generate_setting("a1"), SecretBox.generate_setting("b1")
    world = build_world(ledger, top_up=0)
    build_world(ledger, pile_no=OTHER_PILE, driver="other")
    with Projections(ledger.applications, eventsourcing_env(database_url)) as views:
        views.catch_up()
    a_app = create_app(ledger, database_url, AuthSettings.generate(), pool_size=2)
    a_store: Store = mount(a_app, InterconnectSettings(keys_a)).services.store
    port = free_port()
    b_served = Served(b_ledger, b_url, keys_b, port)
    b_served.start()
    b_store = Store(b_pool, SecretBox.from_setting(keys_b))  # B's tables, as the test reads and configures them
    _, a_on_b = link_a_and_b(a_store, b_store, world.tenant_id, port, status_interval=1,
                             a_url="http://testserver/evcs/v1")
    outbox = OutboxProcess(database_url, nats_url, keys_a, tmp_path / "outbox.log")
    outbox.start()
    gun1 = connector_code(world.pile_no, 1)

    async def scenario(gateway: Gateway, clock: Clock) -> tuple[str, tuple[int, int, int, int]]:
        with TestClient(a_app) as a_door:
            client = TcecClient(a_on_b, b_store.held, a_door)

            async def call(interface: str, request: object) -> object:
                return await asyncio.to_thread(client.call, interface, request)

            pile = ScriptedPile(world.pile_no)
            await pile.login(gateway.port)
            pile.send(pile.realtime(1, status=IDLE, plugged=1))
            await until(lambda: ledger.registry.pile(world.pile_no).guns["1"]["status"] == "idle")
            stations = await call("query_stations_info", StationsInfoRequest())
            assert [s.StationID for s in stations.StationInfos] == [station_code(world.station_id)]  # A's tenant only
            policy = await call("query_equip_business_policy", BusinessPolicyRequest(EquipBizSeq=SEQ, ConnectorID=gun1))
            assert policy.SumPeriod == 7
            refused = await call("query_start_charge", StartChargeRequest(
                StartChargeSeq=SEQ, ConnectorID=connector_code(OTHER_PILE, 1)))
            assert (refused.SuccStat, refused.FailReason) == (1, 1)
            assert rows(database_url, "SELECT count(*) FROM tcec_starts") == [(0,)]

            started = await call("query_start_charge", StartChargeRequest(StartChargeSeq=SEQ, ConnectorID=gun1))
            assert (started.SuccStat, started.StartChargeSeqStat) == (0, 1)
            _, start = await pile.expect_frame(RemoteStart)
            assert (start.gun_no, start.balance_fen) == ("01", ROAMING_BALANCE_FEN)
            assert await call("query_start_charge", StartChargeRequest(StartChargeSeq=SEQ, ConnectorID=gun1)) \
                == started  # sent again: the same answer, nothing new
            pile.send(RemoteStartReply(start.trade_no, world.pile_no, "01", 1, 0))
            for i in range(1, 4):  # the gateway's clock stays near the outbox's (the real one)
                clock.now += timedelta(seconds=1)
                pile.send(pile.realtime(1, status=CHARGING, trade_no=start.trade_no, energy=i * 2500))
            await until(lambda: ledger.session(start.trade_no).readings == 3)
            await until(lambda: received(b_url, "notification_start_charge_result"), 60)
            await until(lambda: received(b_url, "notification_equip_charge_status"), 60)
            status = await call("query_equip_charge_status", ChargeStatusRequest(StartChargeSeq=SEQ))
            assert (status.StartChargeSeqStat, status.TotalPower) == (2, Decimal("0.7500"))

            await asyncio.to_thread(b_served.stop)  # B is down: the stop result and the order cannot reach it
            stopped = await call("query_stop_charge", StopChargeRequest(StartChargeSeq=SEQ, ConnectorID=gun1))
            assert (stopped.SuccStat, stopped.StartChargeSeqStat) == (0, 3)
            await pile.expect(RemoteStop)
            pile.send(RemoteStopReply(world.pile_no, "01", 1, 0))
            now = local(clock)
            energy = [0, 0, 0, 0]
            energy[SLOTS[(now.hour * 60 + now.minute) // 30]] = 7600
            pile.send(pile.record(start.trade_no, 1, tuple(energy), PRICE_PER_TIER,  # type: ignore[arg-type]
                                  now - timedelta(minutes=3), now))
            assert (await pile.expect(TransactionConfirm)).result == 0
            await settlements_done(gateway)
            await pile.close()
            return start.trade_no, tuple(energy)  # type: ignore[return-value]

    try:
        trade_no, energy = run(ledger, database_url, nats_url, scenario)

        def failed_once(key: str) -> bool:
            return rows(database_url, "SELECT count(*) FROM tcec_outbox WHERE key = %s AND attempts >= 1 "
                                      "AND state = 'pending'", key) == [(1,)]

        asyncio.run(until(lambda: failed_once(f"stop:{SEQ}"), 60))
        assert received(b_url, "notification_charge_order_info") == []
        outbox.kill()  # the sending process dies with the pushes it owes
        b_served.start()
        outbox.start()
        asyncio.run(until(lambda: received(b_url, "notification_charge_order_info"), 60))
        asyncio.run(until(lambda: rows(database_url, "SELECT count(*) FROM tcec_outbox WHERE state = 'pending' "
                                                     "AND interface <> 'notification_stationStatus'") == [(0,)], 60))
    finally:
        outbox.stop()
        b_served.stop()
    assert "Traceback" not in (tmp_path / "outbox.log").read_text()

    (start_result, times), = received(b_url, "notification_start_charge_result")
    assert (start_result["StartChargeSeq"], start_result["StartChargeSeqStat"], times) == (SEQ, 2, 1)
    (stop_result, times), = received(b_url, "notification_stop_charge_result")
    assert (stop_result["StartChargeSeqStat"], times) == (4, 1)
    (order, times), = received(b_url, "notification_charge_order_info")
    assert times == 1  # delivered exactly once, after the restart
    session = ledger.session(trade_no)
    bill = price(energy, session.schedule)
    assert session.bill == bill.as_dict() and order["TotalMoney"] == Decimal(bill.total_fen) / 100
    assert (order["TotalPower"], order["StopReason"]) == (Decimal("0.7600"), 1)
    receivable = books_of(iter_events(ledger.wallets)).accounts[f"receivable:{B_ID}"]
    assert receivable == bill.total_fen  # A's receivable from B is the bill
    with Projections(ledger.applications, eventsourcing_env(database_url)) as views:
        views.catch_up()
    report = replay(database_url)
    assert report.ok, report.as_text()
    assert report.accounts[f"receivable:{B_ID}"] == bill.total_fen
