"""We as customer platform: B's driver charges on A's pile through B's driver API (issue 13, item 4).

Two API apps on their own databases (tests/integration/roaming_harness.py): B's driver starts on A's
connector, watches, stops; A's pile (played through A's ledger, as the gateway would write it) charges;
A's outbox pushes the start result and the order to B; B's driver wallet pays exactly A's bill from its
hold, owed to A on ``payable:APLATFORM``, equal to A's ``receivable:BPLATFORM``; both audits are clean.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx

from adapters.audit.replay import replay
from adapters.interconnect.mapping import connector_code
from adapters.postgres.env import eventsourcing_env
from domain.roaming import RoamingCharge
from domain.wallet import Wallet
from projections.runner import Projections
from tests.integration.roaming_harness import A_ID, OTHER_PILE, Roaming, online, roaming, step  # noqa: F401
from tests.integration.test_interconnect_outbox import ENERGY, settle, started

GUN1 = connector_code("32010600019236", 1)


def start(roaming: Roaming, auth: dict[str, str], key: str = "start-0001", connector: str = GUN1) -> Any:
    return roaming.b.client.post("/driver/roaming/sessions", json={"operator_id": A_ID, "connector_id": connector},
                                 headers={**auth, "Idempotency-Key": key})


def a_trade(roaming: Roaming, seq: str) -> str:
    return roaming.a.scalar("SELECT trade_no FROM tcec_starts WHERE start_charge_seq = %s", seq)


def charging_on_a(roaming: Roaming, seq: str) -> str:
    """A's pile answers the start and charges (what A's gateway writes)."""
    trade_no = a_trade(roaming, seq)
    now = datetime.now(timezone.utc)
    roaming.a.ledger.acknowledge_start(trade_no, at=now, ok=True)
    roaming.a.ledger.mark_charging(trade_no, at=now)
    return trade_no


def wallet(roaming: Roaming, openid: str = "driver-1") -> Wallet:
    return roaming.b.ledger.wallet(Wallet.create_id(roaming.b.tenant_id, f"wechat:wx-main:{openid}"))


def test_a_driver_of_b_starts_watches_stops_on_as_pile_and_pays_exactly_as_bill(roaming: Roaming) -> None:
    online(roaming.a.ledger, roaming.world.pile_no)
    auth = roaming.driver(top_up_fen=150_00)
    r = start(roaming, auth)
    assert r.status_code == 202, r.text
    charge = r.json()
    seq = charge["start_charge_seq"]
    assert (charge["state"], charge["hold_fen"], charge["replayed"]) == ("starting", 150_00, False)
    assert seq.startswith("BPLATFORM") and len(seq) == 27
    assert wallet(roaming).available == 0 and wallet(roaming).held == 150_00
    again = start(roaming, auth)  # the client's retry: the same charge, nothing new at A
    assert (again.status_code, again.json()["start_charge_seq"], again.json()["replayed"]) == (202, seq, True)
    assert roaming.a.scalar("SELECT count(*) FROM tcec_starts") == 1

    trade_no = charging_on_a(roaming, seq)
    outbox = roaming.outbox()
    step(outbox)  # A pushes the start result: B's charge is charging
    watched = roaming.b.client.get(f"/driver/roaming/sessions/{A_ID}/{seq}", headers=auth).json()
    assert watched["state"] == "charging" and watched["live"]["energy_kwh"] == "0.0000"  # A asked live

    stopped = roaming.b.client.post(f"/driver/roaming/sessions/{A_ID}/{seq}/stop", headers=auth)
    assert (stopped.status_code, stopped.json()["state"]) == (202, "stopping")
    assert roaming.a.ledger.session(trade_no).state == "stopping"  # A's pile is told to stop

    settle(roaming, trade_no, datetime.now(timezone.utc))
    step(outbox)  # the stop result and the order
    bill = roaming.a.ledger.session(trade_no).bill
    done = roaming.b.client.get(f"/driver/roaming/sessions/{A_ID}/{seq}", headers=auth).json()
    assert (done["state"], done["bill"]["total_fen"], done["live"]) == ("settled", bill["total_fen"], None)
    assert (wallet(roaming).available, wallet(roaming).held) == (150_00 - bill["total_fen"], 0)
    assert roaming.payable() == roaming.receivable() == bill["total_fen"]
    (order,) = [r for r in roaming.pushes("notification_charge_order_info")]
    assert order["answer"] == "ConfirmResult 0"  # B agreed
    for side in (roaming.a, roaming.b):
        with Projections(side.ledger.applications, eventsourcing_env(side.database_url)) as views:
            views.catch_up()  # the auditor compares the views with the ledger too
        report = replay(side.database_url)
        assert report.ok, report.as_text()
        assert report.trial_balance == 0


def test_the_daily_check_agrees_then_disputes_a_tampered_amount(roaming: Roaming) -> None:
    online(roaming.a.ledger, roaming.world.pile_no)
    auth = roaming.driver()
    seq = start(roaming, auth).json()["start_charge_seq"]
    trade_no = charging_on_a(roaming, seq)
    outbox = roaming.outbox()
    ended = datetime.now(timezone.utc)
    settle(roaming, trade_no, ended, ENERGY)
    step(outbox)
    day = (ended + timedelta(hours=8)).date()  # China day
    next_day = datetime(day.year, day.month, day.day, 2, tzinfo=timezone(timedelta(hours=8))) + timedelta(days=1)
    step(outbox, next_day)
    assert roaming.a.store.outbox.disputes([roaming.b_on_a.peer_id]) == []
    checks = [r for r in roaming.pushes("check_charge_orders")]
    assert len(checks) == 1 and checks[0]["answer"] == "TotalDisputeOrder 0"

    with roaming.a.client.app.state.pool.connection() as conn:  # A's books now say one fen more
        conn.execute("UPDATE tcec_starts SET total_fen = total_fen + 1 WHERE start_charge_seq = %s", (seq,))
        conn.execute("DELETE FROM tcec_outbox WHERE key LIKE 'check:%%'")
    step(outbox, next_day + timedelta(minutes=5))
    disputes = roaming.a.store.outbox.disputes([roaming.b_on_a.peer_id])
    assert [(d["start_charge_seq"], d["reason"]) for d in disputes] == [(seq, 2)]


def test_a_start_a_refuses_writes_back_the_hold_and_answers_409(roaming: Roaming) -> None:
    online(roaming.a.ledger, OTHER_PILE)  # another tenant's pile at A: "no such device" for B
    auth = roaming.driver()
    r = start(roaming, auth, connector=connector_code(OTHER_PILE, 1))
    assert (r.status_code, r.json()["code"]) == (409, "start_refused"), r.text
    assert (wallet(roaming).available, wallet(roaming).held) == (100_00, 0)
    assert roaming.a.scalar("SELECT count(*) FROM tcec_starts") == 0


def test_another_drivers_charge_and_an_unknown_operator_are_not_found(roaming: Roaming) -> None:
    online(roaming.a.ledger, roaming.world.pile_no)
    seq = start(roaming, roaming.driver()).json()["start_charge_seq"]
    other = roaming.driver("driver-2")
    assert roaming.b.client.get(f"/driver/roaming/sessions/{A_ID}/{seq}", headers=other).status_code == 404
    assert roaming.b.client.post(f"/driver/roaming/sessions/{A_ID}/{seq}/stop", headers=other).status_code == 404
    r = roaming.b.client.post("/driver/roaming/sessions", json={"operator_id": "ZZZZZZZZZ", "connector_id": GUN1},
                              headers={**other, "Idempotency-Key": "start-0002"})
    assert r.status_code == 404
    assert roaming.b.client.post("/driver/roaming/sessions", json={"operator_id": A_ID, "connector_id": GUN1},
                                 headers=other).status_code == 422  # no Idempotency-Key
    assert roaming.b.client.get(f"/driver/roaming/sessions/{A_ID}/{seq}").status_code == 401


def test_an_order_for_a_charge_b_never_started_is_disputed(roaming: Roaming) -> None:
    trade_no = started(roaming, 7, b_knows=False)  # B's platform client asks A directly: no charge of B's
    settle(roaming, trade_no, datetime.now(timezone.utc))
    step(roaming.outbox())
    (order,) = roaming.pushes("notification_charge_order_info")
    assert order["answer"] == "ConfirmResult 1"  # disputed: B cannot bill anyone for it


def test_a_start_whose_answer_was_lost_is_settled_by_the_reconciler(roaming: Roaming) -> None:
    online(roaming.a.ledger, roaming.world.pile_no)
    auth = roaming.driver()
    sessions = roaming.b.client.app.state.roaming
    real = sessions.http_for
    down = _down()
    sessions.http_for = lambda peer: down
    try:
        r = start(roaming, auth)
    finally:
        sessions.http_for = real
    assert (r.status_code, r.json()["state"]) == (202, "requested")  # A unreachable: we will ask again
    seq = r.json()["start_charge_seq"]
    charge_id = RoamingCharge.create_id(roaming.b.tenant_id, A_ID, seq)
    b_outbox = roaming.b_outbox()
    assert step(b_outbox)["roaming_asked"] == 0  # not yet due
    # A never heard it: the reconciler asks A, hears "no such charge", sends the start once more
    step(b_outbox, datetime.now(timezone.utc) + timedelta(minutes=2))
    assert roaming.b.ledger.roaming_charge(charge_id).state == "starting"
    assert roaming.a.scalar("SELECT count(*) FROM tcec_starts WHERE start_charge_seq = %s", seq) == 1


def _down() -> httpx.Client:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("A is down", request=request)
    return httpx.Client(transport=httpx.MockTransport(refuse))


def test_a_charge_that_reaches_the_drivers_hold_is_stopped(roaming: Roaming) -> None:
    online(roaming.a.ledger, roaming.world.pile_no)
    auth = roaming.driver(top_up_fen=6_00)  # 6.00 yuan held
    seq = start(roaming, auth).json()["start_charge_seq"]
    trade_no = charging_on_a(roaming, seq)
    outbox = roaming.outbox()
    step(outbox)  # the start result: charging
    roaming.a.ledger.record_reading(trade_no, at=datetime.now(timezone.utc), energy=60_000, voltage_dv=7500,
                                    current_da=1000, soc_pct=40)  # 6 kWh: more than 5.00 yuan at any tier
    charging_at = roaming.a.ledger.session(trade_no).started_at
    step(outbox, charging_at + timedelta(seconds=61))  # A's charge status at B's interval
    charge = roaming.b.ledger.find_roaming(roaming.b.tenant_id, A_ID, seq)
    assert (charge.state, roaming.a.ledger.session(trade_no).state) == ("stopping", "charging")
    assert step(roaming.b_outbox())["roaming_asked"] == 1  # B's reconciler sends the stop at once
    assert roaming.a.ledger.session(trade_no).state == "stopping"
