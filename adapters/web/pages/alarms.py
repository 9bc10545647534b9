"""Alarms (告警): the list with its filters, and acknowledging one.

The list is the API's alarms query (``alarms_rows``: the alarms view in the caller's scope, with
each alarm's acknowledgement), newest first, at most 200. Acknowledging is the API's command
(``acknowledge``: tenant admins; an alarm outside the scope is 404), with an optional note; the
first acknowledgement of an alarm stays. Agents see their stations' alarms and cannot acknowledge,
as in the API.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from adapters.api import inputs as t
from adapters.api.auth import TENANT_ADMIN, Principal
from adapters.api.operator.alarms import ALARM_STATES, AcknowledgeRequest, acknowledge, alarms_rows
from adapters.api.operator.deps import require
from adapters.api.operator.registry import stations_rows
from adapters.web.forms import Invalid, validated
from adapters.web.render import PREFIX, render, see_other, url
from adapters.web.session import Operator, posted
from domain.errors import NotFound

router = APIRouter()
LIMIT = 200
KINDS = ("fault", "lost_heartbeat", "pile_offline", "frame_refused", "session_failed", "session_abandoned",
         "session_fault", "meter_anomaly", "pricing_difference")
FILTERS = ("state", "kind", "station")


class AlarmFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")
    state: Literal[ALARM_STATES] = "open"  # type: ignore[valid-type]
    kind: t.AlarmKind | None = None
    station: t.Uuid | None = None


def alarms_page(request: Request, who: Principal, status: int = 200, errors: dict[str, str] | None = None,
                refused: str | None = None) -> Response:
    stations = stations_rows(request, who)
    shown = {k: v for k, v in request.query_params.items() if k in FILTERS and v != ""}
    filter_errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    try:
        f = validated(AlarmFilters, shown, FILTERS)
    except Invalid as exc:
        filter_errors, state = exc.fields, shown.get("state", "open")
    else:
        rows, state = alarms_rows(request, who, f.state, f.kind, f.station, LIMIT), f.state
    back = request.url.path + ("?" + request.url.query if request.url.query else "")
    return render(request, "alarms/list.html", who, nav="/alarms", status=422 if filter_errors else status,
                  rows=rows, stations=stations, names={s["station_id"]: s["name"] for s in stations},
                  zones={s["station_id"]: s["timezone"] for s in stations}, query=shown, state=state,
                  states=ALARM_STATES, kinds=KINDS, errors={**filter_errors, **(errors or {})}, refused=refused,
                  back=back, acknowledged=request.query_params.get("acknowledged"))


@router.get("/alarms")
async def alarms(request: Request, who: Operator) -> Response:
    return await run_in_threadpool(alarms_page, request, who)


def back_to(target: str) -> str:
    """The list the form came from: one of ours, never another site."""
    ok = target.startswith(PREFIX + "/alarms") and "//" not in target and "\\" not in target
    return target if ok else url("/alarms")


def acknowledge_one(request: Request, who: Principal) -> Response:
    form = posted(request)
    alarm_id = form.get("alarm_id", "")
    try:
        body = validated(AcknowledgeRequest, form, ("note",))
        if not alarm_id:
            raise NotFound("no alarm")
        acknowledge(request, who, alarm_id, body)
    except Invalid as exc:
        return alarms_page(request, who, 422, {f"{alarm_id}:{k}": v for k, v in exc.fields.items()})
    target = back_to(form.get("back", ""))
    return see_other(target + ("&" if "?" in target else "?") + "acknowledged=1")


@router.post("/alarms/acknowledge")
async def acknowledge_alarm(request: Request, who: Operator) -> Response:
    require(who, TENANT_ADMIN)
    return await run_in_threadpool(acknowledge_one, request, who)
