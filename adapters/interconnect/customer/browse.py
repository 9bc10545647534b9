"""A peer's catalogue as our driver API shows it: the stations of a tenant's infrastructure peers (near a place),
and one station's connectors with their status and the price in force now.

The driver API (``adapters/api/driver/roaming_stations.py``) does not import the interconnect: the door's
``mount`` puts a :class:`RoamingCatalogue` on ``app.state.roaming_catalogue`` and the API calls it.

The price now comes from the connector's ``PolicyInfos`` as the peer gave them: each period runs from its
``StartTime`` (``HHmmss``, the station's local time, Asia/Shanghai: T/CEC has no other) to the next one's;
before the first ``StartTime`` of the day the day's last period still runs (a policy not starting at
``000000`` wraps around midnight). Electricity plus service, yuan/kWh, exact: the peer's 4 decimals added,
never rounded, as decimal strings.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from itertools import pairwise
from decimal import Decimal
from typing import Any
from uuid import UUID

from adapters.interconnect.store.directory import Store
from adapters.interconnect.store.peer_catalogue import PeerConnector
from adapters.interconnect.tcec.envelope import SHANGHAI
from adapters.interconnect.tcec.models.codes import ConnectorStatus
from adapters.interconnect.tcec.models.policy import PolicyInfo

PLACES = Decimal("0.0001")
STATUS_NAMES = {ConnectorStatus.OFFLINE: "offline", ConnectorStatus.IDLE: "idle", ConnectorStatus.OCCUPIED: "occupied",
                ConnectorStatus.CHARGING: "charging", ConnectorStatus.RESERVED: "reserved",
                ConnectorStatus.FAULT: "fault"}


def _at(day: datetime, start: str) -> datetime:
    return datetime.combine(day.date(), time(int(start[:2]), int(start[2:4]), int(start[4:])), SHANGHAI)


def price_now(policy: list[PolicyInfo], now: datetime) -> dict[str, Any] | None:
    """The period of ``policy`` in force at ``now``: its prices (yuan/kWh strings) and its bounds in local time."""
    if not policy:
        return None
    local = now.astimezone(SHANGHAI)
    starts = [(_at(local - timedelta(days=1), p.StartTime), p) for p in policy[-1:]]
    starts += [(_at(local, p.StartTime), p) for p in policy] + [(_at(local + timedelta(days=1), policy[0].StartTime),
                                                                 policy[0])]
    for (since, period), (until, _) in pairwise(starts):
        if since <= local < until:
            elec, service = period.ElecPrice.quantize(PLACES), period.SevicePrice.quantize(PLACES)
            return {"from": since.isoformat(), "until": until.isoformat(), "electricity": str(elec),
                    "service": str(service), "total": str(elec + service)}
    raise AssertionError("the periods cover the day")  # pragma: no cover - the first and last bound it


def _coordinates(row: dict[str, Any]) -> dict[str, str]:
    return {"latitude": str(row["lat"]), "longitude": str(row["lng"])}


def _connector(c: PeerConnector, now: datetime) -> dict[str, Any]:
    status = None if c.status is None else STATUS_NAMES.get(ConnectorStatus(c.status), str(c.status))
    return {"connector_id": c.connector_id, "equipment_id": c.equipment_id,
            "status": status, "status_code": c.status,
            "status_at": None if c.status_at is None else c.status_at.isoformat(),
            "price_now": None if c.policy is None else price_now(c.policy, now),
            "policy_at": None if c.policy_at is None else c.policy_at.isoformat(),
            "periods": None if c.policy is None else [
                {"start": p.StartTime, "electricity": str(p.ElecPrice.quantize(PLACES)),
                 "service": str(p.SevicePrice.quantize(PLACES))} for p in c.policy]}


class RoamingCatalogue:
    """What the driver API asks of a tenant's peers' catalogues (every answer within that tenant only)."""

    def __init__(self, store: Store) -> None:
        self.catalogue = store.peer_catalogue

    def stations(self, tenant_id: UUID, near: tuple[Decimal, Decimal] | None, limit: int) -> list[dict[str, Any]]:
        return [{"operator_id": r["operator_id"], "station_id": r["station_id"], "name": r["name"],
                 "address": r["address"], **_coordinates(r), "station_status": r["station_status"],
                 "connectors": {"free": r["free"], "total": r["total"]},
                 "distance_m": None if r["distance_m"] is None else round(r["distance_m"])}
                for r in self.catalogue.stations(tenant_id, near, limit)]

    def station(self, tenant_id: UUID, operator_id: str, station_id: str, now: datetime) -> dict[str, Any] | None:
        row = self.catalogue.station(tenant_id, operator_id, station_id)
        if row is None:
            return None
        connectors = [_connector(c, now) for c in self.catalogue.connectors(tenant_id, operator_id, station_id)]
        return {"operator_id": operator_id, "station_id": station_id, "name": row["name"], "address": row["address"],
                **_coordinates(row), "station_status": row["station_status"], "timezone": "Asia/Shanghai",
                "updated_at": row["updated_at"].isoformat(),
                "connectors": connectors}
