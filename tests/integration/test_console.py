"""The console's rules without a browser (FastAPI's TestClient on real Postgres): the session cookie, CSRF,
the CSP and no inline script on any page, revocation at once, scope as the API's, forms checked at the
field by the API's own models, the language switch; the API's own answers unchanged by the pages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import AGENT, TENANT_ADMIN
from adapters.postgres.env import eventsourcing_env
from adapters.web.mount import CSP
from domain.ledger import Ledger
from projections.runner import Projections
from tests.console import Scripts, console_app, csrf_of, operator_user, sign_in
from tests.e2e.test_projections import Tenant, build_tenant


@dataclass
class World:
    app: Any
    client: TestClient
    projections: Projections
    a: Tenant
    b: Tenant

    def signed_in(self, name: str, role: str = TENANT_ADMIN, tenant: Tenant | None = None,
                  stations: list[Any] | None = None, base_url: str = "http://testserver") -> TestClient:
        tenant = tenant or self.a
        operator_user(self.app, name, role, tenant.tenant_id, stations)
        client = TestClient(self.app, base_url=base_url)
        assert sign_in(client, name).status_code == 303
        return client


@pytest.fixture
def world(ledger: Ledger, database_url: str) -> Iterator[World]:
    a = build_tenant(ledger, "Alpha", "3201060001", "ops")
    b = build_tenant(ledger, "Beta", "3201060002", "ops")
    app = console_app(ledger, database_url)
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections, TestClient(app) as client:
        projections.catch_up()
        yield World(app, client, projections, a, b)


def pages_of(w: World) -> list[str]:
    return ["/console/", "/console/stations", "/console/stations/new", f"/console/stations/{w.a.stations[0]}",
            f"/console/stations/{w.a.stations[0]}/piles/new", "/console/piles",
            f"/console/piles?station={w.a.stations[1]}", "/console/nope", f"/console/stations/{w.b.stations[0]}"]


# ---- the cookie ----------------------------------------------------------------------------------------------
def test_the_session_cookie_is_httponly_lax_and_secure_over_tls(world: World) -> None:
    operator_user(world.app, "alpha", TENANT_ADMIN, world.a.tenant_id)
    plain = sign_in(TestClient(world.app), "alpha").headers["set-cookie"]
    assert plain.startswith("cl_session=") and "HttpOnly" in plain and "SameSite=lax" in plain
    assert "Secure" not in plain
    tls = sign_in(TestClient(world.app, base_url="https://console.example"), "alpha").headers["set-cookie"]
    assert tls.startswith("__Host-cl_session=") and "Secure" in tls and "HttpOnly" in tls and "Path=/" in tls


def test_a_page_without_a_session_redirects_to_sign_in_and_back(world: World) -> None:
    r = world.client.get("/console/piles?station=x", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login?next=%2Fconsole%2Fpiles%3Fstation%3Dx"
    htmx = world.client.get("/console/piles", headers={"HX-Request": "true"}, follow_redirects=False)
    assert htmx.headers["HX-Redirect"] == "/console/login"
    operator_user(world.app, "alpha", TENANT_ADMIN, world.a.tenant_id)
    page = world.client.get("/console/login?next=//evil.example/x")
    r = world.client.post("/console/login", data={"username": "alpha", "password": "operator test password",
                                                   "csrf": csrf_of(page.text), "next": "//evil.example/x"},
                          follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/"  # never another site


def test_a_wrong_password_is_shown_on_the_form_and_throttled_like_the_api(world: World) -> None:
    operator_user(world.app, "alpha", TENANT_ADMIN, world.a.tenant_id)
    r = sign_in(world.client, "alpha", "wrong password")
    assert r.status_code == 401 and "用户名或密码错误" in r.text and "set-cookie" not in {
        k.lower() for k in r.headers if r.headers[k].startswith("cl_session")}
    answers = [sign_in(world.client, "alpha", "wrong password").status_code for _ in range(8)]
    assert 429 in answers  # the API's own throttle (adapters/api/login_guard.py)


def test_logout_and_disabling_end_the_session_at_once(world: World) -> None:
    alpha = world.signed_in("alpha")
    assert alpha.get("/console/stations").status_code == 200
    cookie = alpha.cookies["cl_session"]
    page = alpha.get("/console/stations")
    r = alpha.post("/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/login?signed_out=1"
    replay = TestClient(world.app, cookies={"cl_session": cookie})
    assert replay.get("/console/stations", follow_redirects=False).status_code == 303
    assert world.client.get("/operator/v1/stations", headers={"Authorization": f"Bearer {cookie}"}).status_code == 401

    agent = world.signed_in("agent-1", AGENT, stations=[world.a.stations[0]])
    assert agent.get("/console/stations").status_code == 200
    with world.app.state.pool.connection() as conn:
        conn.execute("UPDATE operator_users SET disabled = true WHERE username = 'agent-1'")
    assert agent.get("/console/stations", follow_redirects=False).status_code == 303


# ---- CSRF ----------------------------------------------------------------------------------------------------
STATION = {"name": "Forged", "address": "x", "latitude": "31.2", "longitude": "121.5", "timezone": "Asia/Shanghai"}


def list_stations(w: World) -> list[Any]:
    """Every station the ledger holds (its events, not a view that may lag)."""
    with w.app.state.pool.connection() as conn:
        return conn.execute("SELECT * FROM registry_events WHERE topic LIKE %s", ("%Station.Created%",)).fetchall()


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(world: World) -> None:
    alpha = world.signed_in("alpha")
    before = len(list_stations(world))
    for data, headers in ((STATION, {}), ({**STATION, "csrf": "forged"}, {}), (STATION, {"X-CSRF-Token": "x"})):
        r = alpha.post("/console/stations", data=data, headers=headers, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text and r.headers["content-security-policy"] == CSP
    other = world.signed_in("beta", tenant=world.b)  # another session's token is not this one's
    stolen = csrf_of(other.get("/console/stations/new").text)
    assert alpha.post("/console/stations", data={**STATION, "csrf": stolen}).status_code == 403
    assert world.client.post("/console/login", data={"username": "alpha", "password": "x"}).status_code == 403
    assert len(list_stations(world)) == before

    token = csrf_of(alpha.get("/console/stations/new").text)
    r = alpha.post("/console/stations", data={**STATION, "name": "Real"}, headers={"X-CSRF-Token": token},
                   follow_redirects=False)  # htmx's way: the header from hx-headers
    assert r.status_code == 303 and len(list_stations(world)) == before + 1


# ---- CSP, inline scripts, escaping ----------------------------------------------------------------------------
def test_every_page_has_the_csp_and_no_inline_script_handler_or_style(world: World) -> None:
    alpha = world.signed_in("alpha")
    for path in ["/console/login", *pages_of(world)]:
        for lang in ("zh", "en"):
            r = (alpha if path != "/console/login" else world.client).get(path, params={"lang": lang})
            assert r.headers["content-security-policy"] == CSP, path
            assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
            scripts = Scripts(r.text)
            assert scripts.inline == [], (path, scripts.inline)
            assert scripts.sources and all(s and s.startswith("/console/static/") for s in scripts.sources)
    css = world.client.get("/console/static/app.css")
    assert css.status_code == 200 and css.headers["cache-control"] == "no-cache"
    assert world.client.get("/console/static/vendor/alpinejs-csp.min.js").status_code == 200
    api = world.client.get("/operator/v1/stations")
    assert api.status_code == 401 and api.json()["code"] == "missing_token"  # the API still answers JSON
    assert "content-security-policy" not in api.headers


def test_what_operators_typed_is_escaped(world: World) -> None:
    alpha = world.signed_in("alpha")
    token = csrf_of(alpha.get("/console/stations/new").text)
    r = alpha.post("/console/stations", data={**STATION, "name": "<script>alert(1)</script>", "csrf": token})
    assert r.status_code == 200
    world.projections.catch_up()
    page = alpha.get("/console/stations").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ---- scope ---------------------------------------------------------------------------------------------------
def test_another_tenants_station_is_404_as_in_the_api(world: World) -> None:
    beta = world.signed_in("beta", tenant=world.b)
    for path in (f"/console/stations/{world.a.stations[0]}", f"/console/stations/{world.a.stations[0]}/piles/new",
                 f"/console/piles?station={world.a.stations[0]}", "/console/stations/not-an-id"):
        r = beta.get(path)
        assert r.status_code == 404 and "页面不存在" in r.text, path
    token = csrf_of(beta.get("/console/stations/new").text)
    r = beta.post(f"/console/stations/{world.a.stations[0]}/piles",
                  data={"pile_no": "32010600029999", "kind": "DC", "gun_count": "2", "csrf": token})
    assert r.status_code == 404
    piles = beta.get("/console/piles").text
    assert world.b.piles[0] in piles and world.a.piles[0] not in piles


def test_an_agent_sees_its_stations_only_and_may_not_create(world: World) -> None:
    agent = world.signed_in("agent-1", AGENT, stations=[world.a.stations[0]])
    page = agent.get("/console/stations").text
    assert "Alpha East" in page and "Alpha West" not in page
    assert agent.get(f"/console/stations/{world.a.stations[1]}").status_code == 404
    r = agent.get("/console/stations/new")
    assert r.status_code == 403 and "无权操作" in r.text


# ---- forms ---------------------------------------------------------------------------------------------------
def test_a_refused_field_is_shown_at_the_field_and_a_good_form_creates_through_the_api_command(world: World) -> None:
    alpha = world.signed_in("alpha")
    token = csrf_of(alpha.get("/console/stations/new").text)
    r = alpha.post("/console/stations", data={**STATION, "latitude": "91", "csrf": token})
    assert r.status_code == 422 and 'id="latitude-error"' in r.text and 'value="Forged"' in r.text
    r = alpha.post("/console/stations", data={**STATION, "name": "Pudong", "csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    station = r.headers["location"].rsplit("/", 1)[1]
    r = alpha.post(f"/console/stations/{station}/piles", data={"pile_no": "123", "kind": "DC", "gun_count": "2",
                                                              "csrf": token})
    assert r.status_code == 422 and 'id="pile_no-error"' in r.text
    r = alpha.post(f"/console/stations/{station}/piles", data={"pile_no": world.a.piles[0], "kind": "DC",
                                                              "gun_count": "2", "csrf": token})
    assert r.status_code == 409 and "already registered" in r.text  # the ledger's own refusal, on the form
    r = alpha.post(f"/console/stations/{station}/piles", data={"pile_no": "32010600019999", "kind": "AC",
                                                              "gun_count": "1", "csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    world.projections.catch_up()
    page = alpha.get(f"/console/stations/{station}").text
    assert "Pudong" in page and "32010600019999" in page and "交流" in page


# ---- language ------------------------------------------------------------------------------------------------
def test_chinese_by_default_english_by_the_switch_remembered_in_a_cookie(world: World) -> None:
    alpha = world.signed_in("alpha")
    assert '<html lang="zh-CN">' in alpha.get("/console/stations").text
    r = alpha.get("/console/stations?lang=en")
    assert '<html lang="en">' in r.text and ">Stations</h1>" in r.text and "lang=en" in r.headers["set-cookie"]
    assert ">Stations</h1>" in alpha.get("/console/stations").text
    assert "站点信息" in alpha.get("/console/stations?lang=zh").text


# ---- the live stream -----------------------------------------------------------------------------------------
def test_the_live_stream_sends_rows_in_scope_and_ends_when_the_session_is_revoked(world: World) -> None:
    agent = world.signed_in("agent-1", AGENT, stations=[world.a.stations[0]])
    assert agent.get(f"/console/piles/live?station={world.b.stations[0]}").status_code == 404
    events: list[str] = []
    with agent.stream("GET", "/console/piles/live") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
            if line == ": tick" and "signed-out" not in events:  # a whole read sent: revoke the session now
                with world.app.state.pool.connection() as conn:
                    conn.execute("UPDATE operator_users SET disabled = true WHERE username = 'agent-1'")
    assert events == [f"pile-{world.a.piles[0]}", "signed-out"]  # the agent's one pile, then the end
