"""A charging session as the pile reports it: realtime data (0x13), starts and stops answered (0x33,
0x35), a start by card or VIN at the pile (0x31 → 0x32), aborts and BMS errors (0x1B, 0x1D, 0x21).

Each session use case runs scoped to the pile and gun that sent the frame
(:meth:`pile_link.link.PileLink.on_session`); readings go to the gateway's write-behind queue.
"""

from __future__ import annotations

import logging
from typing import Any

from domain.errors import InsufficientFunds, NotFound, PileUnavailable
from pile_link.boundary import NO_TRADE
from pile_link.handlers.table import routes
from pile_link.link import GunReport, PileLink
from pile_link.ykc import (
    BmsAbort,
    BmsError,
    ChargerAbort,
    Frame,
    RealtimeData,
    RemoteStartReply,
    RemoteStopReply,
    StartAuthReply,
    StartRequest,
)
from pile_link.ykc.realtime import HW_FAULTS

log = logging.getLogger("chargeledger.pile_link")

GUN_STATUS = ("offline", "fault", "idle", "charging")  # the 0x13 status byte
GUN_BUSY = 2  # 0x33 fail reason: the gun is already charging
START_FAIL_REASONS = {1: "pile number mismatch", GUN_BUSY: "gun busy", 3: "device fault", 4: "pile offline",
                      5: "gun not plugged"}


# ---- realtime data: gun status, faults, meter readings ----------------------------------------
@routes.handles(RealtimeData)
async def on_realtime(link: PileLink, frame: Frame, msg: RealtimeData) -> None:
    """Session commands first, so a serial that is not this gun's (the ledger's WrongPile) refuses the
    whole frame before its gun status is taken."""
    gateway = link.gateway
    at = link.now()
    sent_by = link.sent_by(msg.gun_no)
    gun_no = sent_by.gun_no
    status = GUN_STATUS[msg.status] if msg.status < len(GUN_STATUS) else "fault"
    names = {f"hw:{bit.bit_length()}": name for bit, name in HW_FAULTS.items() if msg.hw_faults & bit}
    faults = tuple(sorted(names))
    observed = (status, bool(msg.plugged), faults)
    in_session = msg.trade_no != NO_TRADE
    if in_session and status == "charging" and link.charging.get(msg.trade_no) != gun_no:
        if await link.on_session(msg.trade_no, sent_by, link.gateway.ledger.mark_charging, at=at):
            link.charging[msg.trade_no] = gun_no
    previous = link.guns.get(gun_no)
    if previous != observed:
        new_faults = [code for code in faults if code not in (previous or ("", False, ()))[2]]
        for code in new_faults if in_session else ():
            await link.on_session(msg.trade_no, sent_by, link.gateway.ledger.record_fault, at=at, source="pile",
                                  code=code, detail=names[code])
        gateway.pile_changes.add((link.pile_no, lambda p: (p.report_faults(gun_no, names, at),
                                                           p.report_gun_status(gun_no, status, bool(msg.plugged), at))))
        link.guns[gun_no] = observed
        if link.tariff_pending and not any(s == "charging" for s, _, _ in link.guns.values()):
            await link.push_tariff_when_idle()
    if in_session and status == "charging" and link.charging.get(msg.trade_no) == gun_no:
        gateway.readings.add({"trade_no": msg.trade_no, "sent_by": sent_by, "at": at, "energy": msg.energy,
                              "voltage_dv": msg.voltage_dv, "current_da": msg.current_da, "soc_pct": msg.soc_pct,
                              "pile_amount": msg.amount})
    link.note_report(gun_no, GunReport(status, msg.trade_no))


# ---- starts and stops ---------------------------------------------------------------------------
@routes.handles(RemoteStartReply)
async def on_start_reply(link: PileLink, frame: Frame, msg: RemoteStartReply) -> None:
    """A start's answer. "Gun busy" to a start sent again from what the pile is owed (after a
    reconnection) is taken as no answer: the pile may be charging that very session, having taken the
    first 0x34 and lost its answer. Its realtime frames then mark the session charging; if they never
    do, the start deadline fails it and releases the hold."""
    ok = msg.result == 1
    if not ok and msg.fail_reason == GUN_BUSY and link.was_sent_again(msg.trade_no):
        link.gateway.stats["repeated_start_busy"] += 1
        log.warning("pile %s gun %s: start %s sent again answered 'gun busy': taken as no answer", link.pile_no,
                    msg.gun_no, msg.trade_no)
        return
    reason = "" if ok else START_FAIL_REASONS.get(msg.fail_reason, f"pile reason {msg.fail_reason}")
    await link.on_session(msg.trade_no, link.sent_by(msg.gun_no), link.gateway.ledger.acknowledge_start,
                          at=link.now(), ok=ok, reason=reason)
    log.info("pile %s gun %s: start %s %s", link.pile_no, msg.gun_no, msg.trade_no,
             "accepted" if ok else f"refused ({reason})")


@routes.handles(RemoteStopReply)
async def on_stop_reply(link: PileLink, frame: Frame, msg: RemoteStopReply) -> None:
    if msg.result != 1:
        log.warning("pile %s gun %s refused a stop (reason %s)", link.pile_no, msg.gun_no, msg.fail_reason)


@routes.handles(StartRequest)
async def on_pile_start(link: PileLink, frame: Frame, msg: StartRequest) -> None:
    """A start by card or VIN at the pile (0x31): authorise it against the driver's wallet (0x32)."""
    kind, value = ("vin", msg.vin) if msg.start_type == 3 else ("card", msg.card_no.hex().upper())
    refused = 0
    trade_no, hold = NO_TRADE, 0
    try:
        trade_no, hold = await link.call(link.gateway.ledger.start_at_pile, pile_no=link.pile_no,
                                         gun_no=link.sent_by(msg.gun_no).gun_no, kind=kind, value=value,
                                         at=link.now(), rules=link.gateway.card_start_rules)
    except NotFound:
        refused = 1  # no such account
    except InsufficientFunds:
        refused = 3  # balance too low
    except PileUnavailable:
        refused = 4
    logical = value[-16:].rjust(16, "0") if kind == "card" else "0" * 16
    link.reply(frame, StartAuthReply(trade_no, msg.pile_no, msg.gun_no, logical, hold, 0 if refused else 1,
                                     refused))
    if not refused:
        await link.on_session(trade_no, link.sent_by(msg.gun_no), link.gateway.ledger.acknowledge_start,
                              at=link.now(), ok=True)
    log.info("pile %s gun %s: %s start by %s %s", link.pile_no, msg.gun_no,
             "refused" if refused else f"authorised ({hold} fen held)", kind, value)


# ---- faults --------------------------------------------------------------------------------------
@routes.handles(BmsAbort)
@routes.handles(ChargerAbort)
@routes.handles(BmsError)
async def on_abort(link: PileLink, frame: Frame, msg: Any) -> None:
    if msg.trade_no == NO_TRADE:
        return
    detail = ", ".join(f"{k}={v}" for k, v in vars(msg).items() if k not in ("trade_no", "pile_no", "gun_no") and v)
    await link.on_session(msg.trade_no, link.sent_by(msg.gun_no), link.gateway.ledger.record_fault,
                          at=link.now(), source="bms", code=f"0x{msg.TYPE:02X}", detail=detail[:500])
