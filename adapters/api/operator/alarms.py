"""The operator API's alarms (open, unacknowledged, cleared; acknowledging one) and the operation log
(who changed what, when, read from the events).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from pydantic import BaseModel

from adapters.api.shards import pool_of
from adapters.api import inputs as t
from adapters.api.auth import TENANT_ADMIN, Principal
from adapters.api.operator.deps import (E403_SCOPE, ERRORS, PILE, S, T, AlarmId, Caller, StationFilter, body_example,
                                        example, now, query, require, scope_where)
from domain.errors import NotFound
from projections.base import jsonable

router = APIRouter(prefix="/operator/v1", responses=t.BAD_BODY)


class AcknowledgeRequest(BaseModel):
    model_config = body_example(note="technician dispatched")
    note: t.Note = ""


# ---- alarms and the operation log ---------------------------------------------------------------------
ALARM_EXAMPLE = {"alarm_id": "fault:2929de6f-3c40-5547-95b4-8721d02cc8f2:1:0x02:88", "tenant_id": T, "station_id": S,
                 "pile_no": PILE, "gun_no": 1, "trade_no": None, "kind": "fault", "code": "0x02", "severity": "major",
                 "message": "emergency stop pressed", "raised_at": "2026-11-22T03:00:00+00:00", "cleared_at": None,
                 "count": 1, "acknowledged_by": None, "acknowledged_at": None, "note": None}


@router.get("/alarms", tags=["alarms"], summary="Alarms, newest first",
            responses=example({"items": [ALARM_EXAMPLE]}, 200, 401, 403, 422, e403=E403_SCOPE))
def list_alarms(request: Request, who: Caller,
                state: Literal["open", "unacknowledged", "cleared", "all"] = "open",
                kind: Annotated[t.AlarmKind | None, Query(description="e.g. fault, lost_heartbeat")] = None,
                station_id: StationFilter = None,
                limit: Annotated[t.Int, Query(ge=1, le=1000)] = 200) -> JSONResponse:
    rows = alarms_rows(request, who, state, kind, station_id, limit)
    for row in rows:
        row.pop("seq")
    return JSONResponse({"items": jsonable(rows)})


AlarmState = Literal["open", "unacknowledged", "cleared", "all"]
ALARM_STATES: tuple[AlarmState, ...] = ("open", "unacknowledged", "cleared", "all")


def alarms_rows(request: Request, who: Principal, state: AlarmState, kind: str | None, station_id: UUID | None,
                limit: int) -> list[dict[str, Any]]:
    """Alarms in ``who``'s scope, newest first, with their acknowledgement: the API's list and the console's."""
    where, params = scope_where(who, "a")
    where += {"open": " AND a.cleared_at IS NULL", "unacknowledged": " AND k.alarm_id IS NULL",
              "cleared": " AND a.cleared_at IS NOT NULL", "all": ""}[state]
    if kind is not None:
        where += " AND a.kind = %(kind)s"
        params["kind"] = kind
    if station_id is not None:
        where += " AND a.station_id = %(station)s"
        params["station"] = station_id
    return query(request, "SELECT a.*, k.acknowledged_by, k.acknowledged_at, k.note FROM alarms a "
                          "LEFT JOIN alarm_acknowledgements k USING (alarm_id) "
                          f"WHERE {where} ORDER BY a.seq DESC LIMIT %(limit)s",  # noqa: S608
                 {**params, "limit": limit})


@router.post("/alarms/{alarm_id}/acknowledge", tags=["alarms"], summary="Acknowledge an alarm",
             responses=example({"alarm_id": ALARM_EXAMPLE["alarm_id"], "acknowledged_by": "ops@example",
                                "acknowledged_at": "2026-11-22T03:05:00+00:00", "note": "technician dispatched"},
                               200, *ERRORS))
def acknowledge_alarm(request: Request, who: Caller, alarm_id: AlarmId, body: AcknowledgeRequest) -> JSONResponse:
    return JSONResponse(jsonable(acknowledge(request, who, alarm_id, body)))


def acknowledge(request: Request, who: Principal, alarm_id: str, body: AcknowledgeRequest) -> dict[str, Any]:
    """A tenant admin acknowledges an alarm in scope (else 404); the first acknowledgement stays."""
    require(who, TENANT_ADMIN)  # agents read alarms; acknowledging is the tenant's
    where, params = scope_where(who)
    with pool_of(request).connection() as conn:
        alarm = conn.execute(f"SELECT tenant_id FROM alarms WHERE alarm_id = %(id)s AND {where}",  # noqa: S608
                             {**params, "id": alarm_id}).fetchone()
        if alarm is None:
            raise NotFound(f"no alarm {alarm_id}", alarm_id=alarm_id)
        at = now()
        conn.execute("INSERT INTO alarm_acknowledgements VALUES (%s, %s, %s, %s, %s) ON CONFLICT (alarm_id) DO NOTHING",
                     (alarm_id, alarm[0], who.subject, at, body.note))
        return conn.cursor(row_factory=dict_row).execute(  # type: ignore[no-any-return]
            "SELECT alarm_id, acknowledged_by, acknowledged_at, note FROM alarm_acknowledgements WHERE alarm_id = %s",
            (alarm_id,)).fetchone()


@router.get("/operations", tags=["alarms"], summary="Who changed what, when (from the events)",
            responses=example({"items": [{"application": "Registry", "notification_id": 88, "tenant_id": T,
                                          "station_id": S, "aggregate_type": "Pile", "aggregate_id": T,
                                          "event": "Disabled", "author": "ops@example",
                                          "at": "2026-11-22T03:00:00+00:00", "detail": {"reason": "maintenance"}}],
                               "next_before": None}, 200, 401, 403, 422, e403=E403_SCOPE))
def operation_log(request: Request, who: Caller,
                  before: Annotated[t.Instant | None, Query(description="only entries before this instant")] = None,
                  limit: Annotated[t.Int, Query(ge=1, le=1000)] = 100) -> JSONResponse:
    rows = operations_rows(request, who, before, limit)
    return JSONResponse({"items": jsonable(rows),
                         "next_before": jsonable(rows[-1]["at"]) if len(rows) == limit else None})


def operations_rows(request: Request, who: Principal, before: datetime | None, limit: int) -> list[dict[str, Any]]:
    """The operation log in ``who``'s scope, newest first, before ``before``: the API's and the console's."""
    where, params = scope_where(who)
    if before is not None:
        where += " AND at < %(before)s"
        params["before"] = before
    return query(request, f"SELECT * FROM operation_log WHERE {where} "  # noqa: S608
                          "ORDER BY at DESC, application, notification_id DESC LIMIT %(limit)s",
                 {**params, "limit": limit})
