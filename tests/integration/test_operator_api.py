"""The operator API against real Postgres: tokens, tenant isolation endpoint by endpoint, agents'
scope, cursor pagination while orders arrive, CSV, remote commands, OpenAPI examples."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import (AGENT, DRIVER, OPERATOR_ROLES, PLATFORM_ADMIN, TENANT_ADMIN, AuthSettings, Principal,
                           TokenSigner)
from adapters.api.app import create_app
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from projections.runner import Projections
from tests.factories import PRICES, SLOTS
from tests.operator_tokens import operator_headers
from tests.e2e.test_projections import DAY, Tenant, charge, scripted_day


@dataclass
class Api:
    client: TestClient
    signer: TokenSigner
    projections: Projections
    ledger: Ledger
    database_url: str

    def token(self, role: str, tenant: Tenant | None = None, stations: list[Any] | None = None,
              subject: str | None = None) -> dict[str, str]:
        """A signed-in operator's headers (operator roles: the user is written first, tests/operator_tokens.py)."""
        if role not in OPERATOR_ROLES:
            principal = Principal(subject or "someone", role, tenant.tenant_id if tenant else None)
            return {"Authorization": f"Bearer {self.signer.issue(principal)[0]}"}
        return operator_headers(self.client.app, role, tenant.tenant_id if tenant else None, stations, subject)

    def sync(self) -> None:
        self.projections.catch_up()


@pytest.fixture
def api(ledger: Ledger, database_url: str) -> Iterator[Api]:
    settings = AuthSettings.generate()
    app = create_app(ledger, database_url, settings, api_docs=True)
    projections = Projections(ledger.applications, eventsourcing_env(database_url))
    with TestClient(app) as client:
        yield Api(client, TokenSigner(settings), projections, ledger, database_url)
    projections.close()


@pytest.fixture
def day(api: Api) -> tuple[Tenant, Tenant]:
    tenants = scripted_day(api.ledger)
    api.sync()
    return tenants


def event_count(ledger: Ledger) -> int:
    return sum(app.recorder.max_notification_id() or 0 for app in ledger.applications)


# ---- credentials and tokens -----------------------------------------------------------------------------
def test_credentials_are_hashed_and_exchanged_for_a_token(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, _ = day
    admin = api.token(PLATFORM_ADMIN)
    r = api.client.post("/operator/v1/users", headers=admin, json={
        "username": "alpha-admin", "password": "a long passphrase", "role": "tenant_admin",
        "tenant_id": str(a.tenant_id)})
    assert r.status_code == 201, r.text
    with psycopg.connect(api.database_url) as conn:
        stored = conn.execute("SELECT password_hash FROM operator_users WHERE username = 'alpha-admin'").fetchone()[0]
    assert stored.startswith("$argon2id$") and "a long passphrase" not in stored
    assert api.client.post("/operator/v1/auth/token", json={"username": "alpha-admin", "password": "wrong one!"}
                           ).json()["code"] == "bad_credentials"
    assert api.client.post("/operator/v1/auth/token", json={"username": "nobody", "password": "whatever!!"}
                           ).status_code == 401
    r = api.client.post("/operator/v1/auth/token", json={"username": "alpha-admin", "password": "a long passphrase"})
    assert r.status_code == 200 and r.json()["role"] == TENANT_ADMIN
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    stations = api.client.get("/operator/v1/stations", headers=headers).json()["items"]
    assert {s["station_id"] for s in stations} == {str(s) for s in a.stations}
    # the tenant admin creates an agent for one station; the agent signs in and sees just that
    r = api.client.post("/operator/v1/users", headers=headers, json={
        "username": "agent-1", "password": "another passphrase", "role": "agent", "stations": [str(a.stations[0])]})
    assert r.status_code == 201, r.text
    assert api.client.post("/operator/v1/users", headers=headers, json={
        "username": "agent-1", "password": "another passphrase", "role": "agent",
        "stations": [str(a.stations[0])]}).json()["code"] == "already_exists"
    token = api.client.post("/operator/v1/auth/token", json={"username": "agent-1", "password": "another passphrase"}
                            ).json()["access_token"]
    seen = api.client.get("/operator/v1/stations", headers={"Authorization": f"Bearer {token}"}).json()["items"]
    assert [s["station_id"] for s in seen] == [str(a.stations[0])]
    # a tenant admin cannot make a platform admin, nor an agent over another tenant's station
    assert api.client.post("/operator/v1/users", headers=headers, json={
        "username": "boss", "password": "a long passphrase", "role": "platform_admin"}).status_code == 403


def test_driver_expired_tampered_and_missing_tokens_are_refused(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, _ = day
    paths = ["/operator/v1/orders", "/operator/v1/stations", "/operator/v1/dashboard", "/operator/v1/alarms"]
    driver = api.token(DRIVER, a)
    for path in paths:
        r = api.client.get(path, headers=driver)
        assert (r.status_code, r.json()["code"]) == (403, "wrong_token_role"), path
    r = api.client.post(f"/operator/v1/piles/{a.piles[0]}/reboot", headers=driver)
    assert r.status_code == 403
    expired = api.signer.issue(Principal("x", TENANT_ADMIN, a.tenant_id), now=datetime.now(timezone.utc) - timedelta(days=1))[0]
    assert api.client.get(paths[0], headers={"Authorization": f"Bearer {expired}"}).json()["code"] == "token_expired"
    good = api.token(TENANT_ADMIN, a)["Authorization"]
    head, payload, signature = good.split(" ")[1].split(".")
    tampered = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    assert api.client.get(paths[0], headers={"Authorization": f"Bearer {tampered}"}).json()["code"] == "invalid_token"
    other_key = TokenSigner(AuthSettings.generate()).issue(Principal("x", TENANT_ADMIN, a.tenant_id))[0]
    assert api.client.get(paths[0], headers={"Authorization": f"Bearer {other_key}"}).status_code == 401
    r = api.client.get(paths[0])
    assert (r.status_code, r.json()["code"]) == (401, "missing_token")


# ---- tenant isolation, endpoint by endpoint -----------------------------------------------------------------
def b_ids(api: Api, b: Tenant) -> dict[str, str]:
    with psycopg.connect(api.database_url) as conn:
        trade = conn.execute("SELECT trade_no FROM orders WHERE tenant_id = %s AND state = 'finished' LIMIT 1",
                             (b.tenant_id,)).fetchone()[0]
        alarm = conn.execute("SELECT alarm_id FROM alarms WHERE tenant_id = %s LIMIT 1", (b.tenant_id,)).fetchone()[0]
    return {"station": str(b.stations[0]), "pile": b.piles[0], "tariff": str(b.tariff_id), "trade": trade,
            "alarm": alarm, "tenant": str(b.tenant_id)}


def test_a_tenant_reads_and_changes_nothing_of_another(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, b = day
    ids = b_ids(api, b)
    headers = api.token(TENANT_ADMIN, a)
    before = event_count(api.ledger)
    v = "/operator/v1"
    not_found = [
        ("get", f"{v}/stations/{ids['station']}", None),
        ("patch", f"{v}/stations/{ids['station']}", {"name": "mine now", "address": ""}),
        ("put", f"{v}/stations/{ids['station']}/tariff", {"tariff_id": str(a.tariff_id)}),
        ("put", f"{v}/stations/{a.stations[0]}/tariff", {"tariff_id": ids["tariff"]}),
        ("post", f"{v}/stations/{ids['station']}/piles", {"pile_no": "99999999999999", "kind": "DC", "gun_count": 1}),
        ("get", f"{v}/piles/{ids['pile']}", None),
        ("get", f"{v}/piles/{ids['pile']}/guns", None),
        ("post", f"{v}/piles/{ids['pile']}/enable", None),
        ("post", f"{v}/piles/{ids['pile']}/disable", {"reason": "x"}),
        ("put", f"{v}/piles/{ids['pile']}/tariff", {"tariff_id": str(a.tariff_id)}),
        ("put", f"{v}/piles/{a.piles[0]}/tariff", {"tariff_id": ids["tariff"]}),
        ("post", f"{v}/piles/{ids['pile']}/start", {"gun_no": 2}),
        ("post", f"{v}/piles/{ids['pile']}/reboot", None),
        ("post", f"{v}/piles/{ids['pile']}/push-tariff", None),
        ("get", f"{v}/tariffs/{ids['tariff']}", None),
        ("put", f"{v}/tariffs/{ids['tariff']}", {"prices": PRICES, "slots": SLOTS}),
        ("get", f"{v}/orders/{ids['trade']}", None),
        ("post", f"{v}/orders/{ids['trade']}/stop", {"reason": "x"}),
        ("post", f"{v}/orders/{ids['trade']}/force-close", {"reason": "x"}),
        ("post", f"{v}/alarms/{ids['alarm']}/acknowledge", {"note": "mine"}),
        ("post", f"{v}/refunds", {"driver_id": "4401060001-li", "refund_id": "rf-x", "amount_fen": 100,
                                  "provider": "wechat"}),
        ("post", f"{v}/users", {"username": "spy", "password": "a long passphrase", "role": "agent",
                                "stations": [ids["station"]]}),
    ]
    for method, path, body in not_found:
        r = api.client.request(method.upper(), path, headers=headers, json=body)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
        assert r.json()["code"] == "not_found"
    assert event_count(api.ledger) == before, "a refused call wrote an event"
    with psycopg.connect(api.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM alarm_acknowledgements").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM operator_users WHERE username = 'spy'").fetchone() == (0,)
    lists = ["stations", "piles", "tariffs", "orders", "orders.csv", "revenue", "alarms?state=all", "operations",
             "tenants", "dashboard"]
    for path in lists:
        r = api.client.get(f"{v}/{path}", headers=headers)
        assert r.status_code == 200, (path, r.text)
        for value in ids.values():
            assert value not in r.text, (path, value)
        assert str(a.tenant_id) in r.text or path in ("dashboard", "orders.csv", "piles"), path
    # the dashboard counts only A's piles; the platform admin sees both tenants
    mine = api.client.get(f"{v}/dashboard", headers=headers).json()
    everyone = api.client.get(f"{v}/dashboard", headers=api.token(PLATFORM_ADMIN)).json()
    assert mine["piles"]["total"] == 2 and everyone["piles"]["total"] == 4


def test_an_agent_sees_and_commands_only_its_stations(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, _ = day
    agent = api.token(AGENT, a, [a.stations[0]])
    v = "/operator/v1"
    orders = api.client.get(f"{v}/orders", headers=agent).json()["items"]
    assert orders and {o["station_id"] for o in orders} == {str(a.stations[0])}
    assert api.client.get(f"{v}/orders?station_id={a.stations[1]}", headers=agent).json()["items"] == []
    piles = api.client.get(f"{v}/piles", headers=agent).json()["items"]
    assert [p["pile_no"] for p in piles] == [a.piles[0]]
    revenue = api.client.get(f"{v}/revenue", headers=agent).json()["items"]
    assert revenue and {r["station_id"] for r in revenue} == {str(a.stations[0])}
    assert api.client.get(f"{v}/piles/{a.piles[1]}", headers=agent).status_code == 404
    assert api.client.post(f"{v}/piles/{a.piles[1]}/reboot", headers=agent).status_code == 404
    assert api.client.post(f"{v}/piles/{a.piles[0]}/reboot", headers=agent).status_code == 202
    alarms = api.client.get(f"{v}/alarms?state=all", headers=agent).json()["items"]
    assert all(x["station_id"] == str(a.stations[0]) for x in alarms)
    ops = api.client.get(f"{v}/operations", headers=agent).json()["items"]
    assert ops and all(o["station_id"] == str(a.stations[0]) for o in ops)
    r = api.client.post(f"{v}/tariffs", headers=agent, json={"name": "x", "prices": PRICES, "slots": SLOTS})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden_role")
    dash = api.client.get(f"{v}/dashboard", headers=agent).json()
    assert dash["stations"] == 1 and dash["piles"]["total"] == 1


# ---- orders: pagination, CSV, detail --------------------------------------------------------------------------
def test_pages_stay_correct_while_orders_arrive(api: Api) -> None:
    t = api.ledger.create_tenant("Paging", "platform")
    station = api.ledger.create_station(t, "S", "-", 31.0, 121.0, "admin")
    piles = [f"5501060000{i:04d}" for i in range(4)]
    for pile_no in piles:
        api.ledger.register_pile(station, pile_no, "DC", 2, "admin")
    tariff = api.ledger.create_tariff(t, "x", PRICES, SLOTS, "admin")
    api.ledger.assign_tariff(tariff, "admin", station_id=station)
    counter = iter(range(10_000))

    def open_orders(n: int) -> None:
        for _ in range(n):
            i = next(counter)
            api.ledger.request_start(pile_no=piles[i % 4], gun_no=1 + i // 4 % 2, wallet_id=None, hold_fen=0,
                                     at=DAY + timedelta(seconds=i), author="ops")

    open_orders(23)
    api.sync()
    headers = operator_headers(api.client.app, TENANT_ADMIN, t)
    with psycopg.connect(api.database_url) as conn:
        existing = [r[0] for r in conn.execute("SELECT trade_no FROM orders ORDER BY seq DESC").fetchall()]
    seen: list[str] = []
    cursor = None
    while True:
        r = api.client.get("/operator/v1/orders", headers=headers,
                           params={"limit": 5, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [o["trade_no"] for o in page["items"]]
        open_orders(3)  # new orders between every two pages
        api.sync()
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "an order appeared on two pages"
    assert seen == existing, "an order was skipped or pages are out of order"
    r = api.client.get("/operator/v1/orders", headers=headers, params={"cursor": "not-a-cursor"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_cursor")


def test_orders_filter_export_and_detail(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, _ = day
    headers = api.token(TENANT_ADMIN, a)
    v = "/operator/v1/orders"
    all_orders = api.client.get(v, headers=headers).json()["items"]
    assert len(all_orders) == 4
    assert {o["state"] for o in api.client.get(v, headers=headers, params={"state": "stopping"}).json()["items"]} == {"stopping"}
    by_pile = api.client.get(v, headers=headers, params={"pile_no": a.piles[1]}).json()["items"]
    assert by_pile and all(o["pile_no"] == a.piles[1] for o in by_pile)
    window = api.client.get(v, headers=headers, params={"from": (DAY + timedelta(minutes=30)).isoformat(),
                                                        "to": (DAY + timedelta(hours=6, minutes=30)).isoformat()})
    assert {o["ordered_at"][:13] for o in window.json()["items"]} == {"2026-11-22T01", "2026-11-22T06"}
    r = api.client.get(f"{v}.csv", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 4
    differs = next(o for o in all_orders if o["pile_difference"])
    row = next(x for x in rows if x["trade_no"] == differs["trade_no"])
    assert row["total_yuan"] == f"{differs['total_fen'] // 100}.{differs['total_fen'] % 100:02d}"
    detail = api.client.get(f"{v}/{differs['trade_no']}", headers=headers).json()
    assert [s["step"] for s in detail["timeline"]] == ["ordered", "requested", "started", "record_started", "stopped",
                                                       "settled"]
    assert detail["driver_id"] == "3201060001-wang"
    r = api.client.get(v, headers=headers, params={"state": "nonsense"})
    assert r.status_code == 422 and r.json()["code"] == "validation_error" and r.json()["details"][0]["field"]


# ---- registry, tariffs, commands, alarms, dashboard -----------------------------------------------------------------
def test_an_operator_runs_the_network_through_the_api(api: Api, day: tuple[Tenant, Tenant]) -> None:
    a, _ = day
    headers = api.token(TENANT_ADMIN, a, subject="alpha-ops")
    v = "/operator/v1"
    station = api.client.post(f"{v}/stations", headers=headers, json={
        "name": "New", "address": "3 Road", "latitude": 31.1, "longitude": 121.3}).json()["station_id"]
    assert api.client.patch(f"{v}/stations/{station}", headers=headers,
                            json={"name": "Newer", "address": "4 Road"}).json()["name"] == "Newer"
    r = api.client.post(f"{v}/stations/{station}/piles", headers=headers,
                        json={"pile_no": "32010600090001", "kind": "AC", "gun_count": 1})
    assert r.status_code == 201
    r = api.client.post(f"{v}/stations/{station}/piles", headers=headers,
                        json={"pile_no": "32010600090001", "kind": "AC", "gun_count": 1})
    assert (r.status_code, r.json()["code"]) == (409, "already_exists")
    r = api.client.post(f"{v}/stations/{station}/piles", headers=headers, json={"pile_no": "12", "kind": "AC",
                                                                               "gun_count": 1})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "body.pile_no"
    tariff = api.client.post(f"{v}/tariffs", headers=headers, json={"name": "night", **{"prices": PRICES,
                                                                                          "slots": SLOTS}}).json()
    assert api.client.put(f"{v}/tariffs/{tariff['tariff_id']}", headers=headers,
                          json={"prices": PRICES, "slots": [3] * 48}).json()["version"] == 2
    bad = api.client.put(f"{v}/tariffs/{tariff['tariff_id']}", headers=headers, json={"prices": PRICES, "slots": [9] * 48})
    assert bad.status_code in (409, 422)
    assert api.client.put(f"{v}/stations/{station}/tariff", headers=headers,
                          json={"tariff_id": tariff["tariff_id"]}).status_code == 200
    assert api.client.post(f"{v}/piles/32010600090001/disable", headers=headers, json={"reason": "x"}).status_code == 200
    r = api.client.post(f"{v}/piles/32010600090001/start", headers=headers, json={"gun_no": 1})
    assert (r.status_code, r.json()["code"]) == (409, "pile_unavailable")
    assert api.client.post(f"{v}/piles/32010600090001/enable", headers=headers).status_code == 200
    trade = api.client.post(f"{v}/piles/32010600090001/start", headers=headers, json={"gun_no": 1}).json()["trade_no"]
    assert api.client.post(f"{v}/orders/{trade}/stop", headers=headers, json={"reason": "test"}).json()["state"] == "stopping"
    closed = api.client.post(f"{v}/orders/{trade}/force-close", headers=headers, json={"reason": "stuck"})
    assert closed.status_code == 200 and closed.json()["state"] in ("failed", "abandoned")
    again = api.client.post(f"{v}/orders/{trade}/force-close", headers=headers, json={"reason": "stuck"})
    assert (again.status_code, again.json()["code"]) == (409, "invalid_state_transition")
    assert api.client.post(f"{v}/piles/32010600090001/push-tariff", headers=headers).status_code == 202
    assert api.client.post(f"{v}/piles/32010600090001/reboot", headers=headers).status_code == 202
    # no payment channels on this API: a refund has nowhere to go, and nothing moves (tests/integration/test_payments_hardening.py)
    r = api.client.post(f"{v}/refunds", headers=headers, json={"driver_id": "3201060001-wang", "refund_id": "rf-1",
                                                              "amount_fen": 10_00, "provider": "wechat"})
    assert (r.status_code, r.json()["code"]) == (409, "payments_not_configured"), r.text
    assert api.ledger.wallet(a.wallets["wang"]).refund_pending == 0
    api.sync()
    ops = api.client.get(f"{v}/operations", headers=headers).json()["items"]
    mine = {(o["aggregate_type"], o["event"]) for o in ops if o["author"] == "alpha-ops"}
    assert {("Station", "Created"), ("Station", "Changed"), ("Pile", "Registered"), ("Tariff", "Created"),
            ("Tariff", "Revised"), ("Station", "TariffAssigned"), ("Pile", "Disabled"), ("Pile", "Enabled"),
            ("ChargingSession", "Opened"), ("ChargingSession", "StopRequested"),
            ("Pile", "CommandRequested")} <= mine
    piles = api.client.get(f"{v}/piles", headers=headers, params={"station_id": station}).json()["items"]
    assert piles[0]["last_command"]["command"] == "reboot" and len(piles[0]["guns"]) == 1
    assert {s["name"] for s in api.client.get(f"{v}/stations", headers=headers).json()["items"]} >= {"Newer"}
    assert {t["version"] for t in api.client.get(f"{v}/tariffs", headers=headers).json()["items"]} == {2}
    # alarms: list the open ones, acknowledge one; the acknowledgement survives a rebuild
    alarms = api.client.get(f"{v}/alarms", headers=headers).json()["items"]
    lost = next(x for x in alarms if x["kind"] == "lost_heartbeat")
    ack = api.client.post(f"{v}/alarms/{lost['alarm_id']}/acknowledge", headers=headers, json={"note": "on it"})
    assert ack.json()["acknowledged_by"] == "alpha-ops"
    assert lost["alarm_id"] not in [x["alarm_id"] for x in
                                    api.client.get(f"{v}/alarms?state=unacknowledged", headers=headers).json()["items"]]
    api.projections.rebuild()
    again = next(x for x in api.client.get(f"{v}/alarms", headers=headers).json()["items"]
                 if x["alarm_id"] == lost["alarm_id"])
    assert again["acknowledged_by"] == "alpha-ops" and again["note"] == "on it"


def test_the_dashboard_counts_each_stations_own_today(api: Api) -> None:
    t = api.ledger.create_tenant("Zones", "platform")
    shanghai = api.ledger.create_station(t, "SH", "-", 31.0, 121.0, "admin")
    urumqi = api.ledger.create_station(t, "URC", "-", 43.8, 87.6, "admin", "Asia/Urumqi")
    tariff = api.ledger.create_tariff(t, "x", PRICES, SLOTS, "admin")
    for i, station in enumerate((shanghai, urumqi)):
        api.ledger.register_pile(station, f"6601060000000{i}", "DC", 1, "admin")
        api.ledger.assign_tariff(tariff, "admin", station_id=station)
        api.ledger.pile_connected(f"6601060000000{i}", DAY, "gw", 0x16, "V1")
    # 17:30 UTC = 01:30 next day in Shanghai, 23:30 the same day in Urumqi (UTC+6)
    late = datetime(2026, 11, 22, 17, 30, tzinfo=timezone.utc)
    for i in range(2):
        trade = charge(api.ledger, f"6601060000000{i}", 1, None, late - timedelta(minutes=10), minutes=2)
        api.ledger.force_close(trade, at=late, reason="test", author="ops")
    api.sync()
    headers = operator_headers(api.client.app, TENANT_ADMIN, t)
    at_next_morning = api.client.get("/operator/v1/dashboard", headers=headers,
                                     params={"at": "2026-11-22T17:45:00Z"}).json()
    # Shanghai's today is 11-23 (its session counts); Urumqi's today is still 11-22 (its session counts too)
    assert at_next_morning["today"]["sessions"] == 2
    at_next_evening = api.client.get("/operator/v1/dashboard", headers=headers,
                                     params={"at": "2026-11-23T17:00:00Z"}).json()
    # 01:00 on 11-24 in Shanghai (yesterday's session no longer today); 23:00 on 11-23 in Urumqi (neither)
    assert at_next_evening["today"]["sessions"] == 0 and at_next_evening["month"]["sessions"] == 2
    assert at_next_morning["piles"] == {"total": 2, "online": 2, "offline": 0, "faulted": 0}
    assert at_next_morning["today"]["revenue_fen"] > 0 and 0 < at_next_morning["today"]["utilisation"] <= 1


def test_every_endpoint_documents_an_example(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) >= 30
    for path, method, op in operations:
        success = [r for code, r in op["responses"].items() if code.startswith("2")]
        assert any("example" in c for r in success for c in r.get("content", {}).values()), (method, path)
        if "requestBody" in op:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
            assert spec["components"]["schemas"][ref].get("examples"), (method, path)
