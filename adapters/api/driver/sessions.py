"""The driver session API: what the mini-program calls after login to scan, start, watch, stop and pay.

Mounted by ``adapters.api.app.create_app`` next to the payment router (login, wallet, top-up, refund).
Every endpoint takes the tenant and the driver from the driver token only (``role: driver``); a
session is the driver's if it was opened on their wallet, and anybody else's session is ``404
not_found``, exactly as if it did not exist, so trade serials cannot be probed.

* QR content (printed on each gun): ``https://<host>/c/<pile number, 14 digits><gun, 2 digits>``,
  or the bare 16 digits. The lookup answers the station, the gun's status and the tariff now and
  in the next 24 hours, in the station's time zone.
* Start: needs the wallet's available balance at or above the tenant's minimum
  (:class:`domain.start_rules.StartRules`); holds the whole available balance, at most the tenant's maximum hold (the
  pile is told that amount in 0x34 and stops there, and the platform stops it before the measured
  bill reaches it). It answers ``202`` with the trade serial as soon as the session is written;
  the pile's answer arrives later, on the stream. A client retry with the same ``Idempotency-Key``
  gets the same session back instead of a second one (:class:`StartRequests`).
* Live status: server-sent events, fed by polling the session aggregate (one indexed query per
  tick that returns nothing while the session has not moved): see docs/driver-api.md for why
  polling and not a NATS subscription.
"""

# no `from __future__ import annotations`: FastAPI must see the dependency types defined inside
# driver_router, which string annotations would hide from it
import asyncio
import hashlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from psycopg.rows import dict_row
from pydantic import BaseModel, ConfigDict, Field

from adapters.api import inputs as t
from adapters.api.inputs import WRONG_ROLE, error, responses
from adapters.api.driver.identity import DriverIdentity, DriverPrincipal, bearer_driver
from adapters.api.app import ApiError
from adapters.postgres.env import create_tables
from adapters.postgres.recorder import AlongsideConflict, Statement
from adapters.payments.service import TopUpLimits
from domain.clock import utcnow
from domain.errors import ConcurrencyExhausted, DomainError, IdempotencyConflict, NotFound
from domain.money import fen_to_yuan_str, price_to_yuan_str
from domain.registry import Pile
from domain.session import ChargingSession
from domain.start_rules import StartRules
from domain.tariff import TIERS, TariffSchedule
from domain.wallet import Wallet

QR_PATTERN = re.compile(r"^(?:https?://[^/?#\s]+(?:/[^?#\s]*)?/c/)?(\d{14})(\d{2})/?$")
IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_\-:.]{8,64}$")
KEPT = timedelta(hours=24)  # how long an Idempotency-Key's start is remembered


class InvalidQrCode(DomainError):
    code = "invalid_qr_code"


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"


# ---- settings -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DriverApiSettings:
    """Settings of the driver side: payment channels' sealing keys, public URL, start rules.

    ``gateways`` and ``wechat_api`` point the payment SDKs and WeChat's code2session elsewhere; only
    the offline tests use them, to play the platforms on loopback.
    """

    payment_keys: str  # CHARGELEDGER_PAYMENT_KEYS: kid=base64key[,...] (docs/payments.md)
    public_url: str  # CHARGELEDGER_PUBLIC_URL: the base of the notify URLs given to the platforms
    start_rules: StartRules = field(default_factory=StartRules)
    tenant_rules: Mapping[UUID, StartRules] = field(default_factory=dict)
    stream_poll: float = 1.0  # seconds between looks at a watched session
    stream_keepalive: float = 15.0  # seconds of silence before a keep-alive comment
    gateways: Mapping[str, str] = field(default_factory=dict)
    wechat_api: str = "https://api.weixin.qq.com"
    top_up_limits: TopUpLimits = field(default_factory=TopUpLimits)
    max_streams_per_driver: int = 3  # live streams one driver may hold open at once, per API process

    def rules(self, tenant_id: UUID) -> StartRules:
        return self.tenant_rules.get(tenant_id, self.start_rules)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "DriverApiSettings | None":
        """None when ``CHARGELEDGER_PAYMENT_KEYS`` is unset (the API then serves operators only).

        ``CHARGELEDGER_MIN_START_FEN`` / ``CHARGELEDGER_MAX_HOLD_FEN`` set the defaults;
        ``CHARGELEDGER_TENANT_START_RULES="<tenant uuid>=<min>/<max>,..."`` overrides per tenant.
        """
        keys = environ.get("CHARGELEDGER_PAYMENT_KEYS", "")
        if not keys:
            return None
        public_url = environ.get("CHARGELEDGER_PUBLIC_URL", "")
        if not public_url.startswith("https://") and not public_url.startswith("http://"):
            raise ValueError("set CHARGELEDGER_PUBLIC_URL to the API's public base URL (https://...)")
        default = StartRules(int(environ.get("CHARGELEDGER_MIN_START_FEN", 5_00)),
                             int(environ.get("CHARGELEDGER_MAX_HOLD_FEN", 200_00)))
        tenants: dict[UUID, StartRules] = {}
        for part in (p.strip() for p in environ.get("CHARGELEDGER_TENANT_START_RULES", "").split(",") if p.strip()):
            tenant, _, limits = part.partition("=")
            low, _, high = limits.partition("/")
            tenants[UUID(tenant.strip())] = StartRules(int(low), int(high or default.max_hold_fen))
        return cls(keys, public_url, default, tenants)


# ---- QR codes and tariffs ---------------------------------------------------------------------------------
def parse_qr(content: str) -> tuple[str, int]:
    """``https://<host>/c/<pile 14 digits><gun 2 digits>`` or the bare 16 digits -> (pile number, gun)."""
    match = QR_PATTERN.match(content.strip())
    if match is None or int(match.group(2)) == 0:
        raise InvalidQrCode("not a charging gun's QR code: expected https://<host>/c/<14-digit pile><2-digit gun>",
                            qr=content[:100])
    return match.group(1), int(match.group(2))


def price_view(schedule: TariffSchedule, tier: int) -> dict[str, Any]:
    p = schedule.prices[tier]
    total = p.electricity + p.service  # 0.00001 yuan/kWh
    return {"tier": TIERS[tier], "electricity_price": p.electricity, "service_price": p.service,
            "yuan_per_kwh": price_to_yuan_str(total)}


def tariff_slots(schedule: TariffSchedule, now: datetime, timezone: str, hours: int = 24) -> list[dict[str, Any]]:
    """The tariff from ``now`` for ``hours``, as periods of one tier each, in the station's local time."""
    local = now.astimezone(ZoneInfo(timezone))
    slot_start = local.replace(minute=0 if local.minute < 30 else 30, second=0, microsecond=0)
    periods: list[dict[str, Any]] = []
    for i in range(hours * 2 + 1):
        start = slot_start + timedelta(minutes=30 * i)
        tier = schedule.tier_at(start)
        if periods and periods[-1]["tier"] == TIERS[tier]:
            periods[-1]["until"] = (start + timedelta(minutes=30)).isoformat()
            continue
        periods.append({"from": max(start, local).isoformat(), "until": (start + timedelta(minutes=30)).isoformat(),
                        **price_view(schedule, tier)})
    return periods


# ---- sessions as the driver sees them --------------------------------------------------------------------
def session_view(session: ChargingSession, now: datetime) -> dict[str, Any]:
    """Energy, amount so far, power, SOC and elapsed time; the priced bill per tier once there is one."""
    reading = session.last_reading or {}
    bill = session.bill if session.bill is not None else session.measured_bill().as_dict()
    began = session.started_at or session.opened_at
    ended = session.closed_at or now
    voltage, current = reading.get("voltage_dv"), reading.get("current_da")
    return {
        "trade_no": session.trade_no, "state": session.state, "final": not session.is_open,
        "pile_no": session.pile_no, "gun_no": session.gun_no, "hold_fen": session.hold_fen,
        "opened_at": session.opened_at.isoformat(),
        "started_at": session.started_at.isoformat() if session.started_at else None,
        "closed_at": session.closed_at.isoformat() if session.closed_at else None,
        "elapsed_s": max(0, int((ended - began).total_seconds())) if session.started_at else 0,
        "energy": bill["energy"] if session.bill is not None else session.meter_energy,  # 0.0001 kWh
        "amount_fen": bill["total_fen"], "amount_yuan": fen_to_yuan_str(bill["total_fen"]),
        "power_w": voltage * current // 100 if voltage is not None and current is not None else None,
        "voltage_dv": voltage, "current_da": current, "soc_pct": reading.get("soc_pct"),
        "reading_at": reading.get("at"), "reason": session.reason,
        "bill": bill if session.bill is not None else None,  # priced from the pile's record, per tier
        "tariff": {"id": session.tariff["id"], "version": session.tariff["version"]},
    }


# ---- idempotent starts ----------------------------------------------------------------------------------
START_REQUESTS_DDL = """
CREATE TABLE IF NOT EXISTS driver_start_requests (
    tenant_id uuid NOT NULL, driver_id text NOT NULL, key text NOT NULL, request_hash text NOT NULL,
    trade_no text, hold_fen bigint, claimed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, driver_id, key))"""


class StartRequests:
    """Which session each (tenant, driver, Idempotency-Key) started: a retry gets that session back.

    The key's row (request hash, trade serial, hold) is written by the start itself, in the same
    transaction as the hold and the session (:meth:`record`, given to ``Ledger.request_start``), so
    a key has a row exactly when its session exists. There is no claim before the start and no
    "in progress" state: a look-up (:meth:`find`) either finds the committed row or nothing, and
    two starts with one key racing past it cannot both commit (the key is the primary key; the
    loser's whole transaction, hold included, is refused). A start refused by a domain rule writes
    nothing, so a retry is judged afresh. Rows are kept 24 h; each look-up drops its driver's
    older rows (and rows the pre-atomic code left unfinished, with no trade serial). The table is
    not the ledger: it only remembers which answer a key got.
    """

    INSERT = ("INSERT INTO driver_start_requests (tenant_id, driver_id, key, request_hash, trade_no, hold_fen, "
              "claimed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        with pool.connection() as conn:
            create_tables(conn, START_REQUESTS_DDL)

    def find(self, tenant_id: UUID, driver_id: str, key: str, request_hash: str,
             now: datetime) -> tuple[str, int] | None:
        """(trade serial, hold) of the start this key made within 24 h, else None; raises
        :class:`IdempotencyConflict` if the key started another pile or gun."""
        driver = {"tenant": tenant_id, "driver": driver_id, "key": key, "since": now - KEPT}
        with self.pool.connection() as conn:
            found = conn.execute(
                "WITH dropped AS (DELETE FROM driver_start_requests WHERE tenant_id = %(tenant)s AND "
                "driver_id = %(driver)s AND (claimed_at < %(since)s OR trade_no IS NULL)) "
                "SELECT request_hash, trade_no, hold_fen FROM driver_start_requests WHERE tenant_id = %(tenant)s "
                "AND driver_id = %(driver)s AND key = %(key)s AND claimed_at >= %(since)s AND trade_no IS NOT NULL",
                driver).fetchone()
        if found is None:
            return None
        stored_hash, trade_no, hold_fen = found
        if stored_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used for another start request", key=key)
        return trade_no, int(hold_fen)

    def record(self, tenant_id: UUID, driver_id: str, key: str, request_hash: str, hold_fen: int,
               now: datetime) -> Callable[[str], list[Statement]]:
        """The key's row for a start's trade serial, to write in the start's own transaction."""
        return lambda trade_no: [Statement(self.INSERT, (tenant_id, driver_id, key, request_hash, trade_no,
                                                         hold_fen, now))]


# ---- live streams per driver ----------------------------------------------------------------------------
class StreamSlots:
    """The live streams each driver holds open in this process; one beyond ``limit`` is refused (429)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[tuple[UUID, str], int] = {}
        self.lock = threading.Lock()

    def count(self, driver: DriverPrincipal) -> int:
        with self.lock:
            return self.open.get((driver.tenant_id, driver.driver_id), 0)

    def take(self, driver: DriverPrincipal) -> Callable[[], None]:
        """A slot for one stream, or ApiError 429; returns its release (safe to call more than once)."""
        key = (driver.tenant_id, driver.driver_id)
        with self.lock:
            if self.open.get(key, 0) >= self.limit:
                raise ApiError(429, "too_many_streams", f"at most {self.limit} live streams at once; close one",
                               limit=self.limit)
            self.open[key] = self.open.get(key, 0) + 1
        released = threading.Event()

        def release() -> None:
            with self.lock:
                if released.is_set():
                    return
                released.set()
                left = self.open[key] - 1
                if left:
                    self.open[key] = left
                else:
                    del self.open[key]

        return release


class SlotStream(StreamingResponse):
    """A streaming response that gives its slot back when it ends, however it ends (done, dropped, error)."""

    def __init__(self, content: AsyncIterator[str], release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


# ---- the service: what the endpoints do, without HTTP ---------------------------------------------------
class DriverSessions:
    """Start, read, stop a driver's sessions on the ledger; a session not on the driver's wallet is NotFound."""

    def __init__(self, ledger: Any, requests: StartRequests, settings: DriverApiSettings) -> None:
        self.ledger = ledger
        self.requests = requests
        self.settings = settings
        self.streams = StreamSlots(settings.max_streams_per_driver)

    def start(self, driver: DriverPrincipal, pile_no: str, gun_no: int, key: str,
              now: datetime | None = None) -> tuple[str, int, bool]:
        """Returns (trade serial, amount held, whether this call opened it).

        The key's record commits with the hold and the session (:class:`StartRequests`): if another
        call with this key committed first, this one's transaction is refused whole and it answers
        that call's session."""
        now = now or utcnow()
        request_hash = hashlib.sha256(f"{pile_no}/{gun_no}".encode()).hexdigest()
        for _ in range(3):  # a lost race, then its winner's row: found by the second look
            done = self.requests.find(driver.tenant_id, driver.driver_id, key, request_hash, now)
            if done is not None:
                return done[0], done[1], False
            wallet_id, hold = self.hold_for(driver)
            try:
                trade_no = self.ledger.request_start(
                    pile_no=pile_no, gun_no=gun_no, wallet_id=wallet_id, hold_fen=hold, at=now,
                    author=driver.driver_id, origin="app", tenant_id=driver.tenant_id, require_ready=True,
                    alongside=self.requests.record(driver.tenant_id, driver.driver_id, key, request_hash, hold, now))
            except AlongsideConflict:
                continue  # a start with this key committed first
            return trade_no, hold, True
        raise ConcurrencyExhausted("the start with this Idempotency-Key could not be found or made; retry", key=key)

    def hold_for(self, driver: DriverPrincipal) -> tuple[UUID, int]:
        """The driver's wallet and what a start holds on it: the available balance, at most the
        tenant's maximum; InsufficientFunds below the tenant's minimum."""
        wallet_id = Wallet.create_id(driver.tenant_id, driver.driver_id)
        return wallet_id, self.settings.rules(driver.tenant_id).hold_for(self.ledger.wallet(wallet_id).available)

    def session(self, driver: DriverPrincipal, trade_no: str) -> ChargingSession:
        """The driver's own session, brought up to date with the store (the gateway writes it elsewhere)."""
        try:
            session = self.ledger.sessions.get(ChargingSession.create_id(trade_no), ChargingSession, "session",
                                               fresh=True, copy=False)
        except NotFound:
            session = None
        if session is None or session.tenant_id != driver.tenant_id or \
                session.wallet_id != Wallet.create_id(driver.tenant_id, driver.driver_id):
            raise NotFound(f"no session {trade_no}", trade_no=trade_no)
        return session

    def stop(self, driver: DriverPrincipal, trade_no: str, now: datetime | None = None) -> ChargingSession:
        self.session(driver, trade_no)
        return self.ledger.request_stop(trade_no, driver.driver_id, "stopped by driver", now or utcnow(),
                                        tenant_id=driver.tenant_id)

    def lookup(self, driver: DriverPrincipal, qr: str, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        pile_no, gun_no = parse_qr(qr)
        try:
            pile = self.ledger.registry.get(Pile.create_id(pile_no), Pile, "pile")
        except NotFound:
            pile = None
        if pile is None or pile.tenant_id != driver.tenant_id or not pile.has_gun(gun_no):
            raise NotFound(f"no gun {pile_no}-{gun_no:02d}", pile_no=pile_no, gun_no=gun_no)
        station = self.ledger.registry.station(pile.station_id)
        gun = pile.guns[str(gun_no)]
        status = gun["status"] if pile.online else "offline"
        if not pile.enabled or not gun.get("enabled", True):
            status = "disabled"
        why_not = pile.not_ready_because(gun_no)
        out: dict[str, Any] = {
            "pile_no": pile_no, "gun_no": gun_no, "kind": pile.kind,
            "station": {"id": str(station.id), "name": station.name, "address": station.address,
                        "latitude": station.latitude, "longitude": station.longitude, "timezone": station.timezone},
            "gun": {"status": status, "plugged": bool(gun.get("plugged")), "faults": list(gun.get("faults", [])),
                    "online": pile.online, "can_start": not why_not, "why_not": why_not or None},
            "tariff": None,
        }
        tariff_id = pile.tariff_id or station.tariff_id
        if tariff_id is not None:
            tariff = self.ledger.tariffs.tariff(tariff_id)
            periods = tariff_slots(tariff.schedule, now, station.timezone)
            out["tariff"] = {"id": str(tariff.id), "version": tariff.tariff_version, "timezone": station.timezone,
                             "now": periods[0], "next": periods[1:]}
        out["start"] = {"min_start_fen": self.settings.rules(driver.tenant_id).min_start_fen,
                        "max_hold_fen": self.settings.rules(driver.tenant_id).max_hold_fen}
        return out

    def history(self, pool: Any, driver: DriverPrincipal, before: int | None, limit: int) -> dict[str, Any]:
        """The driver's orders, newest first, from the orders projection (keyset on ``seq``)."""
        wallet_id = Wallet.create_id(driver.tenant_id, driver.driver_id)
        try:
            with pool.connection() as conn:
                rows = conn.cursor(row_factory=dict_row).execute(
                    "SELECT trade_no, seq, station_id, pile_no, gun_no, state, ordered_at, started_at, stopped_at, "
                    "settled_at, energy, electricity_fen, service_fen, total_fen, reason FROM orders "
                    "WHERE tenant_id = %(tenant)s AND wallet_id = %(wallet)s "
                    "AND (%(before)s::bigint IS NULL OR seq < %(before)s) ORDER BY seq DESC LIMIT %(limit)s",
                    {"tenant": driver.tenant_id, "wallet": wallet_id, "before": before, "limit": limit}).fetchall()
        except psycopg.errors.UndefinedTable:  # the projections have not run yet on this database
            rows = []
        items = [{k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, UUID) else v)
                  for k, v in row.items() if k != "seq"} for row in rows]
        return {"sessions": items, "next": rows[-1]["seq"] if len(rows) == limit else None}


# ---- HTTP -----------------------------------------------------------------------------------------------
class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    pile_no: t.PileNo = Field(description="from the QR lookup")
    gun_no: int = Field(ge=1, le=99)


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


TRADE = "32010600019236012611221147120042"
SESSION_EXAMPLE = {"trade_no": TRADE, "state": "charging", "final": False, "pile_no": "32010600019236", "gun_no": 1,
                   "hold_fen": 6000, "energy": 66690, "amount_fen": 1001, "amount_yuan": "10.01", "bill": None}
DRIVER = (401, 403, 422)  # what every driver endpoint can answer besides its own
E403 = {"e403": WRONG_ROLE}
TradeNo = Annotated[t.TradeNo, Path(description="the session's trade serial")]


def driver_router(identity: DriverIdentity, sessions: DriverSessions) -> APIRouter:
    router = APIRouter(prefix="/driver", tags=["driver sessions"], responses=t.BAD_BODY)

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
            return sessions.lookup(d, qr)
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
        trade_no, hold, opened = sessions.start(d, body.pile_no, body.gun_no, idempotency_key)
        return JSONResponse({"trade_no": trade_no, "session_id": str(ChargingSession.create_id(trade_no)),
                             "hold_fen": hold, "replayed": not opened,
                             "stream": f"/driver/sessions/{trade_no}/stream"}, status_code=202)

    @router.get("/sessions", summary="The driver's sessions, newest first (from the orders view)",
                responses=responses({"sessions": [{"trade_no": TRADE, "state": "finished", "total_fen": 462}],
                                     "next": 1041}, 200, *DRIVER, **E403))
    def history(request: Request, d: Driver, limit: Annotated[t.Int, Query(ge=1, le=100)] = 20,
                before: Annotated[t.Cursor | None, Query(description="'next' of the previous page")] = None
                ) -> dict[str, Any]:
        return sessions.history(request.app.state.pool, d, before, limit)

    @router.get("/sessions/{trade_no}", summary="One session: live figures, and the bill per tier once priced",
                responses=responses(SESSION_EXAMPLE, 200, *DRIVER, 404, **E403))
    def status(d: Driver, trade_no: TradeNo) -> dict[str, Any]:
        return session_view(sessions.session(d, trade_no), utcnow())

    @router.post("/sessions/{trade_no}/stop", status_code=202, summary="Ask the pile to stop",
                 responses=responses({"trade_no": TRADE, "state": "stopping"}, 202, *DRIVER, 404, 409, **E403,
                                     e409=error("invalid_state_transition", "session is finished; cannot "
                                                "request_stop")))
    def stop(d: Driver, trade_no: TradeNo) -> JSONResponse:
        session = sessions.stop(d, trade_no)
        return JSONResponse({"trade_no": trade_no, "state": session.state}, status_code=202)

    @router.get("/sessions/{trade_no}/stream", summary="Live status as server-sent events until the session ends",
                response_class=StreamingResponse,
                responses={200: {"description": "server-sent events: status ... end",
                                 "content": {"text/event-stream": {"example": sse("status", SESSION_EXAMPLE, 7)}}},
                           **responses(None, 200, *DRIVER, 404, 429, **E403,
                                       e429=error("too_many_streams", "at most 3 live streams at once; close one",
                                                  {"limit": 3}))})
    async def stream(request: Request, d: Driver, trade_no: TradeNo) -> StreamingResponse:
        first = await run_in_threadpool(sessions.session, d, trade_no)  # 404 before any byte is streamed
        poll, keepalive = sessions.settings.stream_poll, sessions.settings.stream_keepalive
        release = sessions.streams.take(d)

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
                session = await run_in_threadpool(sessions.session, d, trade_no)

        return SlotStream(events(), release, media_type="text/event-stream",
                          headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return router
