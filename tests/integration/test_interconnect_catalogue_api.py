"""The driver API's roaming stations over B's catalogue of A's piles (pulled through A's door): the list with
free/total connectors, nearest first; a station's connectors with the price now, exact, in China time; another
tenant's driver, a disabled peer and an unknown station answer 404. And ``chargeledger peers pull`` on B's
database against A served over HTTP."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from adapters.api.app import create_app
from adapters.api.auth import AuthSettings
from adapters.api.guards import ServerSettings
from adapters.interconnect.customer.browse import price_now
from adapters.interconnect.door import InterconnectSettings, mount
from adapters.interconnect.mapping import connector_code, station_code
from adapters.interconnect.store.peers import KEYS_SETTING
from adapters.interconnect.tcec.interfaces import Role
from adapters.interconnect.tcec.models.policy import PolicyInfo
from app import main
from domain.tariff import TIERS
from tests.factories import PRICES, SLOTS
from tests.http_server import serving
from tests.integration.catalogue_harness import (  # noqa: F401
    A_ID,
    A_KEYS,
    B_KEYS,
    Catalogue,
    catalogue,
)
from tests.integration.roaming_harness import B_ID

LIST, GUN1 = "/driver/roaming/stations", connector_code("32010600019236", 1)


def yuan(units: int) -> str:
    return str((Decimal(units) / 100000).quantize(Decimal("0.0001")))


def test_the_price_now_is_the_period_in_force_in_china_time_wrapping_midnight() -> None:
    policy = [PolicyInfo(StartTime="080000", ElecPrice=Decimal("0.7"), SevicePrice=Decimal("0.4000")),
              PolicyInfo(StartTime="220000", ElecPrice=Decimal("0.3000"), SevicePrice=Decimal("0.2"))]
    at = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # 07:30 on Dec 1 in Shanghai: yesterday's 22:00 period
    assert price_now(policy, at) == {"from": "2026-11-30T22:00:00+08:00", "until": "2026-12-01T08:00:00+08:00",
                                     "electricity": "0.3000", "service": "0.2000", "total": "0.5000"}
    assert price_now(policy, datetime(2026, 12, 1, 0, 0, tzinfo=UTC))["total"] == "1.1000"  # 08:00 exactly
    assert price_now([], at) is None


def test_b_drivers_browse_a_stations_and_nobody_else_sees_them(catalogue: Catalogue) -> None:
    a = catalogue.a.ledger
    near = a.create_station(catalogue.world.tenant_id, "近站", "9 Near Road", 30.0, 120.0, "admin")
    catalogue.views()
    assert catalogue.pull().complete
    driver = catalogue.driver()
    mine, close = station_code(catalogue.world.station_id), station_code(near)

    listed = catalogue.get(LIST, driver)
    assert listed.status_code == 200, listed.text
    stations = {s["station_id"]: s for s in listed.json()["stations"]}
    assert stations[mine] == {"operator_id": A_ID, "station_id": mine, "name": "Station 1", "address": "1 Test Road",
                              "latitude": "31.230000", "longitude": "121.470000", "station_status": 50,
                              "connectors": {"free": 1, "total": 2}, "distance_m": None}  # gun 1 is plugged in
    assert stations[close]["connectors"] == {"free": 0, "total": 0}
    by_distance = catalogue.get(LIST, driver, near="30.01,120.0", limit=2).json()["stations"]
    assert [s["station_id"] for s in by_distance] == [close, mine]
    assert 1_000 < by_distance[0]["distance_m"] < 1_200  # 0.01 degree of latitude: 1.11 km
    assert [s["station_id"] for s in catalogue.get(LIST, driver, near="31.23,121.47", limit=1).json()["stations"]] \
        == [mine]
    for bad in ("31.23", "91,121", "31.23,181", "a,b"):
        refused = catalogue.get(LIST, driver, near=bad)
        assert refused.status_code == 422 and "near" in refused.text, bad

    before = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    detail = catalogue.get(f"{LIST}/{A_ID}/{mine}", driver)
    after = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    assert detail.status_code == 200, detail.text
    body = detail.json()
    assert (body["name"], body["timezone"]) == ("Station 1", "Asia/Shanghai")
    gun1, gun2 = body["connectors"]
    assert (gun1["connector_id"], gun1["status"], gun2["status"]) == (GUN1, "occupied", "idle")
    now = gun1["price_now"]
    expected = {TIERS[SLOTS[t.hour * 2 + t.minute // 30]] for t in (before, after)}  # the server read its clock
    assert any((now["electricity"], now["service"], now["total"]) == (
        yuan(PRICES[tier]["electricity"]), yuan(PRICES[tier]["service"]),
        yuan(PRICES[tier]["electricity"] + PRICES[tier]["service"])) for tier in expected), now
    assert datetime.fromisoformat(now["from"]) <= after and datetime.fromisoformat(now["until"]) > before
    assert gun1["periods"][2] == {"start": "100000", "electricity": "1.0000", "service": "0.5000"}

    stranger = catalogue.driver(uuid.uuid4())  # a driver of another tenant of B's
    assert catalogue.get(LIST, stranger).json() == {"stations": []}
    assert catalogue.get(f"{LIST}/{A_ID}/{mine}", stranger).status_code == 404
    for path in (f"{LIST}/{A_ID}/nope", f"{LIST}/ZPLATFORM/{mine}"):
        assert catalogue.get(path, driver).json()["code"] == "not_found"
    assert catalogue.get(f"{LIST}/{A_ID}/{'x' * 21}", driver).status_code == 422
    assert catalogue.get(LIST, {}).status_code == 401

    catalogue.b.store.peers.configure(catalogue.b.tenant_id, A_ID, our_operator_id=B_ID,
                                      base_url="http://testserver/evcs/v1", role=Role.INFRASTRUCTURE, enabled=False)
    assert catalogue.get(LIST, driver).json() == {"stations": []}  # a disabled peer's piles are hidden
    assert catalogue.get(f"{LIST}/{A_ID}/{mine}", driver).status_code == 404
    assert catalogue.b.store.peer_catalogue.find_connector(catalogue.b.tenant_id, A_ID, mine, GUN1) is None


def test_peers_pull_from_the_command_line(catalogue: Catalogue, nats_url: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", catalogue.b.database_url)
    monkeypatch.setenv("NATS_URL", nats_url)
    monkeypatch.setenv("CHARGELEDGER_VAR", str(tmp_path))
    monkeypatch.setenv(KEYS_SETTING, B_KEYS)
    tenant = str(catalogue.b.tenant_id)
    app = create_app(catalogue.a.ledger, catalogue.a.database_url, AuthSettings.generate(), pool_size=2)
    mount(app, InterconnectSettings(A_KEYS))
    with serving(app, ServerSettings()) as port:
        catalogue.b.store.peers.configure(catalogue.b.tenant_id, A_ID, our_operator_id=B_ID, role="infrastructure",
                                          base_url=f"http://127.0.0.1:{port}/evcs/v1")
        assert main(["peers", "pull", A_ID, "--tenant", tenant]) == 0
        assert capsys.readouterr().out.startswith(f"{A_ID}: complete, 1 stations, 2 statuses, 2 policies, 0 errors")
        assert catalogue.connectors()[GUN1]["policy"]
        catalogue.b.store.peers.configure(catalogue.b.tenant_id, A_ID, our_operator_id=B_ID, role="infrastructure",
                                          base_url="http://127.0.0.1:9/evcs/v1")  # nobody listens there
        assert main(["peers", "pull", A_ID, "--tenant", tenant]) == 1
        printed = capsys.readouterr().out
        assert f"{A_ID}: INCOMPLETE, 0 stations" in printed and "ConnectError" in printed
    assert main(["peers", "pull", "ZPLATFORM", "--tenant", tenant]) == 2  # not a peer
    catalogue.b.store.peers.configure(catalogue.b.tenant_id, "CPLATFORM", our_operator_id=B_ID, role="customer",
                                      base_url="http://127.0.0.1:9/evcs/v1")
    assert main(["peers", "pull", "CPLATFORM", "--tenant", tenant]) == 2
    assert "only an infrastructure peer" in capsys.readouterr().err
