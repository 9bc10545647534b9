"""The whole HTTP API against its own OpenAPI document, with schemathesis.

One app as ``chargeledger api`` builds it (operator API, driver session and wallet API, the payment
callbacks; the payment platforms played by tests/payment_fakes.py) over a seeded world: two operators'
day (tests/e2e/test_projections.py ``scripted_day``) and a third with WeChat and Alipay mini-programs, a
driver who paid and charged. Tokens come from real logins: a platform admin, a tenant admin, an agent
and a driver. For every operation, schemathesis generates valid and invalid requests (each sent with a
token of a role drawn at random, none, or the wrong API's; valid ones often naming the seeded ids) and
checks each answer: never a 5xx, a documented status, a documented content type, a body that matches
the documented schema, and invalid input refused with a 4xx.

Bounded: :data:`EXAMPLES` per operation (about two minutes in all on a shared 2-core machine).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.parameters import ParameterLocation
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fastapi.testclient import TestClient

from adapters.api.auth import AGENT, PLATFORM_ADMIN, TENANT_ADMIN, AuthSettings
from adapters.api.driver.settings import DriverApiSettings
from domain.start_rules import StartRules
from adapters.api.app import create_app
from adapters.postgres.operator_users import SCHEMA as OPERATOR_USERS_SCHEMA
from adapters.postgres.env import create_tables
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from domain.ledger import Ledger
from projections.runner import Projections
from tests.factories import PRICES, SLOTS
from tests.operator_tokens import operator_headers
from tests.payment_fakes import PayWorld, build_pay_world
from tests.e2e.test_projections import charge, scripted_day

EXAMPLES = 40  # per operation
KEYS = SecretBox.generate_setting("k1")
PASSWORD = "a long passphrase for tests"
PAY_PILE = "51010600019236"
CHECKS = [schemathesis.checks.not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance, negative_data_rejection]


@dataclasses.dataclass
class Seeded:
    app: Any
    world: PayWorld
    tokens: dict[str, dict[str, str]]  # role -> headers
    operator_ids: dict[str, str]  # path parameter -> a seeded value the operator roles can see
    driver_ids: dict[str, str]  # path parameter -> a seeded value of the driver
    operators: dict[str, tuple[str, Any, list[Any]]]  # role -> (user, tenant, stations)

    def headers(self, role: str) -> dict[str, str]:
        """A token of ``role`` good now: an operator's is signed again for the user's current row, since
        the run itself may log the user out, change its password or disable it."""
        if role in self.operators:
            user, tenant, stations = self.operators[role]
            return operator_headers(self.app, role, tenant, stations, subject=user)
        return dict(self.tokens[role])


def seed(ledger: Ledger, database_url: str) -> tuple[PayWorld, dict[str, str], dict[str, str]]:
    """Two operators' day, an operator with mini-programs, its driver's paid top-up and finished session."""
    alpha, _ = scripted_day(ledger)
    world = build_pay_world(ledger, eventsourcing_env(database_url), box=SecretBox.from_setting(KEYS))
    station = ledger.create_station(world.tenant_id, "Riverside", "1 River Road", 31.23, 121.47, "admin")
    ledger.register_pile(station, PAY_PILE, "DC", 2, "admin")
    tariff = ledger.create_tariff(world.tenant_id, "standard", PRICES, SLOTS, "admin")
    ledger.assign_tariff(tariff, "admin", station_id=station)
    Projections(ledger.applications, eventsourcing_env(database_url)).catch_up()
    with psycopg.connect(database_url) as conn:
        trade = conn.execute("SELECT trade_no FROM orders WHERE tenant_id = %s ORDER BY seq LIMIT 1",
                             (alpha.tenant_id,)).fetchone()[0]
        alarm = conn.execute("SELECT alarm_id FROM alarms WHERE tenant_id = %s LIMIT 1",
                             (alpha.tenant_id,)).fetchone()[0]
    operator_ids = {"station_id": str(alpha.stations[0]), "pile_no": alpha.piles[0], "tariff_id": str(alpha.tariff_id),
                    "trade_no": trade, "alarm_id": alarm}
    operators = {PLATFORM_ADMIN: ("root@test", None, []), TENANT_ADMIN: ("alpha@test", alpha.tenant_id, []),
                 AGENT: ("agent@test", alpha.tenant_id, [alpha.stations[0]])}
    return world, operator_ids, {"tenant_id": str(world.tenant_id)}, operators




def log_in(client: Any, world: PayWorld, ledger: Ledger, driver_ids: dict[str, str],
           operators: dict[str, tuple[str, Any, list[Any]]]) -> dict[str, dict[str, str]]:
    tokens = {}  # operators' tokens are signed per call (Seeded.headers); sign-in itself is an operation schemathesis runs
    code, _ = world.wechat.login_code()
    r = client.post(f"/driver/login/wechat/{world.tenant_id}/wx-main", json={"code": code})
    assert r.status_code == 200, r.text
    tokens["driver"] = {"Authorization": f"Bearer {r.json()['token']}"}
    wallet = client.app.state.payments.wallet_id(world.tenant_id, r.json()["driver_id"])
    # the driver pays a top-up and charges once (closed, so its stream ends at once)
    r = client.post("/driver/wallet/top-ups", json={"amount_fen": 50_00}, headers=tokens["driver"])
    headers, body = world.wechat.payment_notification(r.json()["out_trade_no"])
    assert client.post(f"/pay/wechat/notify/{world.tenant_id}/wx-main", content=body,
                       headers={**headers, "Content-Type": "application/json"}).status_code == 204
    trade = charge(ledger, PAY_PILE, 1, wallet, datetime.now(UTC), minutes=2)
    ledger.force_close(trade, at=datetime.now(UTC), reason="seeded", author="ops")
    driver_ids.update({"trade_no": trade, "out_trade_no": r.json()["out_trade_no"], "app": "wx-main",
                       "provider": "wechat"})
    tokens["none"] = {}
    return tokens


@pytest.fixture
def seeded(ledger: Ledger, database_url: str) -> Iterator[Seeded]:
    world, operator_ids, driver_ids, operators = seed(ledger, database_url)
    settings_ = DriverApiSettings(KEYS, "https://charge.example.com", start_rules=StartRules(5_00, 200_00),
                                  stream_poll=0.02, stream_keepalive=0.05, wechat_api=world.wechat.url,
                                  gateways={"wechat": world.wechat.url, "alipay": world.alipay.gateway})
    app = create_app(ledger, database_url, AuthSettings.generate(), pool_size=4, driver=settings_, api_docs=True)
    with psycopg.connect(database_url) as conn:  # what the app's lifespan does (schemathesis starts it later)
        create_tables(conn, *OPERATOR_USERS_SCHEMA)
    tokens = log_in(TestClient(app), world, ledger, driver_ids, operators)
    try:
        yield Seeded(app, world, tokens, operator_ids, driver_ids, operators)
    finally:
        asgi.shutdown_lifespans()
        world.close()


def roles_for(path: str) -> list[str]:
    if path.startswith("/operator/"):
        return [PLATFORM_ADMIN, TENANT_ADMIN, TENANT_ADMIN, AGENT, "driver", "none"]
    if path.startswith("/driver/login"):
        return ["none"]
    if path.startswith("/driver/"):
        return ["driver", "driver", "driver", TENANT_ADMIN, "none"]
    return ["none"]  # the payment platforms' callbacks


def test_every_operation_conforms_to_the_schema_and_never_fails(seeded: Seeded) -> None:
    # FastAPI ignores query parameters it does not declare, as HTTP allows: not a schema violation here
    config = schemathesis.Config.from_dict({"generation": {"allow-extra-parameters": False}})
    schema = schemathesis.openapi.from_asgi("/openapi.json", seeded.app, config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 45, [op.label for op in operations]
    failures: dict[str, str] = {}
    for operation in operations:
        try:
            exercise(seeded, operation)
        except (Exception, BaseExceptionGroup) as failure:  # noqa: BLE001  (one report for every operation)
            failures[operation.label] = str(failure)[:6000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def headers_negated(case: Any) -> bool:
    header = case.meta.components.get(ParameterLocation.HEADER) if case.meta is not None else None
    return header is not None and header.mode == GenerationMode.NEGATIVE


def exercise(seeded: Seeded, operation: Any) -> None:
    path = operation.path
    known = seeded.driver_ids if path.startswith(("/driver/", "/pay/")) else seeded.operator_ids
    positive, negative = (operation.as_strategy(generation_mode=mode)
                          for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data(), role=st.sampled_from(roles_for(path)), use_known=st.booleans(),
           mode=st.sampled_from(["positive", "positive", "positive", "negative"]))
    def run(data: st.DataObject, role: str, use_known: bool, mode: str) -> None:
        case = data.draw(positive if mode == "positive" else negative)
        if mode == "positive" and use_known and case.path_parameters:
            for name in case.path_parameters:
                if name in known:
                    case.path_parameters[name] = known[name]
        headers = seeded.headers(role)
        if headers_negated(case):
            headers = {}  # the invalid part may be the token itself (missing, malformed): send it as generated
        else:
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"} or None
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
