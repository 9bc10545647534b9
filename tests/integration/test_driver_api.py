"""The driver session API on the real app: who may see what, idempotent and race-safe starts, and the
whole flow end to end over TCP (simulated pile, gateway, relay, NATS, projections, HTTP)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from adapters.api.auth import DRIVER, TENANT_ADMIN, AuthSettings, Principal
from adapters.api.driver.sessions import InvalidQrCode, parse_qr
from adapters.api.driver.settings import DriverApiSettings
from domain.start_rules import StartRules
from adapters.api.app import create_app
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from adapters.cli.relay import running_relay
from domain.ledger import Ledger
from domain.tariff import TIERS
from pile_link.gateway import Gateway
from pile_link.simulator import Fleet, PileConfig, PileSpec
from projections.runner import Projections
from tests.factories import PRICES, SLOTS
from tests.operator_tokens import operator_headers
from tests.payment_fakes import PayWorld

PILE, OTHER_PILE = "32010600019236", "32010600019237"
KEYS = SecretBox.generate_setting("k1")


@pytest.fixture
def payment_keys() -> str:
    return KEYS  # the channels of `world` (tests/conftest.py) open under the API's keys


@pytest.fixture
def world(world: PayWorld, ledger: Ledger) -> PayWorld:
    """The conftest's world, with a station of two piles on a tariff."""
    w = world
    station = ledger.create_station(w.tenant_id, "Riverside", "1 River Road", 31.23, 121.47, "admin")
    for pile_no in (PILE, OTHER_PILE):
        ledger.register_pile(station, pile_no, "DC", 2, "admin")
    tariff = ledger.create_tariff(w.tenant_id, "standard", PRICES, SLOTS, "admin")
    ledger.assign_tariff(tariff, "admin", station_id=station)
    return w


def connect(ledger: Ledger, pile_no: str, status: str = "idle") -> None:
    """What the pile link writes when a pile logs in and reports its guns."""
    now = datetime.now(UTC)
    ledger.pile_connected(pile_no, now, "test-gateway", 0x16, "v1")
    for gun_no in (1, 2):
        ledger.report_gun(pile_no, gun_no, status, True, {}, now)


def settings_for(world: PayWorld, **kw: Any) -> DriverApiSettings:
    return DriverApiSettings(KEYS, "https://charge.example.com", start_rules=StartRules(5_00, 200_00),
                             stream_poll=0.05, gateways={"wechat": world.wechat.url, "alipay": world.alipay.gateway},
                             wechat_api=world.wechat.url, **kw)


def make_app(ledger: Ledger, database_url: str, world: PayWorld, auth: AuthSettings, **kw: Any) -> FastAPI:
    return create_app(ledger, database_url, auth, pool_size=3, driver=settings_for(world, **kw))


@pytest.fixture
def auth_settings() -> AuthSettings:
    return AuthSettings.generate()


@pytest.fixture
def client(world: PayWorld, ledger: Ledger, database_url: str, auth_settings: AuthSettings) -> Iterator[TestClient]:
    with TestClient(make_app(ledger, database_url, world, auth_settings)) as c:
        yield c


def login(client: TestClient, world: PayWorld, openid: str | None = None) -> dict[str, str]:
    code, _ = world.wechat.login_code(openid)
    r = client.post(f"/driver/login/wechat/{world.tenant_id}/wx-main", json={"code": code})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def top_up(client: TestClient, world: PayWorld, auth: dict[str, str], fen: int) -> None:
    """Top up through the mini-program flow: prepay, then WeChat's signed notification to our callback."""
    r = client.post("/driver/wallet/top-ups", json={"amount_fen": fen}, headers=auth)
    assert r.status_code == 201, r.text
    headers, body = world.wechat.payment_notification(r.json()["out_trade_no"])
    r = client.post(f"/pay/wechat/notify/{world.tenant_id}/wx-main", content=body,
                    headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 204, r.text


def start(client: TestClient, auth: dict[str, str], key: str, pile_no: str = PILE, gun_no: int = 1) -> Any:
    return client.post("/driver/sessions", json={"pile_no": pile_no, "gun_no": gun_no},
                       headers={**auth, "Idempotency-Key": key})


def wallet(client: TestClient, auth: dict[str, str]) -> dict[str, int]:
    return client.get("/driver/wallet", headers=auth).json()


def reference_bill(tier_energy: list[int]) -> dict[str, int]:
    """Written here, independently of domain.pricing: kWh × yuan/kWh in Decimal, summed, rounded half up once."""
    def fee(kind: str) -> int:
        yuan = sum(Decimal(e) / 10000 * Decimal(PRICES[t][kind]) / 100000 for e, t in zip(tier_energy, TIERS))
        return int(yuan.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP) * 100)
    electricity, service = fee("electricity"), fee("service")
    return {"electricity_fen": electricity, "service_fen": service, "total_fen": electricity + service}


# ---- QR lookup --------------------------------------------------------------------------------------------
def test_qr_formats() -> None:
    assert parse_qr(f"https://charge.example.com/c/{PILE}02") == (PILE, 2)
    assert parse_qr(f"{PILE}01") == (PILE, 1)
    for bad in (f"{PILE}00", f"{PILE}1", "https://evil.example.com/x", f"https://h/c/{PILE}01?x=1&y=2 "):
        with pytest.raises(InvalidQrCode):
            parse_qr(bad)


def test_qr_lookup_shows_station_gun_status_and_the_tariff_now_and_next(client: TestClient, world: PayWorld,
                                                                         ledger: Ledger) -> None:
    auth = login(client, world)
    before = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    r = client.get("/driver/guns", params={"qr": f"https://charge.example.com/c/{PILE}02"}, headers=auth)
    assert r.status_code == 200, r.text
    gun = r.json()
    assert (gun["pile_no"], gun["gun_no"], gun["station"]["name"]) == (PILE, 2, "Riverside")
    assert gun["gun"]["status"] == "offline" and gun["gun"]["can_start"] is False  # the pile never connected
    tariff = gun["tariff"]
    assert tariff["timezone"] == "Asia/Shanghai" and tariff["version"] == 1
    after = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    tier = tariff["now"]["tier"]  # the server read its clock between before and after, maybe across a slot edge
    assert tier in {TIERS[SLOTS[t.hour * 2 + t.minute // 30]] for t in (before, after)}
    assert tariff["now"]["electricity_price"] == PRICES[tier]["electricity"]
    periods = [tariff["now"], *tariff["next"]]
    assert all(a["until"] == b["from"] and a["tier"] != b["tier"] for a, b in zip(periods, periods[1:]))
    assert datetime.fromisoformat(periods[-1]["until"]) >= before + timedelta(hours=24)
    for qr, status, code in ((f"{PILE}07", 404, "not_found"), ("9" * 16, 404, "not_found"),
                             ("https://charge.example.com/c/123", 422, "invalid_qr_code")):
        r = client.get("/driver/guns", params={"qr": qr}, headers=auth)
        assert (r.status_code, r.json()["code"]) == (status, code), (qr, r.text)
    other_tenant = ledger.create_tenant("Elsewhere", "admin")
    other_station = ledger.create_station(other_tenant, "Far", "2 Far Road", 30.0, 120.0, "admin")
    ledger.register_pile(other_station, "11111111111111", "AC", 1, "admin")
    r = client.get("/driver/guns", params={"qr": "1111111111111101"}, headers=auth)
    assert r.status_code == 404  # another operator's gun does not exist for this driver


def test_a_start_on_a_gun_that_cannot_take_it_up_is_refused_with_the_reason_and_holds_nothing(
        client: TestClient, world: PayWorld, ledger: Ledger) -> None:
    auth = login(client, world)
    top_up(client, world, auth, 50_00)
    qr = {"qr": f"{PILE}01"}
    now = datetime.now(UTC)
    steps = [("the pile is offline", lambda: None),
             ("gun 1 is charging", lambda: connect(ledger, PILE, "charging")),
             ("gun 1 reports a fault", lambda: ledger.report_gun(PILE, 1, "idle", True, {"0": "急停按钮动作故障"}, now)),
             ("the pile is disabled", lambda: (ledger.report_gun(PILE, 1, "idle", True, {}, now),
                                               ledger.set_pile_enabled(PILE, False, "ops", "maintenance")))]
    for n, (reason, make_it_so) in enumerate(steps):
        make_it_so()
        gun = client.get("/driver/guns", params=qr, headers=auth).json()["gun"]
        assert (gun["can_start"], gun["why_not"]) == (False, reason), gun
        r = start(client, auth, f"not-ready-{n:04d}")
        assert (r.status_code, r.json()["code"], r.json()["details"]["reason"]) == (409, "pile_unavailable", reason)
        assert wallet(client, auth)["held_fen"] == 0
    ledger.set_pile_enabled(PILE, True, "ops", "back")
    gun = client.get("/driver/guns", params=qr, headers=auth).json()["gun"]
    assert (gun["status"], gun["can_start"], gun["why_not"]) == ("idle", True, None)
    assert start(client, auth, "ready-0001").status_code == 202


# ---- who may see what -----------------------------------------------------------------------------------
def test_a_driver_cannot_see_or_stop_another_drivers_session_wallet_or_stream(
        client: TestClient, world: PayWorld, ledger: Ledger, auth_settings: AuthSettings) -> None:
    alice, bob = login(client, world), login(client, world)
    top_up(client, world, alice, 50_00)
    connect(ledger, PILE)
    r = start(client, alice, "alice-start-0001")
    assert r.status_code == 202, r.text
    trade_no = r.json()["trade_no"]
    assert r.json()["hold_fen"] == 50_00
    assert client.get(f"/driver/sessions/{trade_no}", headers=alice).json()["state"] == "requested"
    for method, path in (("GET", f"/driver/sessions/{trade_no}"), ("POST", f"/driver/sessions/{trade_no}/stop"),
                         ("GET", f"/driver/sessions/{trade_no}/stream")):
        r = client.request(method, path, headers=bob)
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), (path, r.text)
        r = client.request(method, path)
        assert (r.status_code, r.json()["code"]) == (401, "missing_token")
    assert ledger.session(trade_no).state == "requested"  # bob's stop changed nothing
    assert (wallet(client, bob)["available_fen"], wallet(client, bob)["held_fen"]) == (0, 0)
    assert wallet(client, alice)["held_fen"] == 50_00
    assert client.get("/driver/wallet/postings", headers=bob).json()["postings"] == []

    expired, _ = world.identity.tokens.signer.issue(Principal("wechat:wx-main:o1", DRIVER, world.tenant_id),
                                                    now=datetime.now(UTC) - timedelta(days=1))
    old_alice = client.app.state.signer.issue(  # type: ignore[attr-defined]
        Principal(_driver_of(client, alice), DRIVER, world.tenant_id), now=datetime.now(UTC) - timedelta(days=1))[0]
    for token, code in ((old_alice, "token_expired"), (expired, "invalid_token"), ("not.a.token", "invalid_token")):
        r = client.get(f"/driver/sessions/{trade_no}", headers={"Authorization": f"Bearer {token}"})
        assert (r.status_code, r.json()["code"]) == (401, code), r.text
    operator = client.app.state.signer.issue(Principal("ops", TENANT_ADMIN, world.tenant_id))[0]  # type: ignore[attr-defined]
    r = client.get(f"/driver/sessions/{trade_no}", headers={"Authorization": f"Bearer {operator}"})
    assert (r.status_code, r.json()["code"]) == (403, "wrong_token_role")
    r = client.post(f"/driver/sessions/{trade_no}/stop", headers=alice)
    assert (r.status_code, r.json()["state"]) == (202, "stopping")


def _driver_of(client: TestClient, auth: dict[str, str]) -> str:
    token = auth["Authorization"].split(" ", 1)[1]
    return client.app.state.driver_identity.tokens.verify(token).driver_id  # type: ignore[attr-defined]


# ---- starts ---------------------------------------------------------------------------------------------
def test_a_start_needs_the_minimum_and_a_retry_with_the_same_key_starts_once(client: TestClient,
                                                                           world: PayWorld, ledger: Ledger) -> None:
    auth = login(client, world)
    top_up(client, world, auth, 4_99)
    r = start(client, auth, "too-little-0001")
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_funds"), r.text
    assert r.json()["details"]["min_start_fen"] == 5_00
    assert wallet(client, auth)["held_fen"] == 0
    top_up(client, world, auth, 1)
    connect(ledger, PILE)
    r = start(client, auth, "too-little-0001")  # the refused try dropped its claim: judged afresh
    assert r.status_code == 202, r.text
    first = r.json()
    again = start(client, auth, "too-little-0001").json()
    assert (again["trade_no"], again["hold_fen"], again["replayed"]) == (first["trade_no"], 5_00, True)
    assert (wallet(client, auth)["available_fen"], wallet(client, auth)["held_fen"]) == (0, 5_00)
    r = start(client, auth, "too-little-0001", gun_no=2)
    assert (r.status_code, r.json()["code"]) == (409, "idempotency_conflict")
    r = client.post("/driver/sessions", json={"pile_no": PILE, "gun_no": 1}, headers=auth)
    assert (r.status_code, r.json()["code"]) == (422, "idempotency_key_required")
    for body in ({"pile_no": PILE}, {"pile_no": "123", "gun_no": 1}, {"pile_no": PILE, "gun_no": "1"},
                 {"pile_no": PILE, "gun_no": 0}):
        r = client.post("/driver/sessions", json=body, headers={**auth, "Idempotency-Key": "bad-body-0001"})
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), body
    history = client.get("/driver/sessions", headers=auth).json()
    assert history == {"sessions": [], "next": None}  # the orders view has not caught up (not run here)


def test_two_concurrent_starts_on_one_wallet_cannot_together_hold_more_than_it_has(
        world: PayWorld, ledger: Ledger, database_url: str, auth_settings: AuthSettings) -> None:
    """Four starts at once, through two API processes (each its own ledger and caches), on one wallet."""
    second_ledger = Ledger(eventsourcing_env(database_url))
    apps = [make_app(ledger, database_url, world, auth_settings),
            make_app(second_ledger, database_url, world, auth_settings)]
    try:
        with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
            auth = login(one, world)
            top_up(one, world, auth, 30_00)
            for pile_no in (PILE, OTHER_PILE):
                connect(ledger, pile_no)
            wallet(two, auth)  # both processes have the wallet cached at 30.00 available
            for round_no in range(3):
                barrier = threading.Barrier(4)
                answers: list[Any] = []

                def go(c: TestClient, pile_no: str, gun_no: int, key: str) -> None:
                    barrier.wait()
                    answers.append(start(c, auth, key, pile_no, gun_no))

                guns = [(one, PILE, 1), (two, PILE, 2), (one, OTHER_PILE, 1), (two, OTHER_PILE, 2)]
                threads = [threading.Thread(target=go, args=(c, p, g, f"race-{round_no}-{p}-{g}"))
                           for c, p, g in guns]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                won = [a.json() for a in answers if a.status_code == 202]
                lost = [a.json() for a in answers if a.status_code != 202]
                w = wallet(one, auth)
                assert len(answers) == 4 and w["available_fen"] + w["held_fen"] == 30_00
                assert sum(a["hold_fen"] for a in won) == w["held_fen"] <= 30_00
                assert all(a["code"] == "insufficient_funds" for a in lost), lost
                if round_no == 0:
                    assert len(won) == 1 and won[0]["hold_fen"] == 30_00
                for a in won:  # end each round with the money back, so the next round races again
                    ledger.acknowledge_start(a["trade_no"], at=datetime.now(UTC), ok=False,
                                           reason="test")
                assert wallet(one, auth)["available_fen"] == 30_00
    finally:
        second_ledger.close()


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
