"""The driver session API on the real app: QR look-ups, who may see what, idempotent and race-safe starts.
The whole flow end to end over TCP is in test_driver_flow.py."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import DRIVER, TENANT_ADMIN, AuthSettings, Principal
from adapters.api.driver.sessions import InvalidQrCode, parse_qr
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from domain.tariff import TIERS
from tests.factories import PRICES, SLOTS
from tests.payment_fakes import PayWorld
from tests.integration.driver_app import OTHER_PILE, PILE, connect, login, make_app, start, top_up, wallet
from tests.integration.driver_app import auth_settings, client, payment_keys, world  # noqa: F401  (fixtures)


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
