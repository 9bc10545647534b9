"""The driver session API end to end over TCP (simulated pile, gateway, relay, NATS, projections, HTTP):
login, top-up, QR, start, charging streamed, stop, record, a bill equal to an independent reference pricer."""

from __future__ import annotations

import asyncio
import json
import threading
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from fastapi.testclient import TestClient

from adapters.api.auth import TENANT_ADMIN
from adapters.postgres.env import eventsourcing_env
from adapters.cli.relay import running_relay
from domain.ledger import Ledger
from domain.tariff import TIERS
from pile_link.gateway import Gateway
from pile_link.simulator import Fleet, PileConfig, PileSpec
from projections.runner import Projections
from tests.factories import PRICES
from tests.operator_tokens import operator_headers
from tests.payment_fakes import PayWorld
from tests.integration.driver_app import PILE, login, start, top_up, wallet
from tests.integration.driver_app import auth_settings, client, payment_keys, world  # noqa: F401  (fixtures)


def reference_bill(tier_energy: list[int]) -> dict[str, int]:
    """Written here, independently of domain.pricing: kWh × yuan/kWh in Decimal, summed, rounded half up once."""
    def fee(kind: str) -> int:
        yuan = sum(Decimal(e) / 10000 * Decimal(PRICES[t][kind]) / 100000 for e, t in zip(tier_energy, TIERS))
        return int(yuan.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)
    electricity, service = fee("electricity"), fee("service")
    return {"electricity_fen": electricity, "service_fen": service, "total_fen": electricity + service}


# ---- end to end -----------------------------------------------------------------------------------------
FAST = PileConfig(heartbeat_interval=0.5, record_retry=0.5, reconnect_delay=0.1)


def read_stream(client: TestClient, auth: dict[str, str], trade_no: str, out: list[tuple[str, Any]]) -> None:
    """Read the SSE stream to its end (it ends when the session does)."""
    r = client.get(f"/driver/sessions/{trade_no}/stream", headers=auth)
    assert r.headers["content-type"].startswith("text/event-stream")
    for block in r.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))


def run_end_to_end(ledger: Ledger, database_url: str, nats_url: str, client: TestClient, world: PayWorld,
                   top_up_fen: int, speed: float, stop_after_readings: int | None) -> dict[str, Any]:
    """login → top-up → QR → start → charging (streamed) → [stop] → record → bill, over real TCP."""
    auth = login(client, world)
    top_up(client, world, auth, top_up_fen)
    stream: list[tuple[str, Any]] = []

    async def scenario(gateway: Gateway) -> dict[str, Any]:
        call = asyncio.to_thread
        async with Fleet("127.0.0.1", gateway.port, [PileSpec(PILE, guns=2, plugged=True)], seed=11, speed=speed,
                         config=FAST) as fleet:
            await fleet.events.wait_for("model_received", pile=PILE, timeout=20)
            for _ in range(200):  # the pile's login and gun status reach the ledger behind (write-behind)
                gun = (await call(client.get, "/driver/guns", params={"qr": f"{PILE}01"}, headers=auth)).json()
                if gun["gun"]["can_start"]:
                    break
                await asyncio.sleep(0.05)
            assert gun["gun"]["can_start"], gun
            r = await call(start, client, auth, "e2e-start-00001")
            assert r.status_code == 202, r.text
            trade_no, hold = r.json()["trade_no"], r.json()["hold_fen"]
            assert hold == min(top_up_fen, 200_00)
            sent = await fleet.events.wait_for("remote_start", pile=PILE, trade_no=trade_no, timeout=10)
            assert sent["balance_fen"] == hold  # the pile was told the hold as its balance (0x34)
            reader = threading.Thread(target=read_stream, args=(client, auth, trade_no, stream))
            reader.start()
            await fleet.events.wait_for("charging_started", pile=PILE, trade_no=trade_no, timeout=10)
            if stop_after_readings is not None:
                for _ in range(400):
                    live = (await call(client.get, f"/driver/sessions/{trade_no}", headers=auth)).json()
                    if live["state"] == "charging" and ledger.session(trade_no).readings >= stop_after_readings:
                        break
                    await asyncio.sleep(0.05)
                assert live["energy"] > 0 and live["power_w"] and live["soc_pct"] is not None, live
                r = await call(client.post, f"/driver/sessions/{trade_no}/stop", headers=auth)
                assert r.status_code == 202, r.text
            await fleet.events.wait_for("record_confirmed", pile=PILE, trade_no=trade_no, timeout=60)
            await call(reader.join, 30)
            assert not reader.is_alive(), "the stream did not end with the session"
            return {"trade_no": trade_no, "hold": hold, "auth": auth}

    with running_relay(ledger, database_url, nats_url):
        async def main() -> dict[str, Any]:
            gateway = Gateway(ledger, database_url=database_url, nats_url=nats_url, sweep_interval=3600)
            await gateway.start()
            try:
                return await asyncio.wait_for(scenario(gateway), 120)
            finally:
                await gateway.stop()
        out = asyncio.run(main())
    out["stream"] = stream
    return out


def check_books(client: TestClient, ledger: Ledger, database_url: str, world: PayWorld, run: dict[str, Any],
                top_up_fen: int) -> dict[str, Any]:
    """The bill equals the reference pricer; the wallet is top-up − bill; the operator's views agree."""
    auth, trade_no = run["auth"], run["trade_no"]
    final = client.get(f"/driver/sessions/{trade_no}", headers=auth).json()
    assert final["state"] == "finished" and final["final"], final
    record = ledger.session(trade_no).record
    expected = reference_bill(record["tier_energy"])
    bill = final["bill"]
    assert {k: bill[k] for k in expected} == expected
    assert bill["energy"] == sum(record["tier_energy"]) and final["amount_fen"] == expected["total_fen"]
    assert [t["energy"] for t in bill["tiers"]] == record["tier_energy"]
    w = wallet(client, auth)
    assert (w["available_fen"], w["held_fen"]) == (top_up_fen - expected["total_fen"], 0)

    events = run["stream"]
    assert events[-1] == ("end", {"trade_no": trade_no, "state": "finished"})
    statuses = [data for kind, data in events if kind == "status"]
    assert statuses[-1]["bill"] == bill and statuses[0]["state"] in ("requested", "starting", "charging")
    energies = [s["energy"] for s in statuses if not s["final"]]
    assert energies == sorted(energies) and any(e > 0 for e in energies), energies

    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.catch_up()
    history = client.get("/driver/sessions", headers=auth).json()["sessions"]
    assert [(h["trade_no"], h["total_fen"], h["state"]) for h in history] == [
        (trade_no, expected["total_fen"], "finished")]
    operator = operator_headers(client.app, TENANT_ADMIN, world.tenant_id)
    order = client.get(f"/operator/v1/orders/{trade_no}", headers=operator).json()
    assert {k: order[k] for k in expected} == expected and order["energy"] == bill["energy"]
    totals = client.get("/operator/v1/revenue", headers=operator).json()["totals"]
    assert (totals["electricity_fen"], totals["service_fen"], totals["sessions"], totals["energy"]) == (
        expected["electricity_fen"], expected["service_fen"], 1, bill["energy"])
    return final


def test_end_to_end_login_top_up_start_charge_stop_bill(client: TestClient, world: PayWorld, ledger: Ledger,
                                                        database_url: str, nats_url: str) -> None:
    run = run_end_to_end(ledger, database_url, nats_url, client, world, 60_00, speed=120, stop_after_readings=4)
    final = check_books(client, ledger, database_url, world, run, 60_00)
    assert final["reason"] == "stopped by driver" and 0 < final["amount_fen"] < run["hold"]


def test_end_to_end_the_session_stops_itself_before_the_balance_runs_out(
        client: TestClient, world: PayWorld, ledger: Ledger, database_url: str, nats_url: str) -> None:
    run = run_end_to_end(ledger, database_url, nats_url, client, world, 8_00, speed=120, stop_after_readings=None)
    final = check_books(client, ledger, database_url, world, run, 8_00)
    assert 0 < final["amount_fen"] <= run["hold"] == 8_00
    assert final["reason"] != "stopped by driver"
