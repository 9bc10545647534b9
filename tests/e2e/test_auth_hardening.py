"""Operator accounts at the API's boundary (issue 10, findings 8, 9, 10): every request is checked
against the current user (disabled, deleted, logged out, re-scoped), logins are throttled per
address and per user name, user names are a safe set, and every answer carries the security
headers; bodies are capped; the API docs are served only where configured."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN, AuthSettings
from adapters.api.app import create_app
from adapters.api.guards import ServerSettings
from adapters.api.login_guard import LoginLimits, Throttle, TooManyAttempts
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from projections.runner import Projections
from tests.operator_tokens import operator_headers
from tests.e2e.test_projections import Tenant, build_tenant, scripted_day

V = "/operator/v1"
PASSWORD = "a long passphrase"


@dataclass
class Site:
    client: TestClient
    a: Tenant
    b: Tenant
    database_url: str

    def headers(self, role: str, tenant: Tenant | None = None, stations: list[Any] | None = None,
                subject: str | None = None) -> dict[str, str]:
        return operator_headers(self.client.app, role, tenant.tenant_id if tenant else None, stations, subject)

    def login(self, username: str, password: str = PASSWORD, **headers: str) -> Any:
        return self.client.post(f"{V}/auth/token", json={"username": username, "password": password},
                                headers=headers)

    def token(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        r = self.login(username, password)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def add_user(self, by: dict[str, str], username: str, role: str, **extra: Any) -> Any:
        return self.client.post(f"{V}/users", headers=by, json={"username": username, "password": PASSWORD,
                                                                "role": role, **extra})


@pytest.fixture
def site(ledger: Ledger, database_url: str) -> Iterator[Site]:
    a = build_tenant(ledger, "Alpha", "3201060001", "alpha-admin")
    b = build_tenant(ledger, "Beta", "4401060001", "beta-admin")
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.catch_up()
    app = create_app(ledger, database_url, AuthSettings.generate())
    with TestClient(app) as client:
        yield Site(client, a, b, database_url)


def station_ids(site: Site, headers: dict[str, str]) -> set[str]:
    r = site.client.get(f"{V}/stations", headers=headers)
    assert r.status_code == 200, r.text
    return {s["station_id"] for s in r.json()["items"]}


# ---- tokens follow the user (finding 9) -----------------------------------------------------------------
def test_a_disabled_users_token_answers_401_at_once(site: Site) -> None:
    admin = site.headers(TENANT_ADMIN, site.a)
    assert site.add_user(admin, "agent.one", AGENT, stations=[str(site.a.stations[0])]).status_code == 201
    agent = site.token("agent.one")
    assert station_ids(site, agent) == {str(site.a.stations[0])}
    r = site.client.post(f"{V}/users/agent.one/disable", headers=admin)
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    r = site.client.get(f"{V}/stations", headers=agent)
    assert (r.status_code, r.json()["code"]) == (401, "user_disabled")
    assert site.login("agent.one").status_code == 401
    # enabling again does not bring the old tokens back: signing in does
    assert site.client.post(f"{V}/users/agent.one/enable", headers=admin).json()["disabled"] is False
    r = site.client.get(f"{V}/stations", headers=agent)
    assert (r.status_code, r.json()["code"]) == (401, "token_revoked")
    assert station_ids(site, site.token("agent.one")) == {str(site.a.stations[0])}


def test_a_deleted_users_token_stops_working(site: Site) -> None:
    headers = site.headers(TENANT_ADMIN, site.a, subject="gone@a")
    assert site.client.get(f"{V}/stations", headers=headers).status_code == 200
    with psycopg.connect(site.database_url) as conn:
        conn.execute("DELETE FROM operator_users WHERE username = 'gone@a'")
    r = site.client.get(f"{V}/stations", headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, "token_revoked")


def test_an_agent_whose_stations_change_sees_the_new_scope_with_the_old_token(site: Site) -> None:
    admin = site.headers(TENANT_ADMIN, site.a)
    site.add_user(admin, "agent.two", AGENT, stations=[str(site.a.stations[0])])
    agent = site.token("agent.two")
    claims = jwt.decode(agent["Authorization"].split()[1], options={"verify_signature": False})
    assert "stations" not in claims and claims["gen"] == 0  # the scope is the user's row, read per request
    assert station_ids(site, agent) == {str(site.a.stations[0])}
    assert site.client.post(f"{V}/piles/{site.a.piles[1]}/reboot", headers=agent).status_code == 404
    r = site.client.put(f"{V}/users/agent.two/stations", headers=admin, json={"stations": [str(site.a.stations[1])]})
    assert r.status_code == 200, r.text
    assert station_ids(site, agent) == {str(site.a.stations[1])}
    assert site.client.post(f"{V}/piles/{site.a.piles[0]}/reboot", headers=agent).status_code == 404
    assert site.client.post(f"{V}/piles/{site.a.piles[1]}/reboot", headers=agent).status_code == 202
    # another tenant's station is no scope to give, and a tenant admin has no station list
    r = site.client.put(f"{V}/users/agent.two/stations", headers=admin, json={"stations": [str(site.b.stations[0])]})
    assert r.status_code == 404
    r = site.client.put(f"{V}/users/agent.two/stations", headers=admin, json={"stations": []})
    assert r.status_code == 422
    assert station_ids(site, agent) == {str(site.a.stations[1])}


def test_logout_revokes_the_callers_tokens(site: Site) -> None:
    admin = site.headers(TENANT_ADMIN, site.a)
    site.add_user(admin, "ops.a", TENANT_ADMIN)
    first, second = site.token("ops.a"), site.token("ops.a")
    other = site.headers(TENANT_ADMIN, site.a)  # another user's token is untouched
    r = site.client.post(f"{V}/auth/logout", headers=first)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store", r.text
    for headers in (first, second):
        r = site.client.get(f"{V}/stations", headers=headers)
        assert (r.status_code, r.json()["code"]) == (401, "token_revoked")
    assert site.client.get(f"{V}/stations", headers=other).status_code == 200
    assert station_ids(site, site.token("ops.a")) == {str(s) for s in site.a.stations}


def test_a_user_changes_their_password_with_the_old_one(site: Site) -> None:
    admin = site.headers(TENANT_ADMIN, site.a)
    site.add_user(admin, "ops.pw", TENANT_ADMIN)
    old = site.token("ops.pw")
    r = site.client.post(f"{V}/auth/password", headers=old, json={"old_password": "not the password",
                                                                    "new_password": "a brand new passphrase"})
    assert (r.status_code, r.json()["code"]) == (403, "wrong_password")
    assert site.client.get(f"{V}/stations", headers=old).status_code == 200  # a wrong guess changed nothing
    r = site.client.post(f"{V}/auth/password", headers=old, json={"old_password": PASSWORD,
                                                                    "new_password": "a brand new passphrase"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store", r.text
    fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert site.client.get(f"{V}/stations", headers=old).json()["code"] == "token_revoked"
    assert site.client.get(f"{V}/stations", headers=fresh).status_code == 200
    assert site.login("ops.pw").status_code == 401
    assert site.login("ops.pw", "a brand new passphrase").status_code == 200
    r = site.client.post(f"{V}/auth/password", headers=fresh, json={"old_password": "a brand new passphrase",
                                                                      "new_password": "short"})
    assert r.status_code == 422


def test_an_admin_resets_a_password_and_disables_only_in_scope(site: Site) -> None:
    admin_a, admin_b = site.headers(TENANT_ADMIN, site.a), site.headers(TENANT_ADMIN, site.b)
    platform = site.headers(PLATFORM_ADMIN)
    site.add_user(admin_a, "agent.a", AGENT, stations=[str(site.a.stations[0])])
    site.add_user(admin_b, "ops.b", TENANT_ADMIN)
    agent = site.token("agent.a")
    r = site.client.put(f"{V}/users/agent.a/password", headers=admin_a, json={"password": "reset by the admin"})
    assert r.status_code == 200, r.text
    assert site.client.get(f"{V}/stations", headers=agent).json()["code"] == "token_revoked"
    assert site.login("agent.a", "reset by the admin").status_code == 200
    # another tenant's users are not found; a platform admin is not a tenant's user
    for path in ("disable", "enable"):
        assert site.client.post(f"{V}/users/ops.b/{path}", headers=admin_a).status_code == 404
    assert site.client.put(f"{V}/users/ops.b/password", headers=admin_a,
                           json={"password": "reset by the admin"}).status_code == 404
    platform_name = "platform.root"
    site.headers(PLATFORM_ADMIN, subject=platform_name)
    assert site.client.post(f"{V}/users/{platform_name}/disable", headers=admin_a).status_code == 404
    # agents manage no one; nobody disables themselves
    agent = site.token("agent.a", "reset by the admin")
    assert site.client.post(f"{V}/users/ops.b/disable", headers=agent).json()["code"] == "forbidden_role"
    me = site.headers(TENANT_ADMIN, site.a, subject="me@a")
    r = site.client.post(f"{V}/users/me@a/disable", headers=me)
    assert (r.status_code, r.json()["code"]) == (409, "cannot_disable_self")
    # a platform admin disables anyone
    ops_b = site.token("ops.b")
    assert site.client.post(f"{V}/users/ops.b/disable", headers=platform).status_code == 200
    assert site.client.get(f"{V}/stations", headers=ops_b).json()["code"] == "user_disabled"
    users = site.client.get(f"{V}/users", headers=admin_b).json()["items"]
    assert {u["username"]: u["disabled"] for u in users}["ops.b"] is True
    assert all(u["tenant_id"] == str(site.b.tenant_id) for u in users)
    assert "password_hash" not in json.dumps(users)


# ---- user names and existing users (finding 10) ---------------------------------------------------------
@pytest.mark.parametrize("name", ["ab", "x" * 65, "evil\u202euser", "two words", "nul\x00byte", "tab\tname",
                                  "zero\u200bwidth", "ops/../root", "ünïcode", ""])
def test_user_names_are_a_safe_set(site: Site, name: str) -> None:
    r = site.add_user(site.headers(TENANT_ADMIN, site.a), name, TENANT_ADMIN)
    assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text


def test_a_safe_user_name_is_accepted(site: Site) -> None:
    r = site.add_user(site.headers(TENANT_ADMIN, site.a), "Ops.Lead_2-x@op.example+cn", TENANT_ADMIN)
    assert r.status_code == 201, r.text


def test_creating_a_taken_name_answers_409_without_saying_where(site: Site) -> None:
    admin_a, admin_b = site.headers(TENANT_ADMIN, site.a), site.headers(TENANT_ADMIN, site.b)
    assert site.add_user(admin_b, "dup.b", TENANT_ADMIN).status_code == 201
    assert site.add_user(admin_a, "dup.a", TENANT_ADMIN).status_code == 201
    elsewhere = site.add_user(admin_a, "dup.b", TENANT_ADMIN)
    mine = site.add_user(admin_a, "dup.a", TENANT_ADMIN)
    assert elsewhere.status_code == mine.status_code == 409
    assert elsewhere.json() == mine.json() and elsewhere.json()["code"] == "already_exists"
    assert "dup" not in elsewhere.text and str(site.b.tenant_id) not in elsewhere.text


def test_a_nul_in_a_login_username_answers_422(site: Site) -> None:
    for name in ("ops\x00admin", "\u202eadmin"):
        r = site.login(name)
        assert (r.status_code, r.json()["code"]) == (422, "validation_error"), r.text


def test_agents_cannot_acknowledge_alarms(ledger: Ledger, database_url: str) -> None:
    a, _ = scripted_day(ledger)
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        projections.catch_up()
    with TestClient(create_app(ledger, database_url, AuthSettings.generate())) as client:
        agent = operator_headers(client.app, AGENT, a.tenant_id, a.stations)
        alarms = client.get(f"{V}/alarms?state=all", headers=agent).json()["items"]
        assert alarms, "the scripted day raises alarms at the agent's stations"
        r = client.post(f"{V}/alarms/{alarms[0]['alarm_id']}/acknowledge", headers=agent, json={"note": "mine"})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden_role")
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT count(*) FROM alarm_acknowledgements").fetchone() == (0,)
        admin = operator_headers(client.app, TENANT_ADMIN, a.tenant_id)
        r = client.post(f"{V}/alarms/{alarms[0]['alarm_id']}/acknowledge", headers=admin, json={"note": "on it"})
        assert r.status_code == 200, r.text


# ---- login throttle (finding 8) -----------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_backs_off_and_forgets() -> None:
    clock = Clock()
    throttle = Throttle(free=3, backoff_base=1.0, backoff_max=8.0, forget_after=60.0, max_entries=100, clock=clock)
    for _ in range(3):
        throttle.count("u")  # the third failure locks for 1 s
    with pytest.raises(TooManyAttempts) as refused:
        throttle.count("u")
    assert refused.value.retry_after == 1
    waits = []
    for _ in range(5):  # each failure after the lock doubles it, up to the cap
        clock.now += throttle.locked_for("u")
        throttle.count("u")
        waits.append(throttle.locked_for("u"))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]
    clock.now += 61 + 8
    throttle.count("u")  # forgotten after a quiet minute: free attempts again
    assert throttle.locked_for("u") == 0
    throttle.count("u")
    throttle.forget("u")  # a success forgets the name
    for _ in range(2):
        throttle.count("u")
    assert throttle.locked_for("u") == 0


def test_the_throttle_keeps_a_bounded_table() -> None:
    clock = Clock()
    throttle = Throttle(free=3, backoff_base=1.0, backoff_max=8.0, forget_after=60.0, max_entries=10, clock=clock)
    for i in range(1000):
        throttle.count(f"user-{i}")
    assert len(throttle) <= 10


def test_wrong_passwords_answer_429_with_retry_after(site: Site) -> None:
    site.add_user(site.headers(TENANT_ADMIN, site.a), "ops.flood", TENANT_ADMIN)
    limits = LoginLimits()
    codes = [site.login("ops.flood", "wrong password!").status_code for _ in range(limits.username_free)]
    assert codes == [401] * limits.username_free
    r = site.login("ops.flood", "wrong password!")
    assert (r.status_code, r.json()["code"]) == (429, "too_many_attempts")
    assert int(r.headers["retry-after"]) >= 1
    assert site.login("ops.flood").status_code == 429  # even the right password waits out the lock
    # the address is throttled too: many names from one address
    statuses = [site.login(f"nobody-{i}", "wrong password!").status_code for i in range(limits.address_free + 5)]
    assert statuses.count(429) >= 5 and set(statuses) <= {401, 429}


def test_a_successful_login_resets_the_usernames_count(site: Site) -> None:
    site.add_user(site.headers(TENANT_ADMIN, site.a), "ops.typo", TENANT_ADMIN)
    free = LoginLimits().username_free
    for _ in range(2):
        codes = [site.login("ops.typo", "typo in it!").status_code for _ in range(free - 1)]
        assert codes == [401] * (free - 1)
        assert site.login("ops.typo").status_code == 200


# ---- headers, docs, bodies (findings 9, 10) ---------------------------------------------------------------
def test_every_answer_carries_the_security_headers(site: Site) -> None:
    answers = [site.client.get(f"{V}/stations"), site.client.get(f"{V}/nowhere"), site.login("x\x00"),
               site.client.get(f"{V}/stations", headers=site.headers(TENANT_ADMIN, site.a)), site.login("nobody.here")]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff", r.request.url
        assert "strict-transport-security" not in r.headers
    token = site.login("nobody.here")
    assert token.headers["cache-control"] == "no-store"
    admin = site.headers(TENANT_ADMIN, site.a)
    site.add_user(admin, "ops.cache", TENANT_ADMIN)
    for r in (site.login("ops.cache"), site.client.get(f"{V}/users", headers=admin)):
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"


def test_hsts_is_sent_over_tls_or_when_configured(ledger: Ledger, database_url: str) -> None:
    with TestClient(create_app(ledger, database_url, AuthSettings.generate()), base_url="https://api.example") as tls:
        r = tls.get(f"{V}/stations")
        assert r.headers["strict-transport-security"].startswith("max-age=")
    with TestClient(create_app(ledger, database_url, AuthSettings.generate())) as plain:
        assert "strict-transport-security" not in plain.get(f"{V}/stations").headers
    forced = create_app(ledger, database_url, AuthSettings.generate(), server=ServerSettings(hsts=True))
    with TestClient(forced) as plain:
        assert "strict-transport-security" in plain.get(f"{V}/stations").headers


def test_the_api_docs_are_served_only_where_configured(ledger: Ledger, database_url: str) -> None:
    paths = ("/docs", "/redoc", "/openapi.json")
    with TestClient(create_app(ledger, database_url, AuthSettings.generate())) as client:
        assert [client.get(p).status_code for p in paths] == [404, 404, 404]
    with TestClient(create_app(ledger, database_url, AuthSettings.generate(), api_docs=True)) as client:
        assert [client.get(p).status_code for p in paths] == [200, 200, 200]
    assert ServerSettings.from_env({}).api_docs is False
    assert ServerSettings.from_env({"CHARGELEDGER_API_DOCS": "1"}).api_docs is True


def test_request_bodies_are_capped(site: Site, ledger: Ledger) -> None:
    admin = site.headers(PLATFORM_ADMIN)
    tenants_before = len(site.client.get(f"{V}/tenants", headers=admin).json()["items"])
    big = json.dumps({"name": "x" * 100_000}).encode()
    r = site.client.post(f"{V}/tenants", headers={**admin, "content-type": "application/json"}, content=big)
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}'

    r = site.client.post(f"{V}/tenants", headers={**admin, "content-type": "application/json"}, content=chunks())
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
    assert site.client.post(f"{V}/tenants", headers=admin, json={"name": "small"}).status_code == 201
    with Projections(ledger.applications, eventsourcing_env(site.database_url)) as projections:
        projections.catch_up()
    assert len(site.client.get(f"{V}/tenants", headers=admin).json()["items"]) == tenants_before + 1
    # a router sets its own cap per path prefix (the payment callbacks: a few KB)
    site.client.app.state.body_limits.cap("/operator/v1/auth/", 1024)
    r = site.login("someone", "p" * 400)
    assert r.status_code == 401
    r = site.login("someone", "p" * 2000)
    assert (r.status_code, r.json()["code"]) == (413, "body_too_large")
