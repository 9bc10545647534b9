"""One pile (充电桩详情): its facts and its guns' live status, its remote commands, its frames.

Everything is the operator API's own: the pile is checked by ``check_pile`` (404 outside the caller's
tenant or agent scope), its live status is ``piles_rows`` (the live-status view) as on the piles list,
its frames are ``frames_page`` (the gateway's frame log, decoded by the YKC codec, 50 a page with a
link to older ones), and each command is the function the API's endpoint runs: ``start_commissioning``
(``POST /piles/{pile_no}/start``), ``stop_order`` (``POST /orders/{trade_no}/stop``), ``command_pile``
with the ledger's ``reboot_pile`` / ``push_tariff``, ``pile_enabled`` (enable, disable: tenant admins;
an agent gets the 403 page, as the API answers 403). Every form carries its CSRF token.

The page's live parts (status, last command and its answer, the newest frames) swap themselves from
``/console/piles/{pile_no}/live``, the loop the piles list uses (:mod:`adapters.web.live`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from adapters.api.shards import ledger_of
from adapters.api import inputs as t
from adapters.api.auth import Principal
from adapters.api.operator.commands import StartBody, command_pile, start_commissioning, stop_order
from adapters.api.operator.deps import Reason, check_pile
from adapters.api.operator.frames import frames_page
from adapters.api.operator.registry import pile_enabled, pile_filter, piles_rows
from adapters.web.forms import Invalid, validated
from adapters.web.live import stream
from adapters.web.render import DEFAULT_ZONE, fragment, render, see_other, url
from adapters.web.session import Operator, posted
from domain.errors import DomainError, NotFound

router = APIRouter()
PILE_NO = TypeAdapter(t.PileNo)
TRADE_NO = TypeAdapter(t.TradeNo)


def pile_no_of(value: str) -> str:
    """A pile number from the path; anything else is a page that does not exist (404)."""
    try:
        return PILE_NO.validate_python(value)  # type: ignore[no-any-return]
    except ValidationError:
        raise NotFound(f"no pile {value[:40]}") from None


# ---- what the page shows ----------------------------------------------------------------------------------
def facts(request: Request, who: Principal, pile_no: str) -> dict[str, Any]:
    """What does not move while one looks: the pile's station, model, guns and tariff (from the ledger)."""
    pile = check_pile(request, who, pile_no)
    ledger = ledger_of(request)
    station = ledger.registry.station(pile.station_id)
    try:
        tariff = ledger.tariff_for(pile)
    except DomainError:  # neither the pile nor its station has one
        tariff = None
    return {"pile_no": pile_no, "station": station, "zone": station.timezone or DEFAULT_ZONE, "kind": pile.kind,
            "gun_count": pile.gun_count, "tariff": tariff, "holds": getattr(pile, "billing_model", None)}


def live_row(request: Request, who: Principal, pile_no: str) -> dict[str, Any]:
    """The pile in the live-status view (the API's ``piles_rows``), guns and all."""
    rows = piles_rows(request, who, *pile_filter(pile_no))
    if not rows:  # registered a moment ago, not yet projected (the API answers the same)
        raise NotFound(f"pile {pile_no} is not in the live view yet; retry shortly", pile_no=pile_no)
    return rows[0]


def shown_frames(page: dict[str, Any], zone: str) -> dict[str, Any]:
    """The API's page of frames, each with its time in the station's zone to the millisecond."""
    for frame in page["items"]:
        at = datetime.fromisoformat(frame["at"]).astimezone(ZoneInfo(zone))
        frame["shown_at"] = at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return page


def parts(request: Request, who: Principal, pile: dict[str, Any], role: str,
          frames: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values of the page's live parts, read now: its status, its last command, its newest frames."""
    pile_no = pile["pile_no"]
    frames = frames or shown_frames(frames_page(request, who, pile_no), pile["zone"])
    return {"pile": pile, "live": live_row(request, who, pile_no), "frames": frames, "role": role,
            "live_frames": True}


def live_sections(facts_of: dict[str, Any]) -> Callable[[Request, Principal], list[tuple[str, str]]]:
    """The page's live parts as the stream sends them (adapters/web/live.py); each read checks the pile is
    still in the caller's scope (``frames_page``: else NotFound, which ends the stream)."""
    def sections(request: Request, who: Principal) -> list[tuple[str, str]]:
        values = parts(request, who, facts_of, who.role)
        return [(event, fragment(request, f"piles/{name}.html", **values))
                for event, name in (("pile-status", "status"), ("pile-command", "command"),
                                    ("pile-frames", "frames"))]
    return sections


def pile_page(request: Request, who: Principal, pile_no: str, status: int = 200, errors: dict[str, str] | None = None,
              refused: str | None = None, form: dict[str, str] | None = None) -> Response:
    pile_no = pile_no_of(pile_no)
    pile = facts(request, who, pile_no)
    cursor = request.query_params.get("before") or None
    frames = shown_frames(frames_page(request, who, pile_no, cursor), pile["zone"])
    query = request.query_params
    return render(request, "piles/one.html", who, nav="/piles", status=status,
                  **{**parts(request, who, pile, who.role, frames), "live_frames": cursor is None},
                  errors=errors or {}, refused=refused, form=form or {}, sent=query.get("sent"),
                  trade_no=query.get("trade_no"))


@router.get("/piles/{pile_no}")
async def one_pile(request: Request, who: Operator, pile_no: str) -> Response:
    return await run_in_threadpool(pile_page, request, who, pile_no)


@router.get("/piles/{pile_no}/live")
async def live(request: Request, who: Operator, pile_no: str) -> StreamingResponse:
    pile = await run_in_threadpool(facts, request, who, pile_no_of(pile_no))
    return stream(request, live_sections(pile))


# ---- remote commands: each the API's own function --------------------------------------------------------
def command(request: Request, who: Principal, pile_no: str, name: str,
            run: Callable[[dict[str, str]], str | None]) -> Response:
    """Run a command from the page's form; back to the page with what was sent, or the page with the
    refusal (a field the API's model refuses: 422 at the field; a domain rule: 409)."""
    pile_no = pile_no_of(pile_no)
    form = posted(request)
    try:
        trade_no = run(form)
    except Invalid as exc:
        return pile_page(request, who, pile_no, 422, errors=exc.fields, form=form)
    except NotFound:
        raise
    except DomainError as exc:
        return pile_page(request, who, pile_no, 409, refused=exc.message, form=form)
    return see_other(url(f"/piles/{pile_no}", sent=name, trade_no=trade_no))


def trade_no_of(form: dict[str, str]) -> str:
    try:
        return TRADE_NO.validate_python(form.get("trade_no", ""))  # type: ignore[no-any-return]
    except ValidationError:
        raise NotFound("no such order") from None


@router.post("/piles/{pile_no}/start")
async def start(request: Request, who: Operator, pile_no: str) -> Response:
    return await run_in_threadpool(command, request, who, pile_no, "start", lambda form: start_commissioning(
        request, who, pile_no_of(pile_no), validated(StartBody, form, ("gun_no",))))


@router.post("/piles/{pile_no}/stop")
async def stop(request: Request, who: Operator, pile_no: str) -> Response:
    def run(form: dict[str, str]) -> str:
        trade_no = trade_no_of(form)
        stop_order(request, who, trade_no, Reason(), pile_no=pile_no_of(pile_no))
        return trade_no
    return await run_in_threadpool(command, request, who, pile_no, "stop", run)


@router.post("/piles/{pile_no}/reboot")
async def reboot(request: Request, who: Operator, pile_no: str) -> Response:
    return await run_in_threadpool(command, request, who, pile_no, "reboot", lambda form: command_pile(
        request, who, pile_no_of(pile_no), ledger_of(request).reboot_pile))


@router.post("/piles/{pile_no}/push-tariff")
async def push_tariff(request: Request, who: Operator, pile_no: str) -> Response:
    return await run_in_threadpool(command, request, who, pile_no, "push_tariff", lambda form: command_pile(
        request, who, pile_no_of(pile_no), ledger_of(request).push_tariff))


@router.post("/piles/{pile_no}/enable")
async def enable(request: Request, who: Operator, pile_no: str) -> Response:
    return await run_in_threadpool(command, request, who, pile_no, "enable", lambda form: pile_enabled(
        request, who, pile_no_of(pile_no), True))


@router.post("/piles/{pile_no}/disable")
async def disable(request: Request, who: Operator, pile_no: str) -> Response:
    return await run_in_threadpool(command, request, who, pile_no, "disable", lambda form: pile_enabled(
        request, who, pile_no_of(pile_no), False, validated(Reason, form, ("reason",)).reason))
