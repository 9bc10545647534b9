"""``chargeledger peers`` for the infrastructure operator's side: a peer's charge status interval, a station's
T/CEC details, the link health of each peer's pushes and the orders it disputed."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from psycopg_pool import ConnectionPool

from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.outbox import Dispute, Push
from adapters.interconnect.tcec.models.status import ConnectorStatusInfo, StationStatusNotification
from adapters.payments.config import SecretBox
from domain.ledger import Ledger
from projections.runner import Projections
from adapters.postgres.env import eventsourcing_env
from tests.factories import build_world
from tests.integration.test_interconnect_cli import KEYS, cli, run  # noqa: F401

ADD = ["peers", "add", "BPLATFORM", "--our-operator-id", "APLATFORM", "--base-url", "https://b.example.com/evcs/v1",
       "--role", "customer"]


def test_a_peer_with_its_interval_a_station_profile_link_health_and_disputes(
        cli: str, ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    world = build_world(ledger)
    tenant = str(world.tenant_id)
    assert run(monkeypatch, [*ADD, "--tenant", tenant, "--status-interval", "30"]) == 0
    assert run(monkeypatch, [*ADD, "--tenant", tenant, "--status-interval", "3601"]) == 2  # refused, said why
    assert "status_interval" in capsys.readouterr().err
    station = ["peers", "station", str(world.station_id), "--tenant", tenant, "--area-code", "310115",
               "--service-tel", "021-55550000", "--park-nums", "12"]
    assert run(monkeypatch, station) == 2  # the catalogue view does not have the station yet
    with Projections(ledger.applications, eventsourcing_env(cli)) as views:
        views.catch_up()
    assert run(monkeypatch, station) == 0
    assert run(monkeypatch, [*station[:2], str(uuid.uuid4()), *station[3:]]) == 2  # not this tenant's station
    assert run(monkeypatch, [*station[:6], "3101", *station[7:]]) == 2  # not 6 digits
    now = datetime.now(timezone.utc)
    with ConnectionPool(cli, min_size=1, max_size=1, open=True) as pool:
        store = Store(pool, SecretBox.from_setting(KEYS))
        peer = store.peers.get(world.tenant_id, "BPLATFORM")
        assert peer.status_interval == 30
        with pool.connection() as conn:
            assert conn.execute("SELECT area_code, service_tel, park_nums FROM tcec_station_profiles").fetchall() == [
                ("310115", "021-55550000", 12)]
        push = Push("notification_stationStatus", "status:x", StationStatusNotification(
            ConnectorStatusInfo=ConnectorStatusInfo(ConnectorID="3201060001923601", Status=1)))
        assert store.outbox.enqueue(peer.peer_id, push, now) and not store.outbox.enqueue(peer.peer_id, push, now)
        store.outbox.record_disputes(peer.peer_id, "check:2026-11-22", [Dispute(
            "BPLATFORM000000000000000001", 2, str(Decimal("5.2345")), "6.99")], now)
    capsys.readouterr()
    assert run(monkeypatch, ["peers", "outbox", "--tenant", tenant]) == 0
    assert "BPLATFORM  pending=1 delivered=0 failed=0" in capsys.readouterr().out
    assert run(monkeypatch, ["peers", "outbox", "--tenant", tenant, "--rows", "BPLATFORM"]) == 0
    assert "notification_stationStatus" in capsys.readouterr().out
    assert run(monkeypatch, ["peers", "disputes", "--tenant", tenant]) == 0
    assert "BPLATFORM000000000000000001  reason 2  power 5.2345  money 6.99" in capsys.readouterr().out
