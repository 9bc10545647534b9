"""The driver session API's endpoints (``/driver/guns``, ``/driver/sessions*``): scan, start, watch, stop; and the
roaming stations (``/driver/roaming/stations*``, adapters/api/driver/roaming_stations.py).

Mounted by ``adapters.api.app.create_app`` next to the payment router (login, wallet, top-up,
refund); what each endpoint does is :class:`adapters.api.driver.sessions.DriverSessions`.
"""

# no `from __future__ import annotations`: FastAPI must see the dependency types defined inside
# driver_router, which string annotations would hide from it
import asyncio
import re
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from adapters.api import inputs as t
from adapters.api.driver.identity import DriverIdentity, DriverPrincipal, bearer_driver
from adapters.api.driver.roaming_stations import roaming_router
from adapters.api.driver.sessions import DriverSessions, InvalidQrCode, session_view, utcnow
from adapters.api.driver.streams import SlotStream, sse
from adapters.api.errors import ApiError
from adapters.api.inputs import WRONG_ROLE, error, responses
from domain.errors import DomainError
from domain.session import ChargingSession

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_\-:.]{8,64}$")


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    pile_no: t.PileNo = Field(description="from the QR lookup")
    gun_no: int = Field(ge=1, le=99)


TRADE = "32010600019236012611221147120042"
SESSION_EXAMPLE = {"trade_no": TRADE, "state": "charging", "final": False, "pile_no": "32010600019236", "gun_no": 1,
                   "hold_fen": 6000, "energy": 66690, "amount_fen": 1001, "amount_yuan": "10.01", "bill": None}
DRIVER = (401, 403, 422)  # what every driver endpoint can answer besides its own
E403 = {"e403": WRONG_ROLE}
TradeNo = Annotated[t.TradeNo, Path(description="the session's trade serial")]


def driver_router(identity: DriverIdentity, sessions: DriverSessions,
                  shard_of: Callable[[UUID], Any] | None = None) -> APIRouter:
    """``shard_of(tenant_id)``: that tenant's shard's ``.sessions`` and ``.pool`` (adapters/api/driver/sides.py);
    without it, every driver's sessions are ``sessions`` (one shard)."""
    router = APIRouter(prefix="/driver", tags=["driver sessions"], responses=t.BAD_BODY)

    def of(d: DriverPrincipal) -> DriverSessions:
        return sessions if shard_of is None else shard_of(d.tenant_id).sessions  # type: ignore[no-any-return]

    Driver = Annotated[DriverPrincipal, Depends(bearer_driver(identity))]

    @router.get("/guns", summary="Look up a gun from its QR code: station, status, tariff now and next",
                responses=responses({"pile_no": "32010600019236", "gun_no": 1, "kind": "DC",
                                     "gun": {"status": "idle", "can_start": True, "why_not": None}},
                                    200, *DRIVER, 404, **E403,
                                    e422=error("invalid_qr_code", "not a charging gun's QR code: expected "
                                               "https://<host>/c/<14-digit pile><2-digit gun>",
                                               {"qr": "https://evil.example.com/x"})))
    def lookup(d: Driver, qr: Annotated[t.text(300, min_length=16), Query()]) -> dict[str, Any]:  # type: ignore[valid-type]
        try:
            return of(d).lookup(d, qr)
        except InvalidQrCode as error:  # malformed input: 422, like any other invalid field
            raise ApiError(422, error.code, error.message, **error.details) from None

    @router.post("/sessions", status_code=202, summary="Start charging (hold the balance, tell the pile)",
                 responses=responses({"trade_no": TRADE, "session_id": "5d5b6c1e-1c1b-5c39-9d0c-0c2b0c1f0a11",
                                      "hold_fen": 6000, "replayed": False,
                                      "stream": f"/driver/sessions/{TRADE}/stream"}, 202, *DRIVER, 404, 409,
                                     **E403, e409=error("insufficient_funds", "starting needs at least 5.00 yuan "
                                                        "available; the wallet has 0.00",
                                                        {"available_fen": 0, "min_start_fen": 500})))
    def start(d: Driver, body: StartBody,
              idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)] = None
              ) -> JSONResponse:
        if idempotency_key is None or not IDEMPOTENCY_KEY.match(idempotency_key):
            raise ApiError(422, IdempotencyKeyRequired.code, "send an Idempotency-Key header (8-64 letters, "
                           "digits, - _ : .), the same one on every retry of this start")
        trade_no, hold, opened = of(d).start(d, body.pile_no, body.gun_no, idempotency_key)
        return JSONResponse({"trade_no": trade_no, "session_id": str(ChargingSession.create_id(trade_no)),
                             "hold_fen": hold, "replayed": not opened,
                             "stream": f"/driver/sessions/{trade_no}/stream"}, status_code=202)

    @router.get("/sessions", summary="The driver's sessions, newest first (from the orders view)",
                responses=responses({"sessions": [{"trade_no": TRADE, "state": "finished", "total_fen": 462}],
                                     "next": 1041}, 200, *DRIVER, **E403))
    def history(request: Request, d: Driver, limit: Annotated[t.Int, Query(ge=1, le=100)] = 20,
                before: Annotated[t.Cursor | None, Query(description="'next' of the previous page")] = None
                ) -> dict[str, Any]:
        pool = request.app.state.pool if shard_of is None else shard_of(d.tenant_id).pool
        return of(d).history(pool, d, before, limit)

    @router.get("/sessions/{trade_no}", summary="One session: live figures, and the bill per tier once priced",
                responses=responses(SESSION_EXAMPLE, 200, *DRIVER, 404, **E403))
    def status(d: Driver, trade_no: TradeNo) -> dict[str, Any]:
        return session_view(of(d).session(d, trade_no), utcnow())

    @router.post("/sessions/{trade_no}/stop", status_code=202, summary="Ask the pile to stop",
                 responses=responses({"trade_no": TRADE, "state": "stopping"}, 202, *DRIVER, 404, 409, **E403,
                                     e409=error("invalid_state_transition", "session is finished; cannot "
                                                "request_stop")))
    def stop(d: Driver, trade_no: TradeNo) -> JSONResponse:
        session = of(d).stop(d, trade_no)
        return JSONResponse({"trade_no": trade_no, "state": session.state}, status_code=202)

    @router.get("/sessions/{trade_no}/stream", summary="Live status as server-sent events until the session ends",
                response_class=StreamingResponse,
                responses={200: {"description": "server-sent events: status ... end",
                                 "content": {"text/event-stream": {"example": sse("status", SESSION_EXAMPLE, 7)}}},
                           **responses(None, 200, *DRIVER, 404, 429, **E403,
                                       e429=error("too_many_streams", "at most 3 live streams at once; close one",
                                                  {"limit": 3}))})
    async def stream(request: Request, d: Driver, trade_no: TradeNo) -> StreamingResponse:
        mine = await run_in_threadpool(of, d)
        first = await run_in_threadpool(mine.session, d, trade_no)  # 404 before any byte is streamed
        poll, keepalive = mine.settings.stream_poll, mine.settings.stream_keepalive
        release = mine.streams.take(d)

        async def events() -> AsyncIterator[str]:
            loop = asyncio.get_running_loop()
            session, version, quiet_since = first, None, loop.time()
            while True:
                if session.version != version:
                    version = session.version
                    yield sse("status", session_view(session, utcnow()), version)
                    quiet_since = loop.time()
                    if not session.is_open:
                        yield sse("end", {"trade_no": trade_no, "state": session.state})
                        return
                elif loop.time() - quiet_since >= keepalive:
                    yield ": keep-alive\n\n"
                    quiet_since = loop.time()
                if await request.is_disconnected():
                    return
                await asyncio.sleep(poll)
                session = await run_in_threadpool(mine.session, d, trade_no)

        return SlotStream(events(), release, media_type="text/event-stream",
                          headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    router.include_router(roaming_router(Driver))  # /driver/roaming/stations: other operators' piles
    return router
