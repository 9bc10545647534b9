"""The metrics read from the ledger on real Postgres: the books view's wallet totals, holds open and
settlements, each view's lag, the watchdog's and the outbox's backlogs; the API's /readyz turning
not ready when its database is away (docs/operations.md, "Metrics and alarms to watch")."""

from __future__ import annotations

import socket
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from adapters.api.app import create_app
from adapters.api.auth import TENANT_ADMIN, AuthSettings
from adapters.api.health import health_router
from adapters.api.operator.deps import Caller
from adapters.cli import observability
from adapters.metrics import logs
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from projections.runner import Projections
from tests.factories import build_world, record
from tests.operator_tokens import operator_headers

T0 = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)  # 10:00 in Shanghai: peak


def scrape(collectors: list[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(generate_latest(registry).decode()) for s in family.samples}


def started(ledger: Ledger, world: Any, gun_no: int, hold: int) -> str:
    trade_no = ledger.request_start(pile_no=world.pile_no, gun_no=gun_no, wallet_id=world.wallet_id, hold_fen=hold,
                                    at=T0, author="driver-1")
    ledger.acknowledge_start(trade_no, at=T0 + timedelta(seconds=2), ok=True)
    ledger.mark_charging(trade_no, at=T0 + timedelta(seconds=10))
    return trade_no


def test_the_books_give_wallet_totals_holds_open_and_settlements(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger, top_up=100_00)
    first = started(ledger, world, 1, 30_00)
    started(ledger, world, 2, 20_00)
    with Projections(ledger.applications, eventsourcing_env(database_url)) as projections:
        collectors = observability.projection_collectors(projections, ttl=0)
        lagging = scrape(collectors)
        assert lagging[("chargeledger_projection_lag", (("application", "Wallets"), ("view", "books")))] > 0
        projections.catch_up()
        got = scrape(collectors)
        assert got[("chargeledger_holds_open", ())] == 2 and got[("chargeledger_held_fen", ())] == 50_00
        assert got[("chargeledger_wallet_total_fen", (("family", "held"),))] == -50_00  # credit balances < 0
        assert got[("chargeledger_wallet_total_fen", (("family", "available"),))] == -50_00
        assert got[("chargeledger_wallet_total_fen", (("family", "clearing:wechat"),))] == 100_00
        assert got[("chargeledger_trial_balance_fen", ())] == 0

        ledger.settle(first, record((0, 30000, 0, 0), T0), T0 + timedelta(minutes=30))  # 4.50 yuan at peak
        projections.catch_up()
        got = scrape(collectors)
        assert got[("chargeledger_holds_open", ())] == 1 and got[("chargeledger_held_fen", ())] == 20_00
        assert got[("chargeledger_settlements_total", (("outcome", "settled"),))] == 1
        assert got[("chargeledger_wallet_total_fen", (("family", "revenue:electricity"),))] == -300
        assert got[("chargeledger_wallet_total_fen", (("family", "revenue:service"),))] == -150
        assert got[("chargeledger_trial_balance_fen", ())] == 0
        lags = {key: value for key, value in got.items() if key[0] == "chargeledger_projection_lag"}
        assert len(lags) >= 9 and set(lags.values()) == {0}  # every view, every log it follows, caught up
        assert got[("chargeledger_metrics_source_up", (("source", "books"),))] == 1

        projections.rebuild(["books"])  # rebuilt from zero: the same figures
        assert {k: v for k, v in scrape(collectors).items() if k[0] != "chargeledger_projection_lag"} == \
            {k: v for k, v in got.items() if k[0] != "chargeledger_projection_lag"}


def test_the_watchdog_and_outbox_backlogs_read_their_tables(ledger: Ledger, database_url: str) -> None:
    from adapters.followers.watchdog import Watchdog
    from adapters.interconnect.store.schema import DDL

    world = build_world(ledger)
    trade_no = started(ledger, world, 1, 30_00)
    assert scrape(observability.watchdog_collectors(database_url, ttl=0))[("chargeledger_open_sessions", ())] == 0
    watchdog = Watchdog(ledger, database_url)
    watchdog.open_sessions.catch_up()
    got = scrape(observability.watchdog_collectors(database_url, ttl=0))
    assert got[("chargeledger_open_sessions", ())] == 1 and got[("chargeledger_wallet_followups", ())] == 0
    assert trade_no

    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in DDL:
            conn.execute(statement)
        peer = uuid.uuid4()
        conn.execute("INSERT INTO tcec_peers (peer_id, tenant_id, operator_id, our_operator_id, name, base_url, role, "
                     "dialect, token_lifetime, inbound_sealed) VALUES (%s, %s, 'MA0000001', 'MA0000002', 'p', "
                     "'http://peer.invalid', 'customer', 'tcec2016', 7200, 'sealed')", (peer, world.tenant_id))
        for key, due in (("a", "-1 minute"), ("b", "-2 minutes"), ("c", "+1 hour")):
            conn.execute("INSERT INTO tcec_outbox (peer_id, key, interface, payload, created_at, due) "
                         "VALUES (%s, %s, 'notification_stationStatus', '{}', now(), now() + %s::interval)",
                         (peer, key, due))
        conn.execute("INSERT INTO tcec_outbox_tracking VALUES ('Sessions', 0)")
    got = scrape(observability.outbox_collectors(database_url, ledger.applications, ttl=0))
    assert (got[("chargeledger_outbox_pending", ())], got[("chargeledger_outbox_due", ())]) == (3, 2)
    assert got[("chargeledger_outbox_oldest_due_seconds", ())] >= 110
    head = ledger.sessions.recorder.max_notification_id()
    assert got[("chargeledger_follower_lag", (("application", "Sessions"), ("follower", "tcec_outbox")))] == head


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_api_is_ready_with_its_database_and_not_ready_without(ledger: Ledger, database_url: str) -> None:
    with TestClient(create_app(ledger, database_url, AuthSettings.generate(), pool_size=2)) as client:
        assert client.get("/healthz").json() == {"alive": True}
        answer = client.get("/readyz")
        assert answer.status_code == 200 and answer.json() == {"ready": True, "checks": {"database": {"ok": True}}}
        assert "/readyz" not in client.get("/openapi.json").text  # not an API operation
    away = f"postgresql://chargeledger@127.0.0.1:{closed_port()}/chargeledger"
    app = FastAPI()
    app.include_router(health_router(away))
    with TestClient(app) as client:
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {"ready": False, "checks": {"database": {"ok": False}}}  # no error text leaked
        assert client.get("/healthz").status_code == 200  # alive, only cut off


def test_an_operator_request_logs_its_callers_tenant(ledger: Ledger, database_url: str) -> None:
    world = build_world(ledger)
    app = create_app(ledger, database_url, AuthSettings.generate(), pool_size=2)

    @app.get("/test/log-context")
    def context(principal: Caller) -> dict[str, Any]:  # a sync endpoint: run in a worker thread, as most are
        return {"tenant": logs.TENANT.get()}

    with TestClient(app) as client:
        headers = operator_headers(app, TENANT_ADMIN, world.tenant_id)
        assert client.get("/test/log-context", headers=headers).json() == {"tenant": str(world.tenant_id)}
        assert client.get("/test/log-context").status_code == 401  # no caller, no tenant
