"""The 经营大屏 without a browser: its API endpoints and its page read the same figures; who sees whose
(a tenant its own, an agent its stations, a platform admin the tenant it picks, anybody else 404); the
power view; the live stream sends only what changed, is capped, and ends when the browser goes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN
from adapters.api.guards import ServerSettings
from adapters.postgres.env import eventsourcing_env
from adapters.web.mount import CSP
from adapters.web.session import WebSettings
from domain.ledger import Ledger
from domain.pricing import price
from projections.power import bucket_of
from projections.runner import Projections
from tests.console import Scripts, TwoTenants, console_app, operator_user, sign_in
from tests.e2e.test_projections import Tenant, build_tenant, charge
from tests.factories import record
from tests.http_server import serving
from tests.operator_tokens import operator_headers

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=8)
AT = (T0 + timedelta(minutes=7, seconds=1)).isoformat()  # just after the settlement below


@dataclass
class World(TwoTenants):
    bill: Any = None


def day(ledger: Ledger, a: Tenant) -> Any:
    """A's first pile online and one finished session on it (5 readings of 0.1 kWh), its second pile offline."""
    ledger.pile_connected(a.piles[0], T0, "gw-1", 0x16, "V1")
    ledger.report_gun(a.piles[0], 1, "idle", True, {}, T0)
    trade = charge(ledger, a.piles[0], 1, a.wallets["li"], T0)
    s = ledger.session(trade)
    ledger.settle(trade, record(tuple(s.tier_energy), T0, 6), T0 + timedelta(minutes=7))  # type: ignore[arg-type]
    return price(ledger.session(trade).tier_energy, ledger.session(trade).schedule)


@pytest.fixture
def world(ledger: Ledger, database_url: str) -> Iterator[World]:
    a = build_tenant(ledger, "Alpha", "3201060001", "ops")
    b = build_tenant(ledger, "Beta", "3201060002", "ops")
    bill = day(ledger, a)
    app = console_app(ledger, database_url, WebSettings(screen_tick=0.1))
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections, TestClient(app) as client:
        projections.catch_up()
        yield World(app, client, projections, ledger, a, b, bill)


def figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}">.*?(?:<span class="figure">|<b>)([^<]+)<', html, re.S)
    assert found, name
    return found.group(1).strip()


# ---- the API --------------------------------------------------------------------------------------------
def test_the_screen_endpoint_answers_the_dashboard_the_power_curve_the_top_stations_and_alarms(world: World) -> None:
    headers = operator_headers(world.app, TENANT_ADMIN, world.a.tenant_id)
    screen = world.client.get("/operator/v1/dashboard/screen", headers=headers, params={"at": AT}).json()
    dashboard = world.client.get("/operator/v1/dashboard", headers=headers, params={"at": AT}).json()
    assert {k: screen[k] for k in dashboard} == dashboard  # the dashboard's own figures, unchanged
    assert screen["piles"] == {"total": 2, "online": 1, "offline": 1, "faulted": 0}
    assert screen["today"]["energy"] == world.bill.energy and screen["today"]["revenue_fen"] == world.bill.total_fen
    assert screen["tenant"] == {"tenant_id": str(world.a.tenant_id), "name": "Alpha"}
    curve = screen["power_curve"]
    assert len(curve) == 96 and curve[-1]["at"] == bucket_of(datetime.fromisoformat(AT)).isoformat()
    assert sum(p["energy"] for p in curve) == 5 * 1000  # every increment of the five readings, once
    assert all(p["power_w"] == p["energy"] * 360 // 900 for p in curve[:-1])
    assert world.client.get("/operator/v1/dashboard/power", headers=headers, params={"at": AT}).json()["items"] == curve
    top = world.client.get("/operator/v1/dashboard/top-stations", headers=headers,
                           params={"at": AT, "by": "revenue", "limit": 1}).json()
    assert top["by"] == "revenue" and [s["name"] for s in top["items"]] == ["Alpha East"]
    assert top["items"][0]["revenue_fen"] == world.bill.total_fen == screen["top_stations"]["items"][0]["revenue_fen"]
    assert [a["kind"] for a in screen["alarms"]] == []
    world.ledger.pile_disconnected(world.a.piles[0], T0 + timedelta(minutes=9), "lost heartbeats (3 missed)")
    world.projections.catch_up()
    alarms = world.client.get("/operator/v1/dashboard/screen", headers=headers).json()["alarms"]
    assert [(a["kind"], a["pile_no"]) for a in alarms] == [("lost_heartbeat", world.a.piles[0])]


def test_power_now_is_the_latest_reading_of_every_gun_charging(world: World) -> None:
    trade = charge(world.ledger, world.a.piles[0], 2, world.a.wallets["wang"], T0, minutes=1)
    world.ledger.report_gun(world.a.piles[0], 2, "charging", True, {}, T0 + timedelta(minutes=1))
    world.ledger.record_readings([{"trade_no": trade, "at": T0 + timedelta(minutes=2), "energy": 3000,
                                   "voltage_dv": 4000, "current_da": 1250}])  # 400.0 V × 125.0 A = 50 kW
    world.projections.catch_up()
    headers = operator_headers(world.app, TENANT_ADMIN, world.a.tenant_id)
    screen = world.client.get("/operator/v1/dashboard/screen", headers=headers).json()
    assert screen["power_now"] == {"power_w": 50_000, "guns_reporting": 1} and screen["guns"]["charging"] == 1


def test_whose_figures_a_tenant_an_agent_and_a_platform_admin_get_and_nobody_else(world: World) -> None:
    a, b = world.a, world.b
    beta = operator_headers(world.app, TENANT_ADMIN, b.tenant_id)
    for path in ("/operator/v1/dashboard/screen", "/operator/v1/dashboard/power", "/operator/v1/dashboard/top-stations"):
        r = world.client.get(path, headers=beta, params={"tenant_id": str(a.tenant_id)})
        assert r.status_code == 404 and r.json()["code"] == "not_found", path
        assert world.client.get(path).status_code == 401
    own = world.client.get("/operator/v1/dashboard/screen", headers=beta, params={"tenant_id": str(b.tenant_id)})
    assert own.status_code == 200 and own.json()["today"]["energy"] == 0
    agent = operator_headers(world.app, AGENT, a.tenant_id, [a.stations[1]])
    seen = world.client.get("/operator/v1/dashboard/screen", headers=agent).json()
    assert seen["piles"]["total"] == 1 and seen["today"]["energy"] == 0  # the session was at the other station
    assert [s["name"] for s in seen["top_stations"]["items"]] == ["Alpha West"]
    platform = operator_headers(world.app, PLATFORM_ADMIN)
    everyone = world.client.get("/operator/v1/dashboard/screen", headers=platform).json()
    assert everyone["piles"]["total"] == 4 and everyone["tenant"] is None
    only_a = world.client.get("/operator/v1/dashboard/screen", headers=platform, params={"tenant_id": str(a.tenant_id)})
    assert only_a.json()["piles"]["total"] == 2
    nobody = world.client.get("/operator/v1/dashboard/screen", headers=platform,
                              params={"tenant_id": "00000000-0000-0000-0000-000000000001"})
    assert nobody.status_code == 404


# ---- the page --------------------------------------------------------------------------------------------
def test_the_page_shows_what_the_endpoint_answers_with_the_csp_and_no_inline_script(world: World) -> None:
    alpha = world.signed_in("alpha")
    page = alpha.get("/console/screen")
    headers = operator_headers(world.app, TENANT_ADMIN, world.a.tenant_id)
    screen = world.client.get("/operator/v1/dashboard/screen", headers=headers).json()
    assert page.status_code == 200 and page.headers["content-security-policy"] == CSP
    scripts = Scripts(page.text)
    assert scripts.inline == [] and all(s and s.startswith("/console/static/") for s in scripts.sources)
    assert figure(page.text, "online") == str(screen["piles"]["online"]) == "1"
    assert figure(page.text, "offline") == "1"
    energy = screen["today"]["energy"]
    assert figure(page.text, "energy-today") == f"{energy // 10000:,}.{energy % 10000 // 1000}"
    fen = screen["today"]["revenue_fen"]
    assert figure(page.text, "revenue-today") == f"{fen // 100}.{fen % 100:02d}"
    assert 'sse-connect="/console/screen/live?by=energy"' in page.text and "Alpha East" in page.text
    assert "data-power=" in page.text and "Alpha</span>" in page.text
    english = alpha.get("/console/screen?lang=en").text
    assert "Piles online" in english and "Top stations today (energy)" in english


def test_the_page_scope_is_the_apis(world: World) -> None:
    a, b = world.a, world.b
    beta = world.signed_in("beta", tenant=b)
    for path in (f"/console/screen?tenant={a.tenant_id}", f"/console/screen/live?tenant={a.tenant_id}",
                 "/console/screen?tenant=not-a-tenant"):
        r = beta.get(path)
        assert r.status_code == 404 and "页面不存在" in r.text, path
    agent = world.signed_in("agent-w", AGENT, stations=[a.stations[1]])
    page = agent.get("/console/screen").text
    assert figure(page, "online") == "0" and "Alpha West" in page and "Alpha East" not in page
    platform = world.signed_in("root", PLATFORM_ADMIN)
    pick = platform.get("/console/screen").text
    assert f"/console/screen?tenant={a.tenant_id}" in pick and f"/console/screen?tenant={b.tenant_id}" in pick
    chosen = platform.get(f"/console/screen?tenant={a.tenant_id}").text
    assert figure(chosen, "online") == "1" and "Alpha East" in chosen
    assert platform.get("/console/screen/live").status_code == 404  # which tenant?
    assert TestClient(world.app).get("/console/screen", follow_redirects=False).status_code == 303  # sign in first


# ---- the live stream -----------------------------------------------------------------------------------------
def read_events(lines: Iterator[str], until: Any) -> list[tuple[str, str]]:
    """Events from an SSE line iterator until ``until(events)`` holds."""
    events: list[tuple[str, str]] = []
    name, data = None, []
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and name is not None:
            events.append((name, "\n".join(data)))
            name, data = None, []
            if until(events):
                return events
    raise AssertionError(f"the stream ended after {events}")


def test_the_stream_sends_every_section_then_only_what_changed_and_ends_with_the_browser(
        world: World, ledger: Ledger, database_url: str) -> None:
    app = console_app(ledger, database_url, WebSettings(screen_tick=0.1))  # served by uvicorn, not the TestClient
    operator_user(app, "alpha", TENANT_ADMIN, world.a.tenant_id)
    with serving(app, ServerSettings()) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        assert sign_in(http, "alpha").status_code == 303
        with http.stream("GET", "/console/screen/live", timeout=30) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            first = read_events(lines, lambda e: len(e) == 7)
            assert {n for n, _ in first} == {"screen-piles", "screen-today", "screen-month", "screen-top",
                                             "screen-alarms", "screen-clock", "screen-power"}
            assert app.state.web_streams == 1
            world.ledger.pile_connected(world.a.piles[1], datetime.now(UTC), "gw-1", 0x16, "V1")
            world.projections.catch_up()
            later = read_events(lines, lambda e: any(n == "screen-piles" for n, _ in e))
            assert {n for n, _ in later} <= {"screen-piles", "screen-clock", "screen-power"}  # nothing else moved
            piles = dict(later)["screen-piles"]
            assert figure(piles, "online") == "2" and 'sse-swap="screen-piles"' in piles
        deadline = time.monotonic() + 20
        while app.state.web_streams and time.monotonic() < deadline:  # the server notices the browser left
            time.sleep(0.05)
        assert app.state.web_streams == 0


def test_streams_beyond_the_cap_are_refused_and_a_signed_out_stream_says_so(world: World, ledger: Ledger,
                                                                            database_url: str) -> None:
    app = console_app(ledger, database_url, WebSettings(screen_tick=0.1, max_streams=1))
    operator_user(app, "alpha", TENANT_ADMIN, world.a.tenant_id)
    with serving(app, ServerSettings()) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:
        assert sign_in(http, "alpha").status_code == 303
        with http.stream("GET", "/console/screen/live", timeout=30) as stream:
            lines = stream.iter_lines()
            read_events(lines, lambda e: len(e) >= 1)
            assert http.get("/console/screen/live").status_code == 503
            with app.state.pool.connection() as conn:  # the user is disabled: the next tick sees it
                conn.execute("UPDATE operator_users SET disabled = true WHERE username = 'alpha'")
            ended = read_events(lines, lambda e: any(n == "signed-out" for n, _ in e))
            assert ended[-1][0] == "signed-out"


def test_the_power_view_adds_each_increment_once_whatever_the_batches_and_nothing_going_backwards(
        world: World, database_url: str) -> None:
    trade = charge(world.ledger, world.b.piles[0], 1, world.b.wallets["li"], T0, minutes=3)  # 1000, 2000, 3000
    world.ledger.record_readings([{"trade_no": trade, "at": T0 + timedelta(minutes=4), "energy": 500},  # backwards
                                  {"trade_no": trade, "at": T0 + timedelta(minutes=20), "energy": 4500}])
    headers = operator_headers(world.app, TENANT_ADMIN, world.b.tenant_id)
    at = {"at": (T0 + timedelta(minutes=21)).isoformat()}
    for batch_size in (1, 1000):  # one event per batch, then all of them in one
        with Projections(world.ledger.applications, eventsourcing_env(database_url), batch_size=batch_size) as views:
            views.rebuild(["power_curve"])
        curve = world.client.get("/operator/v1/dashboard/power", headers=headers, params=at).json()["items"]
        by_bucket = {p["at"]: p["energy"] for p in curve if p["energy"]}
        assert sum(by_bucket.values()) == 4500, (batch_size, by_bucket)
        assert by_bucket[bucket_of(T0 + timedelta(minutes=20)).isoformat()] >= 1500  # 3000 -> 4500 lands there
