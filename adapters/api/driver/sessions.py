"""The driver's sessions, without HTTP: what the mini-program's calls do after login (scan, start,
watch, stop, history); the endpoints are adapters/api/driver/routes.py.

Every call takes the tenant and the driver from the driver token only (``role: driver``); a
session is the driver's if it was opened on their wallet, and anybody else's session is ``404
not_found``, exactly as if it did not exist, so trade serials cannot be probed.

* QR content (printed on each gun): ``https://<host>/c/<pile number, 14 digits><gun, 2 digits>``,
  or the bare 16 digits. The lookup answers the station, the gun's status and the tariff now and
  in the next 24 hours, in the station's time zone.
* Start: needs the wallet's available balance at or above the tenant's minimum
  (:class:`~domain.start_rules.StartRules`); holds the whole available balance, at most
  the tenant's maximum hold (the pile is told that amount in 0x34 and stops there, and the platform
  stops it before the measured bill reaches it). It answers ``202`` with the trade serial as soon
  as the session is written; the pile's answer arrives later, on the stream. A client retry with the
  same ``Idempotency-Key`` gets the same session back instead of a second one
  (:class:`~adapters.api.driver.starts.StartRequests`).
* Live status: server-sent events, fed by polling the session aggregate (one indexed query per
  tick that returns nothing while the session has not moved): see docs/driver-api.md for why
  polling and not a NATS subscription.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import psycopg
from psycopg.rows import dict_row

from adapters.api.driver.identity import DriverPrincipal
from adapters.api.driver.settings import DriverApiSettings
from adapters.api.driver.starts import StartRequests
from adapters.api.driver.streams import StreamSlots
from adapters.postgres.recorder import AlongsideConflict
from domain.clock import utcnow
from domain.errors import ConcurrencyExhausted, DomainError, NotFound
from domain.money import fen_to_yuan_str, price_to_yuan_str
from domain.registry import Pile
from domain.session import ChargingSession
from domain.tariff import TIERS, TariffSchedule
from domain.wallet import Wallet

QR_PATTERN = re.compile(r"^(?:https?://[^/?#\s]+(?:/[^?#\s]*)?/c/)?(\d{14})(\d{2})/?$")


class InvalidQrCode(DomainError):
    code = "invalid_qr_code"


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
        tenant's maximum; InsufficientFunds below the tenant's minimum (:class:`StartRules`)."""
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

