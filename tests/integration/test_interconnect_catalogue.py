"""We as customer platform: B pulls A's catalogue (stations paged and since the last complete pull, connector
statuses, business policies to the fen) through A's door with the production handlers; A's status pushes
update B's view, never with an older status; a peer answering garbage or data that does not fit the model
does not stop B's pull of the others."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import httpx

from adapters.interconnect.client import TcecClient
from adapters.interconnect.customer.catalogue import Pulls
from adapters.interconnect.mapping import connector_code, station_code
from adapters.interconnect.outbox.role import OutboxRole
from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.models.stations import StationInfo
from adapters.interconnect.tcec.models.status import (
    ConnectorStatusInfo,
    StationStatusAck,
    StationStatusNotification,
)
from tests.integration.catalogue_harness import (  # noqa: F401
    A_ID,
    Z_ID,
    Catalogue,
    catalogue,
    later,
    now,
    signed,
    token_answer,
)
from tests.integration.roaming_harness import B_ID, online

PILE2 = "32010600019237"
GUN1, GUN2 = connector_code("32010600019236", 1), connector_code("32010600019236", 2)


def test_b_pulls_a_catalogue_page_by_page_then_only_what_changed(catalogue: Catalogue) -> None:
    a = catalogue.a.ledger
    second = a.create_station(catalogue.world.tenant_id, "第二站", "2 Test Road", 31.2, 121.4, "admin")
    a.assign_tariff(catalogue.world.tariff_id, "admin", station_id=second)
    catalogue.views()
    catalogue.age_a_stations()
    first = catalogue.pull(page_size=1)  # two pages of one station
    assert (first.complete, first.stations, first.errors) == (True, 2, [])
    assert first.statuses == 2 and first.policies == 2
    mine, theirs = station_code(catalogue.world.station_id), station_code(second)
    assert catalogue.b.store.peer_catalogue.station_ids(catalogue.a_on_b.peer_id) == sorted([mine, theirs])
    assert catalogue.connectors() == {
        GUN1: {"station": mine, "status": 2, "policy": True, "policy_error": None},  # plugged in, not charging
        GUN2: {"station": mine, "status": 1, "policy": True, "policy_error": None}}
    found = catalogue.b.store.peer_catalogue.find_connector(catalogue.b.tenant_id, A_ID, mine, GUN1)
    assert found is not None and found.equipment_id == "32010600019236"
    assert [(p.StartTime, str(p.ElecPrice), str(p.SevicePrice)) for p in found.policy or []] == [
        ("000000", "0.3000", "0.2000"), ("080000", "0.7000", "0.4000"), ("100000", "1.0000", "0.5000"),
        ("120000", "1.2000", "0.6000"), ("140000", "0.7000", "0.4000"), ("180000", "1.0000", "0.5000"),
        ("220000", "0.3000", "0.2000")]
    info = StationInfo.from_wire(wire.loads(catalogue.b.store.peer_catalogue.station(
        catalogue.b.tenant_id, A_ID, mine)["info"]))
    assert (info.StationName, info.StationLat, info.StationLng) == ("Station 1", Decimal("31.230000"),
                                                                     Decimal("121.470000"))

    a.register_pile(second, PILE2, "AC", 1, "admin")  # a change at the second station only
    catalogue.views()
    again = catalogue.pull(page_size=1)
    assert (again.complete, again.stations, again.policies) == (True, 1, 1)  # only the changed station, and its gun
    assert catalogue.connectors()[connector_code(PILE2, 1)] == {"station": theirs, "status": 0, "policy": True,
                                                              "policy_error": None}  # offline: never connected
    assert catalogue.b.store.peer_catalogue.find_connector(catalogue.b.tenant_id, A_ID, theirs, GUN1) is None
    last = catalogue.b.store.peer_catalogue.last_pull(catalogue.a_on_b.peer_id)
    assert last is not None and last["complete"] and "complete, 1 stations" in last["report"]


def test_a_status_push_updates_b_view_and_an_older_status_never_overwrites_a_newer(catalogue: Catalogue) -> None:
    assert catalogue.pull().complete
    outbox = OutboxRole(catalogue.a.ledger, catalogue.a.database_url, catalogue.a.store,
                        http_for=lambda peer: catalogue.b.client)
    outbox.step()  # the gun statuses A pushes: what B pulled already
    catalogue.a.ledger.report_gun(catalogue.world.pile_no, 2, "charging", True, {}, now())
    outbox.step()
    assert catalogue.connectors()[GUN2]["status"] == 3
    statuses = catalogue.b.store.peer_catalogue
    peer_id = catalogue.a_on_b.peer_id
    assert statuses.save_status(peer_id, [(GUN2, 1)], now() - timedelta(seconds=5)) == 0  # arrived before: stale
    assert catalogue.connectors()[GUN2]["status"] == 3
    assert statuses.save_status(peer_id, [(GUN2, 255)], later(1)) == 1
    assert catalogue.connectors()[GUN2]["status"] == 255
    outbox.close()


def test_a_status_for_a_connector_not_yet_known_is_kept_and_the_next_pull_joins_it(catalogue: Catalogue) -> None:
    a = catalogue.a.ledger
    station = a.create_station(catalogue.world.tenant_id, "新站", "3 Test Road", 31.1, 121.3, "admin")
    a.register_pile(station, PILE2, "DC", 1, "admin")
    catalogue.views()
    push = StationStatusNotification(ConnectorStatusInfo=ConnectorStatusInfo(ConnectorID=connector_code(PILE2, 1),
                                                                             Status=4))
    a_to_b = TcecClient(catalogue.a.store.peers.get(catalogue.world.tenant_id, B_ID), catalogue.a.store.held,
                        catalogue.b.client)  # A calling B's door
    assert a_to_b.call("notification_stationStatus", push) == StationStatusAck(Status=0)
    assert catalogue.connectors()[connector_code(PILE2, 1)] == {"station": None, "status": 4, "policy": False,
                                                              "policy_error": None}
    assert catalogue.b.store.received.of(catalogue.a_on_b.peer_id, "notification_stationStatus")  # recorded too
    assert catalogue.pull().complete
    joined = catalogue.b.store.peer_catalogue.find_connector(catalogue.b.tenant_id, A_ID, station_code(station),
                                                             connector_code(PILE2, 1))
    assert joined is not None and joined.status == 0  # the pull's status, which arrived after the push


def test_a_peer_answering_garbage_or_bad_data_does_not_stop_the_pulls_of_the_others(catalogue: Catalogue) -> None:
    asked: list[str] = []
    z_holder: list = []

    def z(request: httpx.Request) -> httpx.Response:
        interface = request.url.path.rsplit("/", 1)[1]
        asked.append(interface)
        if interface == "query_token":
            return token_answer(z_holder[0])
        if len(asked) == 2:  # a numeric StationID: does not fit the model
            return signed(z_holder[0], {"PageNo": 1, "PageCount": 1, "ItemSize": 1, "StationInfos": [
                {"StationID": 12, "OperatorID": Z_ID}]})
        return httpx.Response(200, content=b"<html>502 Bad Gateway</html>")

    peer_z, z_http = catalogue.add_z(z)
    z_holder.append(peer_z)
    pulls = Pulls(catalogue.b.store, timedelta(minutes=10),
                  http_for=lambda peer: z_http if peer.operator_id == Z_ID else catalogue.a.client)
    reports = {r.operator_id: r for r in pulls.step()}
    assert reports[A_ID].complete and reports[A_ID].stations == 1 and not reports[A_ID].errors
    bad = reports[Z_ID]
    assert not bad.complete and bad.stations == 0
    assert "StationID" in bad.errors[0] and "ids are JSON strings" in bad.errors[0]
    assert catalogue.b.store.peer_catalogue.station_ids(peer_z.peer_id) == []
    assert pulls.step(later(60)) == []  # each peer once per interval
    second = {r.operator_id: r for r in pulls.step(later(601))}
    (garbage,) = second[Z_ID].errors  # garbage this time: not an envelope, reported; nothing else to ask
    assert garbage.startswith("query_stations_info page 1: ") and not second[Z_ID].complete
    assert second[A_ID].complete
    catalogue.b.store.peers.configure(catalogue.b.tenant_id, Z_ID, our_operator_id="BPLATFORM",
                                      base_url="http://z.test/evcs/v1", role="infrastructure", enabled=False)
    assert Z_ID not in {r.operator_id for r in pulls.step(later(1300))}  # a disabled peer is not pulled
    z_http.close()


def test_the_outbox_role_pulls_every_interval(catalogue: Catalogue) -> None:
    catalogue.age_a_stations()
    role = OutboxRole(catalogue.b.ledger, catalogue.b.database_url, catalogue.b.store,
                      http_for=lambda peer: catalogue.a.client, pull_every=timedelta(seconds=600))
    assert role.pulls is not None
    assert [r.complete for r in role.pulls.step(now())] == [True]
    assert role.pulls.step(later(300)) == []
    assert [r.stations for r in role.pulls.step(later(601))] == [0]  # nothing changed since
    online(catalogue.a.ledger, catalogue.world.pile_no, plugged=False)
    catalogue.views()
    role.pulls.step(later(1202))
    assert catalogue.connectors()[GUN1]["status"] == 1  # the refreshed status: plugged out, idle
    role.close()
