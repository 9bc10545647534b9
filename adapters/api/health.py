"""``/healthz`` and ``/readyz`` on the API's own app, for the balancer in front of the API workers.

``/healthz``: the worker answers (alive). ``/readyz``: it can reach the database now (a new
connection, ``SELECT 1``, within 2 s): 200 ``{"ready": true, ...}``, else 503, so a balancer stops
sending requests to a worker cut off from Postgres. The body names each check and whether it passed,
never why (the error would tell the internet about the database): the worker's ``--metrics-port``
serves the same ``/readyz`` with the details, on the operators' network.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from adapters.metrics import checks
from adapters.metrics.exporter import health_body


def health_router(database_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    ready = {"database": checks.database(database_url)}

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"alive": True}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        status, body = await run_in_threadpool(health_body, ready)
        body["checks"] = {name: {"ok": result["ok"]} for name, result in body["checks"].items()}
        return JSONResponse(body, status_code=status)

    return router
