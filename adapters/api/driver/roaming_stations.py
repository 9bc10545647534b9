"""Roaming stations for the driver: the stations of the driver's tenant's infrastructure peers (other operators'
piles our drivers may charge on, docs/interconnect.md "Our drivers on a peer's piles: the catalogue"), and one
station's connectors with their status and the price now (``GET /driver/roaming/stations[/{operator}/{station}]``).

The catalogue is the interconnect's (``tcec_peer_*``, pulled from each peer); the API does not import the
interconnect (docs/architecture.md), so it asks the :class:`RoamingCatalogue` the door put on
``app.state.roaming_catalogue`` when the API serves T/CEC. Without it the tenant has no peers here: an empty
list, and every station 404. The tenant comes from the driver's token only: another tenant's peer, a disabled
peer, a customer peer, an unknown station, all answer ``404 not_found`` alike. On tenant shards the catalogue
answers each call from the shard of the tenant it is given (adapters/interconnect/customer/shards.py), where
that tenant's peers and their pulled stations live; a tenant on no shard is ``404`` (docs/shards.md).
"""

# no `from __future__ import annotations`: FastAPI must see the dependency types of roaming_router
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from adapters.api import inputs as t
from adapters.api.driver.sessions import utcnow
from adapters.api.inputs import error, responses
from domain.errors import NotFound

NEAR = re.compile(r"^(-?\d{1,2}(?:\.\d{1,8})?),(-?\d{1,3}(?:\.\d{1,8})?)$")
DRIVER = (401, 403, 422)


class RoamingCatalogue(Protocol):
    """What the API asks of the peers' catalogues, always naming the driver's tenant (adapters/interconnect/
    customer/shards.py implements it over each shard's customer/browse.py)."""

    def stations(self, tenant_id: UUID, near: tuple[Decimal, Decimal] | None, limit: int) -> list[dict[str, Any]]:
        ...

    def station(self, tenant_id: UUID, operator_id: str, station_id: str, now: datetime) -> dict[str, Any] | None:
        ...


def _near(value: str) -> tuple[Decimal, Decimal]:
    match = NEAR.match(value)
    if match is None:
        raise PydanticCustomError("near", "near is latitude,longitude in degrees (e.g. 31.23,121.47)")
    lat, lng = Decimal(match.group(1)), Decimal(match.group(2))
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise PydanticCustomError("near", "latitude is -90 to 90, longitude -180 to 180")
    return lat, lng


Near = Annotated[t.text(40), AfterValidator(_near)]  # type: ignore[valid-type]
OperatorId = Annotated[t.identifier(r"^[0-9A-Za-z]{9}$", 9), Path(description="the peer's OperatorID")]
StationId = Annotated[t.identifier(r"^[\x21-\x7e]{1,20}$", 20), Path(description="the peer's StationID")]
STATION = {"operator_id": "APLATFORM", "station_id": "c4a43ed91a064898bd4b", "name": "Station 1",
           "address": "1 Test Road", "latitude": "31.230000", "longitude": "121.470000", "station_status": 50,
           "connectors": {"free": 1, "total": 2}, "distance_m": 420}
DETAIL = {**{k: v for k, v in STATION.items() if k not in ("connectors", "distance_m")},
          "timezone": "Asia/Shanghai", "updated_at": "2026-11-30T07:54:29+00:00", "connectors": [
              {"connector_id": "3201060001923601", "equipment_id": "32010600019236", "status": "idle",
               "status_code": 1, "status_at": "2026-11-30T08:01:02+00:00",
               "price_now": {"from": "2026-11-30T08:00:00+08:00", "until": "2026-11-30T10:00:00+08:00",
                             "electricity": "0.7000", "service": "0.4000", "total": "1.1000"},
               "policy_at": "2026-11-30T07:54:30+00:00",
               "periods": [{"start": "000000", "electricity": "0.3000", "service": "0.2000"}]}]}


def catalogue_of(request: Request) -> RoamingCatalogue | None:
    return getattr(request.app.state, "roaming_catalogue", None)


def roaming_router(driver: Any) -> APIRouter:
    """The two endpoints, with ``driver`` the driver dependency of the other driver routes."""
    router = APIRouter(prefix="/roaming", tags=["driver roaming"])

    @router.get("/stations", summary="Stations of the operators our drivers roam onto, nearest first with near",
                responses=responses({"stations": [STATION]}, 200, *DRIVER, e422=error(
                    "validation_error", "query.near: near is latitude,longitude in degrees (e.g. 31.23,121.47)")))
    async def stations(request: Request, d: driver,  # type: ignore[valid-type]
                       near: Annotated[Near | None, Query(description="lat,lng (GCJ-02, as the peers give "
                                                                      "theirs): nearest first")] = None,
                       limit: Annotated[t.Int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        if catalogue is None:
            return {"stations": []}
        return {"stations": await run_in_threadpool(catalogue.stations, d.tenant_id, near, limit)}

    @router.get("/stations/{operator_id}/{station_id}",
                summary="A roaming station's connectors: status, and the price now from the operator's policy",
                responses=responses(DETAIL, 200, *DRIVER, 404))
    async def station(request: Request, d: driver, operator_id: OperatorId,  # type: ignore[valid-type]
                      station_id: StationId) -> dict[str, Any]:
        catalogue = catalogue_of(request)
        found = None if catalogue is None else await run_in_threadpool(
            catalogue.station, d.tenant_id, operator_id, station_id, utcnow())
        if found is None:
            raise NotFound(f"no roaming station {operator_id}/{station_id}")
        return found

    return router
