"""Two chargeledger platforms in one test process, each an API app on its own database with the T/CEC
door mounted: A, an infrastructure operator, and B, a customer platform whose users roam onto A's piles;
linked with one credential set per direction (tests/integration/test_interconnect*.py).

A serves the real ``query_token`` handler and recorded test handlers (``query_station_status``,
idempotent; ``query_start_charge``, never resent; ``notification_stationStatus``, closed to customers;
``query_equip_auth``, which refuses; ``query_station_stats``, which fails)
on a table of its own, so the tests can see whether a call reached a handler; B serves the production
table.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

import psycopg
import pytest
from fastapi.testclient import TestClient

from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.interconnect.client import TcecClient
from adapters.interconnect.door import InterconnectSettings, mount
from adapters.interconnect.handlers import token as token_handlers
from adapters.interconnect.service import Door
from adapters.interconnect.store.directory import Store
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.envelope import ResponseEnvelope, Ret
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.models import codes
from adapters.interconnect.tcec.models.charge import StartChargeResponse
from adapters.interconnect.tcec.models.policy import EquipAuthResponse
from adapters.interconnect.tcec.models.status import (ConnectorStatusInfo, StationStatsResponse, StationStatusAck,
                                                      StationStatusInfo, StationStatusResponse)
from adapters.interconnect.tcec.peer import Peer
from adapters.interconnect.tcec.routing import Call, Handlers, Refusal
from adapters.payments.config import SecretBox
from adapters.postgres.env import eventsourcing_env
from adapters.servers.postgres_server import create_database
from domain.ledger import Ledger

A_ID, B_ID, C_ID = "APLATFORM", "BPLATFORM", "CPLATFORM"  # OperatorIDs: A infrastructure, B and C its customers
BASE_URL = "http://testserver/evcs/v1"
TABLES = ("tcec_tokens_issued", "tcec_tokens_held", "tcec_envelopes_seen")


@dataclass
class Platform:
    name: str
    database_url: str
    ledger: Ledger
    client: TestClient
    door: Door
    tenant_id: UUID
    calls: list[tuple[str, str]] = field(default_factory=list)  # (interface, caller) the test handlers saw

    @property
    def store(self) -> Store:
        return self.door.services.store

    def counts(self) -> dict[str, int]:
        """Rows in each interconnect table that a request could write."""
        with psycopg.connect(self.database_url) as conn:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}

    def post(self, interface: str, envelope: dict[str, Any] | bytes, token: str | None = None) -> ResponseEnvelope:
        headers = {"Content-Type": "application/json;charset=utf-8"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = envelope if isinstance(envelope, bytes) else wire.dumps(envelope).encode()
        response = self.client.post(f"/evcs/v1/{interface}", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json;charset=utf-8"
        return ResponseEnvelope.parse(response.content)


def recorded_handlers(platform: list[Platform]) -> Handlers:
    table = Handlers()
    table.handles("query_token")(token_handlers.query_token)

    @table.handles("query_station_status")
    def station_status(call: Call) -> StationStatusResponse:
        platform[0].calls.append(("query_station_status", call.peer.operator_id))
        infos = [StationStatusInfo(StationID=s, ConnectorStatusInfos=[
            ConnectorStatusInfo(ConnectorID=f"{s}01", Status=codes.ConnectorStatus.IDLE)]) for s in call.request.StationIDs]
        return StationStatusResponse(Total=len(infos), StationStatusInfos=infos)

    @table.handles("query_start_charge")
    def start_charge(call: Call) -> StartChargeResponse:
        platform[0].calls.append(("query_start_charge", call.peer.operator_id))
        return StartChargeResponse(StartChargeSeq=call.request.StartChargeSeq,
                                   StartChargeSeqStat=codes.StartChargeSeqStat.STARTING,
                                   ConnectorID=call.request.ConnectorID, SuccStat=codes.SuccStat.SUCCESS)

    @table.handles("notification_stationStatus")  # served, but open to infrastructure peers only
    def station_status_changed(call: Call) -> StationStatusAck:
        platform[0].calls.append(("notification_stationStatus", call.peer.operator_id))
        return StationStatusAck(Status=codes.NotificationStatus.RECEIVED)

    @table.handles("query_equip_auth")  # a handler's own refusal
    def equip_auth(call: Call) -> EquipAuthResponse:
        platform[0].calls.append(("query_equip_auth", call.peer.operator_id))
        raise Refusal(Ret.BAD_DATA, f"请求的业务参数不合法: no connector {call.request.ConnectorID}")

    @table.handles("query_station_stats")  # a handler that fails
    def station_stats(call: Call) -> StationStatsResponse:
        platform[0].calls.append(("query_station_stats", call.peer.operator_id))
        raise RuntimeError("the statistics view is broken")

    return table


@dataclass
class Link:
    """Both platforms and the peers linking them."""

    a: Platform
    b: Platform
    b_on_a: Peer  # how A knows B (A issued B its inbound set)
    c_on_a: Peer  # a second customer of A
    a_on_b: Peer  # how B knows A (outbound: what A issued B)

    def b_client(self) -> TcecClient:
        """B calling A, through A's app."""
        return TcecClient(self.b.store.peers.get(self.b.tenant_id, A_ID), self.b.store.held, self.a.client)

    def a_client(self) -> TcecClient:
        """A calling B, through B's app."""
        return TcecClient(self.a.store.peers.get(self.a.tenant_id, B_ID), self.a.store.held, self.b.client)


def now() -> datetime:
    return datetime.now(timezone.utc)


def _platform(server_url: str, name: str, handlers: Handlers | None, box: str) -> Iterator[Platform]:
    database = f"t_tcec_{name}_{uuid.uuid4().hex[:8]}"
    url = create_database(server_url, database)
    ledger = Ledger(eventsourcing_env(url))
    app = create_app(ledger, url, AuthSettings.generate(), pool_size=3)
    door = mount(app, InterconnectSettings(box), handlers=handlers)
    try:
        with TestClient(app) as client:
            yield Platform(name, url, ledger, client, door, uuid.uuid4())
    finally:
        ledger.close()
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def link(servers: tuple[str, str]) -> Iterator[Link]:
    holder: list[Platform] = []
    a_gen = _platform(servers[0], "a", recorded_handlers(holder), SecretBox.generate_setting("a1"))
    b_gen = _platform(servers[0], "b", None, SecretBox.generate_setting("b1"))
    a, b = next(a_gen), next(b_gen)
    holder.append(a)
    b_on_a = a.store.peers.configure(a.tenant_id, B_ID, our_operator_id=A_ID, base_url=BASE_URL, role=Role.CUSTOMER,
                                     name="平台B")
    c_on_a = a.store.peers.configure(a.tenant_id, C_ID, our_operator_id=A_ID, base_url=BASE_URL, role=Role.CUSTOMER)
    a_on_b = b.store.peers.configure(b.tenant_id, A_ID, our_operator_id=B_ID, base_url=BASE_URL,
                                     role=Role.INFRASTRUCTURE, outbound=b_on_a.inbound)
    b_on_a = a.store.peers.set_outbound(a.tenant_id, B_ID, a_on_b.inbound)
    yield Link(a, b, b_on_a, c_on_a, a_on_b)
    for gen in (b_gen, a_gen):
        gen.close()
