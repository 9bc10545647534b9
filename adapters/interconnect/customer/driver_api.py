"""The driver API's roaming endpoints: our driver on an infrastructure peer's connector.

Mounted with the T/CEC door (``door.mount``) when the API also serves drivers: the API package does
not import the interconnect (docs/architecture.md), so the driver's token is checked with the driver
identity the API put on ``app.state`` and a start holds what the driver API's own rule says (the
``DriverSessions.hold_for`` of the driver's tenant's shard), the same as a start on our own piles. The
tenant and the driver come from the token only; another driver's charge is ``404``, exactly as one that
does not exist. Every call runs on the driver's tenant's shard (``customer/shards.py``): its peer links,
its wallet, its charges; a tenant on no shard is ``404``.

* ``POST /driver/roaming/sessions`` (``Idempotency-Key`` required): hold, record, ask the peer; ``202``
  with the charge (``starting``; ``requested`` when the peer did not answer: we ask it again), or
  ``409 start_refused`` when the peer refused (the hold is back).
* ``GET /driver/roaming/sessions/{operator_id}/{start_charge_seq}``: the charge, with the peer's live
  status while it is open, and the bill once settled.
* ``POST /driver/roaming/sessions/{operator_id}/{start_charge_seq}/stop``: ``202``; the order settles it.
"""

# no `from __future__ import annotations`: FastAPI must see the types of the dependencies defined inside
from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from adapters.interconnect.customer.sessions import StartRefused, view
from adapters.interconnect.customer.shards import RoamingShards
from domain.roaming import RoamingCharge

OPERATOR = r"^[A-Za-z0-9]{9}$"
SEQ = r"^[A-Za-z0-9]{27}$"
KEY = r"^[A-Za-z0-9_\-:.]{8,64}$"
BEARER = HTTPBearer(auto_error=False)


class RoamingStart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    operator_id: str = Field(pattern=OPERATOR, description="the infrastructure operator's OperatorID")
    connector_id: str = Field(pattern=r"^[\x21-\x7e]{1,26}$", description="its ConnectorID (from the catalogue)")
    station_id: str = Field("", pattern=r"^[\x21-\x7e]{0,20}$", description="its StationID, for the order's record")


def roaming_router(roaming: RoamingShards, identity: Any, drivers_of: Callable[[UUID], Any]) -> APIRouter:
    """``drivers_of(tenant_id)``: the driver API's ``DriverSessions`` on that tenant's shard (whose
    ``hold_for`` says what a start holds on the driver's wallet there)."""
    router = APIRouter(prefix="/driver/roaming", tags=["driver roaming"])

    def driver(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Any:
        token = credentials.credentials.strip() if credentials is not None else ""
        return identity.tokens.verify(token)  # the API's AuthError (401) for a missing or bad token

    Driver = Annotated[Any, Depends(driver)]
    Operator = Annotated[str, Path(pattern=OPERATOR)]
    Seq = Annotated[str, Path(pattern=SEQ)]

    @router.post("/sessions", status_code=202, summary="Start charging on a peer operator's connector")
    async def start(d: Driver, body: RoamingStart,
                    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", pattern=KEY)]) -> JSONResponse:
        def on_the_drivers_shard() -> tuple[RoamingCharge, bool]:
            return roaming.sessions(d.tenant_id).start(
                d.tenant_id, d.driver_id, body.operator_id, body.connector_id,
                hold_for=lambda: drivers_of(d.tenant_id).hold_for(d), station_id=body.station_id,
                key=idempotency_key)

        charge, asked = await run_in_threadpool(on_the_drivers_shard)
        if charge.state == "failed":
            raise StartRefused(f"{body.operator_id} did not start the charge: {charge.reason}",
                               start_charge_seq=charge.start_charge_seq, operator_id=body.operator_id)
        return JSONResponse({**view(charge, None), "replayed": not asked}, status_code=202)

    @router.get("/sessions/{operator_id}/{start_charge_seq}", summary="A roaming charge, live while it is open")
    async def watch(d: Driver, operator_id: Operator, start_charge_seq: Seq) -> dict[str, Any]:
        return await run_in_threadpool(lambda: roaming.sessions(d.tenant_id).watch(
            d.tenant_id, d.driver_id, operator_id, start_charge_seq))

    @router.post("/sessions/{operator_id}/{start_charge_seq}/stop", status_code=202, summary="Stop a roaming charge")
    async def stop(d: Driver, operator_id: Operator, start_charge_seq: Seq) -> dict[str, Any]:
        return await run_in_threadpool(lambda: roaming.sessions(d.tenant_id).stop(
            d.tenant_id, d.driver_id, operator_id, start_charge_seq))

    return router
