"""The operation log (操作日志): who changed what, when, in the caller's scope.

The rows are the API's query (``operations_rows``: the operation-log view, newest first, 100 a
page, paged on the instant as ``GET /operator/v1/operations`` pages). A row's detail is the event's
arguments as the view keeps them (tariff schedules as their tiers), each shown as text.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from adapters.api import inputs as t
from adapters.api.auth import Principal
from adapters.api.operator.alarms import operations_rows
from adapters.api.operator.registry import stations_rows
from adapters.web.forms import Invalid, validated
from adapters.web.render import render, url
from adapters.web.session import Operator

router = APIRouter()
LIMIT = 100
SHOWN = 160  # characters of one detail value
HIDDEN = frozenset({"tenant_id"})  # the page is one tenant's already (a platform admin's: said by the station)


class LogFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")
    before: t.Instant | None = None


def detail_items(detail: dict[str, Any]) -> list[tuple[str, str]]:
    items = []
    for key, value in detail.items():
        if key in HIDDEN:
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
        items.append((key, text if len(text) <= SHOWN else text[:SHOWN] + "…"))
    return items


def log_page(request: Request, who: Principal) -> Response:
    stations = stations_rows(request, who)
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    before = request.query_params.get("before") or None
    try:
        f = validated(LogFilters, {"before": before} if before else {}, ("before",))
    except Invalid as exc:
        errors = exc.fields
    else:
        rows = operations_rows(request, who, f.before, LIMIT)
    entries = [{**r, "items": detail_items(r["detail"])} for r in rows]
    return render(request, "oplog/list.html", who, nav="/operation-log", status=422 if errors else 200,
                  entries=entries, names={s["station_id"]: s["name"] for s in stations},
                  zones={s["station_id"]: s["timezone"] for s in stations}, errors=errors,
                  next_url=url("/operation-log", before=rows[-1]["at"].isoformat()) if len(rows) == LIMIT else None,
                  first_url=url("/operation-log") if before else None)


@router.get("/operation-log")
async def operation_log(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(log_page, request, who)
