"""The overview: who is signed in, and what their scope holds now (the API's station and pile queries)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapters.api.operator.registry import piles_rows, stations_rows
from adapters.web.render import render
from adapters.web.session import Operator

router = APIRouter()


@router.get("/")
async def overview(request: Request, who: Operator) -> Response:
    stations = await run_in_threadpool(stations_rows, request, who)
    piles = await run_in_threadpool(piles_rows, request, who)
    counts = {"stations": len(stations), "piles": len(piles), "online": sum(p["online"] for p in piles),
              "charging": sum(g["status"] == "charging" for p in piles for g in p["guns"])}
    return render(request, "home.html", who, nav="/", counts=counts)
