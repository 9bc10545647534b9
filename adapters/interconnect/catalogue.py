"""Our stations, piles and guns as T/CEC's StationInfo, connector statuses and station statistics, read
from the views the operator API reads (``catalogue_stations``, ``live_piles``, ``live_guns``,
``orders``; projections/), always within one tenant: the peer's.

What the registry does not keep comes from the station's profile (``store/profiles.py``) or is a
nominal value of the pile's kind (:data:`NOMINAL`), documented in docs/interconnect.md. Coordinates
are sent as the operator entered them (stations in China are entered in GCJ-02, as map providers
give them); texts are fitted to T/CEC's lengths and characters (:func:`fit`), never refused: a station
whose address has a line break is still listed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row

from adapters.interconnect.amounts import kwh
from adapters.interconnect.mapping import connector_code, connector_status, station_code, station_range
from adapters.interconnect.store.profiles import DEFAULTS
from adapters.interconnect.tcec.envelope import SHANGHAI
from adapters.interconnect.tcec.models import codes
from adapters.interconnect.tcec.models.stations import ConnectorInfo, EquipmentInfo, StationInfo
from adapters.interconnect.tcec.models.status import (ConnectorStatsInfo, ConnectorStatusInfo, EquipmentStatsInfo,
                                                      StationStats, StationStatusInfo)
from domain.text import REFUSED


@dataclass(frozen=True)
class Nominal:
    equipment_type: codes.EquipmentType
    connector_type: codes.ConnectorType
    voltage_upper: Decimal
    voltage_lower: Decimal
    current: Decimal
    power: Decimal  # kW


NOMINAL = {  # the registry keeps a pile's kind, not its ratings: these are what a peer is told
    "DC": Nominal(codes.EquipmentType.DC, codes.ConnectorType.DC_GUN, Decimal(750), Decimal(200), Decimal(250),
                  Decimal(60)),
    "AC": Nominal(codes.EquipmentType.AC, codes.ConnectorType.AC_PLUG, Decimal(220), Decimal(220), Decimal(32),
                  Decimal(7)),
}
STATION_COLUMNS = ("s.station_id, s.name, s.address, s.latitude, s.longitude, p.area_code, p.service_tel, "
                   "p.station_type, p.construction, p.park_nums")


def fit(text: str | None, limit: int) -> str:
    """A view's text as a T/CEC text field: control characters (line breaks) as spaces, at most ``limit``."""
    cleaned = " ".join(REFUSED.sub(" ", text or "").split())
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1] + "\u2026"


def coordinate(value: float) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal("0.000001"))


def query(pool: Any, sql: str, params: Any) -> list[dict[str, Any]]:
    with pool.connection() as conn:
        return conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()  # type: ignore[arg-type]


def stations_page(pool: Any, tenant_id: UUID, operator_id: str, since: datetime | None, page: int,
                  size: int) -> tuple[int, list[StationInfo]]:
    """(how many stations changed since ``since`` (all if None), the ``page``-th ``size`` of them)."""
    where = ("s.tenant_id = %(t)s AND (%(since)s::timestamptz IS NULL OR s.updated_at >= %(since)s "
             "OR p.updated_at >= %(since)s OR EXISTS (SELECT 1 FROM live_piles l WHERE l.station_id = s.station_id "
             "AND l.registered_at >= %(since)s))")
    params = {"t": tenant_id, "since": since, "size": size, "skip": (page - 1) * size}
    base = f"FROM catalogue_stations s LEFT JOIN tcec_station_profiles p USING (station_id) WHERE {where}"
    total = query(pool, f"SELECT count(*) AS n {base}", params)[0]["n"]  # noqa: S608 - fixed SQL
    rows = query(pool, f"SELECT {STATION_COLUMNS} {base} ORDER BY s.station_id LIMIT %(size)s OFFSET %(skip)s",
                 params)  # noqa: S608
    piles = _piles(pool, tenant_id, [r["station_id"] for r in rows])
    return total, [station_info(row, piles.get(row["station_id"], []), operator_id) for row in rows]


def _piles(pool: Any, tenant_id: UUID, station_ids: list[UUID]) -> dict[UUID, list[dict[str, Any]]]:
    by_station: dict[UUID, list[dict[str, Any]]] = defaultdict(list)
    for row in query(pool, "SELECT station_id, pile_no, kind, gun_count, enabled, online FROM live_piles "
                           "WHERE tenant_id = %s AND station_id = ANY(%s) ORDER BY pile_no", (tenant_id, station_ids)):
        by_station[row["station_id"]].append(row)
    return by_station


def station_info(row: dict[str, Any], piles: list[dict[str, Any]], operator_id: str) -> StationInfo:
    """A station as StationInfo: ``row`` has its registry facts and profile (:data:`STATION_COLUMNS`, the
    profile's columns None for the defaults), ``piles`` its piles (pile_no, kind, gun_count, enabled). The
    answer of ``query_stations_info`` (from the views) and the regulators' push (from the outbox's fold)."""
    def value(name: str) -> Any:
        return row[name] if row[name] is not None else getattr(DEFAULTS, name)

    status = (codes.StationStatus.IN_USE if any(p["enabled"] for p in piles) else
              codes.StationStatus.CLOSED if piles else codes.StationStatus.UNKNOWN)
    return StationInfo(
        StationID=station_code(row["station_id"]), OperatorID=operator_id, EquipmentOwnerID=operator_id,
        StationName=fit(row["name"], 100) or station_code(row["station_id"]), CountryCode="CN",
        AreaCode=value("area_code"), Address=fit(row["address"], 200), ServiceTel=fit(value("service_tel"), 30),
        StationType=value("station_type"), StationStatus=status, ParkNums=value("park_nums"),
        StationLng=coordinate(row["longitude"]), StationLat=coordinate(row["latitude"]),
        Construction=value("construction"), EquipmentInfos=[_equipment(p) for p in piles])


def _equipment(pile: dict[str, Any]) -> EquipmentInfo:
    nominal = NOMINAL[pile["kind"]]
    return EquipmentInfo(
        EquipmentID=pile["pile_no"], EquipmentType=nominal.equipment_type, Power=nominal.power,
        ConnectorInfos=[ConnectorInfo(
            ConnectorID=connector_code(pile["pile_no"], gun), ConnectorName=f"{gun}", ConnectorType=nominal.connector_type,
            VoltageUpperLimits=nominal.voltage_upper, VoltageLowerLimits=nominal.voltage_lower,
            Current=nominal.current, Power=nominal.power, NationalStandard=codes.NationalStandard.GBT_2015)
            for gun in range(1, pile["gun_count"] + 1)])


def find_stations(pool: Any, tenant_id: UUID, codes_asked: list[str]) -> dict[str, UUID]:
    """StationID -> station uuid, for the asked StationIDs that name exactly one station of the tenant."""
    asked = {code: bounds for code in dict.fromkeys(codes_asked) if (bounds := station_range(code)) is not None}
    if not asked:
        return {}
    rows = query(pool, "SELECT a.code, s.station_id FROM unnest(%s::text[], %s::uuid[], %s::uuid[]) AS a(code, lo, hi) "
                       "JOIN catalogue_stations s ON s.station_id BETWEEN a.lo AND a.hi AND s.tenant_id = %s",
                 (list(asked), [b[0] for b in asked.values()], [b[1] for b in asked.values()], tenant_id))
    matches: dict[str, list[UUID]] = defaultdict(list)
    for row in rows:  # one index range per StationID, in one query
        matches[row["code"]].append(row["station_id"])
    return {code: matches[code][0] for code in asked if len(matches[code]) == 1}


def station_statuses(pool: Any, tenant_id: UUID, codes_asked: list[str]) -> list[StationStatusInfo]:
    """Each asked station of the tenant with every connector's status, in the order asked."""
    stations = find_stations(pool, tenant_id, codes_asked)
    guns = query(pool, "SELECT g.station_id, g.pile_no, g.gun_no, g.status, g.plugged, g.faults, p.enabled, p.online "
                       "FROM live_guns g JOIN live_piles p USING (pile_no) WHERE g.tenant_id = %s AND "
                       "g.station_id = ANY(%s) ORDER BY g.pile_no, g.gun_no", (tenant_id, list(stations.values())))
    by_station: dict[UUID, list[ConnectorStatusInfo]] = defaultdict(list)
    for g in guns:
        by_station[g["station_id"]].append(ConnectorStatusInfo(
            ConnectorID=connector_code(g["pile_no"], g["gun_no"]),
            Status=connector_status(enabled=g["enabled"], online=g["online"], status=g["status"],
                                    plugged=g["plugged"], faults=g["faults"])))
    return [StationStatusInfo(StationID=code, ConnectorStatusInfos=by_station.get(station_id, []))
            for code, station_id in stations.items()]


def station_stats(pool: Any, tenant_id: UUID, station_id: UUID, code: str, first: date, last: date) -> StationStats:
    """Energy of the station's billed sessions that closed from ``first`` to ``last`` (China days), per
    pile and gun, from the orders view."""
    since = datetime.combine(first, time(), SHANGHAI)
    until = datetime.combine(last + timedelta(days=1), time(), SHANGHAI)
    guns = query(pool, "SELECT pile_no, gun_no FROM live_guns WHERE tenant_id = %s AND station_id = %s "
                       "ORDER BY pile_no, gun_no", (tenant_id, station_id))
    energy = {(r["pile_no"], r["gun_no"]): int(r["energy"]) for r in query(
        pool, "SELECT pile_no, gun_no, sum(energy) AS energy FROM orders WHERE tenant_id = %s AND station_id = %s "
              "AND state IN ('finished', 'abandoned') AND settled_at >= %s AND settled_at < %s GROUP BY pile_no, gun_no",
        (tenant_id, station_id, since, until))}
    piles: dict[str, list[ConnectorStatsInfo]] = defaultdict(list)
    for g in guns:
        piles[g["pile_no"]].append(ConnectorStatsInfo(ConnectorID=connector_code(g["pile_no"], g["gun_no"]),
                                                      ConnectorElectricity=kwh(energy.get((g["pile_no"], g["gun_no"]), 0))))
    equipment = [EquipmentStatsInfo(EquipmentID=pile_no, ConnectorStatsInfos=infos,
                                    EquipmentElectricity=sum((c.ConnectorElectricity for c in infos), Decimal(0)))
                 for pile_no, infos in piles.items()]
    return StationStats(StationID=code, StartTime=first, EndTime=last,
                        StationElectricity=sum((e.EquipmentElectricity for e in equipment), Decimal(0)),
                        EquipmentStatsInfos=equipment)


def page_count(total: int, size: int) -> int:
    return math.ceil(total / size) if total else 0
