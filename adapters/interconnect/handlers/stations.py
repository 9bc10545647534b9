"""We as infrastructure operator, what a customer platform or a regulator reads: our stations
(``query_stations_info``), their connectors' status (``query_station_status``) and their energy
(``query_station_stats``). Only the stations of the tenant the peer is linked to exist for it.
"""

from __future__ import annotations

from adapters.interconnect import catalogue
from adapters.interconnect.handlers.table import handlers
from adapters.interconnect.tcec.envelope import Ret
from adapters.interconnect.tcec.models.stations import StationsInfoRequest, StationsInfoResponse
from adapters.interconnect.tcec.models.status import (MAX_STATIONS, StationStatsRequest, StationStatsResponse,
                                                      StationStatusRequest, StationStatusResponse)
from adapters.interconnect.tcec.routing import Call, Refusal


def bad(msg: str) -> Refusal:
    """A 4004 in the words the pipeline uses for one."""
    return Refusal(Ret.BAD_DATA, f"请求的业务参数不合法: {msg}")


@handlers.handles("query_stations_info")
def stations_info(call: Call) -> StationsInfoResponse:
    """Paged by StationID; ``LastQueryTime`` keeps the stations changed since (their name, address,
    tariff or profile, or a pile registered at them); absent or empty: every station."""
    request: StationsInfoRequest = call.request
    total, infos = catalogue.stations_page(call.services.store.pool, call.peer.tenant_id, call.peer.our_operator_id,
                                           request.LastQueryTime, request.PageNo, request.PageSize)
    return StationsInfoResponse(PageNo=request.PageNo, PageCount=catalogue.page_count(total, request.PageSize),
                                ItemSize=total, StationInfos=infos)


@handlers.handles("query_station_status")
def station_status(call: Call) -> StationStatusResponse:
    """Every connector of each asked station; a StationID that is not one of the tenant's is left out
    (``Total`` counts the stations answered)."""
    request: StationStatusRequest = call.request
    if not 1 <= len(request.StationIDs) <= MAX_STATIONS:  # the model's bounds; kept here where they matter
        raise bad(f"StationIDs holds 1 to {MAX_STATIONS} stations, got {len(request.StationIDs)}")
    infos = catalogue.station_statuses(call.services.store.pool, call.peer.tenant_id, request.StationIDs)
    return StationStatusResponse(Total=len(infos), StationStatusInfos=infos)


@handlers.handles("query_station_stats")
def station_stats(call: Call) -> StationStatsResponse:
    """The energy of the station's sessions that closed from StartTime to EndTime (days, China time)."""
    request: StationStatsRequest = call.request
    if request.EndTime < request.StartTime:
        raise bad("EndTime is before StartTime")
    if (request.EndTime - request.StartTime).days > 366:
        raise bad("at most 366 days at a time")
    pool, tenant_id = call.services.store.pool, call.peer.tenant_id
    station_id = catalogue.find_stations(pool, tenant_id, [request.StationID]).get(request.StationID)
    if station_id is None:
        raise bad(f"no station {request.StationID}")
    return StationStatsResponse(StationStats=catalogue.station_stats(pool, tenant_id, station_id, request.StationID,
                                                                     request.StartTime, request.EndTime))
