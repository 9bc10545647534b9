"""Revenue (营收统计): by station-local day and by station, as charts with their tables beside them.

The rows are the API's revenue query (``revenue_rows``: the revenue view in the caller's scope, the
same rows ``GET /operator/v1/revenue`` answers), summed here by day and by station. Each chart's
data travels in its element's ``data-chart`` attribute (JSON, fen as integers; no inline script),
and ``data-total-fen`` carries the total the chart adds up to, which the table beside it shows too.
``static/ops.js`` draws them with ECharts.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from adapters.api import inputs as t
from adapters.api.auth import Principal
from adapters.api.operator.orders import revenue_rows
from adapters.api.operator.registry import stations_rows
from adapters.web import i18n
from adapters.web.forms import Invalid, validated
from adapters.web.render import render
from adapters.web.session import Operator

router = APIRouter()
FIGURES = ("sessions", "energy", "electricity_fen", "service_fen", "refunds_fen")


class RevenueFilters(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    station: t.Uuid | None = None
    day_from: t.Day | None = Field(None, alias="from")
    day_to: t.Day | None = Field(None, alias="to")


def summed(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows added up per ``key`` (day or station), each with its total in fen."""
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        into = out.setdefault(row[key], {key: row[key], **{f: 0 for f in FIGURES}})
        for f in FIGURES:
            into[f] += int(row[f])
    for into in out.values():
        into["total_fen"] = into["electricity_fen"] + into["service_fen"]
    return list(out.values())


def chart(lang: str, labels: list[str], rows: list[dict[str, Any]], sessions: bool) -> dict[str, Any]:
    """What static/ops.js draws: stacked electricity and service fees (fen), and sessions as a line."""
    series = [{"key": "electricity", "name": i18n.message(lang, "revenue.electricity"),
               "values": [r["electricity_fen"] for r in rows]},
              {"key": "service", "name": i18n.message(lang, "revenue.service"),
               "values": [r["service_fen"] for r in rows]}]
    if sessions:
        series.append({"key": "sessions", "type": "line", "name": i18n.message(lang, "revenue.sessions"),
                       "values": [r["sessions"] for r in rows]})
    return {"labels": labels, "series": series, "unit": i18n.message(lang, "revenue.unit"),
            "count_unit": i18n.message(lang, "revenue.sessions")}


def revenue_page(request: Request, who: Principal) -> Response:
    stations = stations_rows(request, who)
    names = {s["station_id"]: s["name"] for s in stations}
    shown = {k: v for k, v in request.query_params.items() if k in ("station", "from", "to") and v != ""}
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    try:
        f = validated(RevenueFilters, shown, ("station", "from", "to"))
        if f.day_from and f.day_to and f.day_to < f.day_from:
            raise Invalid({"to": "must not be before from"})
    except Invalid as exc:
        errors = exc.fields
    else:
        rows, _ = revenue_rows(request, who, f.station, f.day_from, f.day_to)
    lang = i18n.language(request)
    days = sorted(summed(rows, "day"), key=lambda r: r["day"])
    by_station = sorted(summed(rows, "station_id"), key=lambda r: -r["total_fen"])
    totals = {f: sum(int(r[f]) for r in rows) for f in FIGURES}
    totals["total_fen"] = totals["electricity_fen"] + totals["service_fen"]
    return render(request, "revenue/page.html", who, nav="/revenue", status=422 if errors else 200,
                  stations=stations, names=names, query=shown, errors=errors, days=days, by_station=by_station,
                  totals=totals,
                  day_chart=chart(lang, [d["day"].isoformat() for d in days], days, sessions=True),
                  station_chart=chart(lang, [names.get(s["station_id"], str(s["station_id"])[:8]) for s in by_station],
                                      by_station, sessions=False))


@router.get("/revenue")
async def revenue(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(revenue_page, request, who)
