"""One pile's TCP connection: frames in, ledger commands out, answers back.

A :class:`PileLink` reads bytes, lets :class:`~pile_link.ykc.FrameDecoder` cut them into frames,
decodes each into its message dataclass and hands it to the handler registered for its type in
``routes`` (:class:`pile_link.ykc.routing.Routes`: one handler per message type, registered by
decorator, as in ``mobilityhouse/ocpp``; the simulated pile keeps the other side's table). The link
needs only a :class:`~pile_link.context.LinkContext` from the gateway that serves it. Frames of one pile
are handled in order; the ledger calls they make run in the gateway's thread pool, so a slow commit
holds back only this pile.

Answers that mean "stored" (0x40 for 0x3B) are sent only after the ledger committed. A bad frame is
counted, logged in hex and skipped; a pile that sends only garbage, or does not log in within the
gateway's login deadline, is closed. Every frame after login is bound to the pile that logged in
(:mod:`pile_link.boundary`) before its handler runs, and every session command a handler gives the
ledger is scoped to that pile and the frame's gun (``sent_by``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from domain.errors import DomainError, InsufficientFunds, NotFound, PileUnavailable, WrongPile
from domain.ledger import PileGun
from domain.session import SettlementRecord
from pile_link.boundary import NO_TRADE, Refusal, binding_refusal, gun_number, refusal_answer
from pile_link.context import LinkContext
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelSet,
    BillingModelSetAck,
    BillingModelVerify,
    BillingModelVerifyAck,
    BmsAbort,
    BmsError,
    ChargerAbort,
    DecodeError,
    Frame,
    FrameDecoder,
    Heartbeat,
    HeartbeatAck,
    Login,
    LoginAck,
    Message,
    ReadRealtime,
    RealtimeData,
    Reboot,
    RebootAck,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    RemoteUpdateAck,
    SequenceCounter,
    StartAuthReply,
    StartRequest,
    TierRate,
    TimeSync,
    TimeSyncAck,
    TransactionConfirm,
    TransactionRecord,
    WorkParams,
    WorkParamsAck,
    decode_message,
    encode_message,
    encode_reply,
    plausible_length,
)
from pile_link.ykc.realtime import HW_FAULTS
from pile_link.ykc.routing import Routes

log = logging.getLogger("chargeledger.pile_link")

Handler = Callable[["PileLink", Frame, Any], Awaitable[None]]
routes: Routes[Handler] = Routes("platform")  # what piles send, and who handles it

GUN_STATUS = ("offline", "fault", "idle", "charging")  # the 0x13 status byte
MAX_ERRORS_BEFORE_LOGIN = 8  # a peer that sends this many bad frames and no login is not a YKC pile
MAX_ERROR_STREAK = 64  # ... or this many bad frames in a row after logging in
GUN_BUSY = 2  # 0x33 fail reason: the gun is already charging
START_FAIL_REASONS = {1: "pile number mismatch", GUN_BUSY: "gun busy", 3: "device fault", 4: "pile offline",
                      5: "gun not plugged"}


@dataclass(frozen=True)
class GunReport:
    """What a gun last reported on a connection (its 0x13): its status and the session it names."""

    status: str
    trade_no: str

    def charging_another(self, trade_no: str) -> bool:
        return self.status == "charging" and self.trade_no != trade_no


def utc_from_pile(local: datetime | None, tz: str) -> datetime | None:
    """A pile's naive wall-clock time (CP56Time2a) as a UTC instant, read in the station's zone."""
    if local is None:
        return None
    return datetime(local.year, local.month, local.day, local.hour, local.minute, local.second,
                    local.microsecond, tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


class PileLink:
    def __init__(self, gateway: LinkContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.gateway = gateway
        self.reader = reader
        self.writer = writer
        self.peer = writer.get_extra_info("peername")
        self.decoder = FrameDecoder(lenient_crc=True, length_filter=plausible_length)
        self.seq = SequenceCounter()
        self.pile_no: str | None = None
        self.pile_id: Any = None
        self.timezone = "Asia/Shanghai"
        self.crc_order = "le"  # answered in the order the pile sends (a high-byte-first pile gets "be")
        self.last_seen = gateway.loop_time()
        self.last_time_sync = 0.0
        self.guns: dict[int, tuple[str, bool, tuple[str, ...]]] = {}  # last reported (status, plugged, faults)
        self.gun_numbers: frozenset[int] = frozenset()  # the guns the registry gives the pile
        self.charging: dict[str, int] = {}  # trade serial -> gun, marked charging by this link
        self.reported: dict[int, GunReport] = {}  # gun -> its last 0x13 on this connection
        self.report_arrived = asyncio.Event()
        self.sent: set[tuple[Any, ...]] = set()  # the session commands sent on this connection
        self.starts_sent_again: set[str] = set()  # serials of starts sent from what is owed (see on_start_reply)
        self.owed: asyncio.Task[None] | None = None  # delivering what the pile is owed, after login
        self.settling: dict[str, asyncio.Task[None]] = {}  # records being settled, by trade serial (on_transaction)
        self.logged_in_at: datetime | None = None
        self.versions: tuple[int, str] = (0, "")  # (protocol, firmware) the login named
        self.tariff_pending = False  # a billing-model push waits until every gun is idle
        self.pushed_tariff: tuple[Any, int] | None = None  # (tariff id, version) sent in the last 0x58
        self.error_streak = 0
        self.closed = False
        self.closing: asyncio.Task[None] | None = None
        self.login_timer = asyncio.get_running_loop().call_later(gateway.login_deadline, self.login_overdue)

    # ---- the read loop ----------------------------------------------------------------------
    async def serve(self) -> None:
        reason = "connection closed"
        try:
            while not self.closed:
                chunk = await self.reader.read(4096)
                if not chunk:
                    break
                self.last_seen = self.gateway.loop_time()
                for item in self.decoder.feed(chunk):
                    if isinstance(item, DecodeError):
                        self.bad_frame(item)
                    else:
                        await self.dispatch(item)
                if self.too_much_garbage():
                    reason = "garbage only"
                    log.warning("pile %s %s: closing, %d bad frames, %d garbage bytes", self.pile_no or "-",
                                self.peer, self.decoder.errors, self.decoder.garbage_bytes)
                    break
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            reason = f"connection lost ({type(exc).__name__})"
        finally:
            await self.close(reason)

    def login_overdue(self) -> None:
        """No login within the gateway's deadline: not a pile we know, whatever else it sends."""
        if self.pile_no is None and not self.closed:
            self.gateway.stats["login_overdue"] += 1
            log.warning("%s: no login within %.0f s, closing", self.peer, self.gateway.login_deadline)
            self.closing = asyncio.ensure_future(self.close("no login"))

    def too_much_garbage(self) -> bool:
        if self.pile_no is None:
            return self.decoder.errors >= MAX_ERRORS_BEFORE_LOGIN or self.decoder.garbage_bytes > 4096
        return self.error_streak >= MAX_ERROR_STREAK

    def bad_frame(self, error: DecodeError) -> None:
        self.error_streak += 1
        self.gateway.stats["bad_frames"] += 1
        log.warning("pile %s %s: bad frame (%s): %s", self.pile_no or "-", self.peer, error.reason,
                    error.raw.hex(" ").upper() if error.raw else "")

    async def dispatch(self, frame: Frame) -> None:
        if self.closed:  # replaced by a newer login of the same pile, or closed while this chunk was handled
            return
        try:
            msg = decode_message(frame)
        except DecodeError as error:
            self.bad_frame(error)
            return
        self.error_streak = 0
        self.gateway.stats["frames"] += 1
        if frame.crc_order != self.crc_order:
            self.crc_order = frame.crc_order
            log.info("pile %s %s sends its CRC %s; answering the same way", self.pile_no or "-", self.peer,
                     "high byte first" if frame.crc_order == "be" else "low byte first")
        if self.pile_no is None:
            if not isinstance(msg, Login):
                log.warning("%s: 0x%02X before login, ignored", self.peer, frame.frame_type)
                self.gateway.stats["before_login"] += 1
                return
        else:
            refusal = binding_refusal(msg, self.pile_no, self.gun_numbers)
            if refusal is not None:
                self.refuse(frame, msg, refusal)
                return
        handler = routes.get(msg)
        if handler is None:
            self.gateway.stats["unhandled"] += 1
            return
        try:
            await handler(self, frame, msg)
        except WrongPile as error:  # the ledger's half of the boundary: the session is not this pile's gun's
            self.refuse(frame, msg, Refusal("foreign_session", str(error)))
        except DomainError as error:
            log.warning("pile %s: 0x%02X refused by the ledger: %s (%s)", self.pile_no, frame.frame_type,
                        error, error.code)
        except Exception:  # one bad handler run must not end the pile's connection
            self.gateway.stats["handler_errors"] += 1
            log.exception("pile %s: handling %r failed", self.pile_no, msg)

    def refuse(self, frame: Frame, msg: Message, refusal: Refusal) -> None:
        """A frame this connection's pile may not send: answered as the protocol says, counted,
        logged, and reported on the pile (throttled) for the alarms view."""
        answer = refusal_answer(msg)
        if answer is not None:
            self.reply(frame, answer)
        self.gateway.frame_refused(self.pile_no, refusal, frame.frame_type)  # type: ignore[arg-type]
        log.warning("pile %s %s: 0x%02X refused (%s): %s", self.pile_no, self.peer, frame.frame_type, refusal.kind,
                    refusal.detail)

    async def on_session(self, trade_no: str, sent_by: PileGun, use_case: Callable[..., Any],
                         **kwargs: Any) -> bool:
        """Run a session use case of the ledger (``ledger.mark_charging``, ...) scoped to the pile and
        gun that sent the frame (the ledger raises WrongPile for another's session). False if the
        ledger never saw the session start: an offline start, which its transaction record will open."""
        try:
            await self.call(use_case, trade_no, sent_by=sent_by, **kwargs)
        except NotFound:
            log.info("pile %s gun %s: %s of unknown session %s skipped", self.pile_no, sent_by.gun_no,
                     use_case.__name__, trade_no)
            return False
        return True

    def sent_by(self, gun_byte: str) -> PileGun:
        """Who sent a frame naming this gun (checked by the boundary, so a gun of this pile)."""
        return PileGun(self.pile_no, gun_number(gun_byte))  # type: ignore[arg-type]

    # ---- writing ---------------------------------------------------------------------------
    def record_connected(self, at: datetime) -> None:
        """Record on the pile that it is connected here (at login, and again if a watchdog took this
        gateway for gone: :mod:`adapters.followers.gateway_leases`)."""
        gateway, (protocol, program) = self.gateway, self.versions
        self.gateway.pile_changes.add((self.pile_no, lambda p: p.connect(at=at, gateway=gateway.gateway_id,
                                                                         protocol_version=protocol,
                                                                         program_version=program)))

    def reply(self, request: Frame, msg: Message) -> None:
        if not self.closed:
            self.write(encode_reply(request, msg, mirror_crc=True))

    def send(self, msg: Message) -> None:
        if not self.closed:
            self.write(encode_message(msg, self.seq.next(), self.crc_order))  # type: ignore[arg-type]

    def send_once(self, key: tuple[Any, ...], msg: Message) -> bool:
        """Send ``msg`` unless ``key`` was sent on this connection already; True if sent."""
        if key in self.sent or self.closed:
            return False
        self.sent.add(key)
        self.send(msg)
        return True

    def note_report(self, gun_no: int, report: GunReport) -> None:
        self.reported[gun_no] = report
        self.report_arrived.set()

    async def await_reports(self, guns: set[int], timeout: float) -> None:
        """Until each of ``guns`` has reported on this connection (asked for with 0x12), at most ``timeout`` s."""
        for gun in sorted(guns - self.reported.keys()):
            self.send(ReadRealtime(self.pile_no, f"{gun:02d}"))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not guns <= self.reported.keys() and not self.closed and loop.time() < deadline:
            self.report_arrived.clear()
            try:
                await asyncio.wait_for(self.report_arrived.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                return

    def write(self, data: bytes) -> None:
        if not self.closed and not self.writer.is_closing():
            self.writer.write(data)

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.login_timer.cancel()
        if self.owed is not None and self.owed is not asyncio.current_task():
            self.owed.cancel()
        self.writer.close()
        await self.gateway.link_closed(self, reason)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Run a (blocking) ledger call in the gateway's thread pool."""
        return self.gateway.run(fn, *args, **kwargs)

    def now(self) -> datetime:
        return self.gateway.clock()

    # ---- pushes from the platform ------------------------------------------------------------
    def send_time(self) -> None:
        local = self.now().astimezone(ZoneInfo(self.timezone)).replace(tzinfo=None, microsecond=0)
        self.send(TimeSync(self.pile_no, local))  # type: ignore[arg-type]
        self.last_time_sync = self.gateway.loop_time()

    async def push_tariff_when_idle(self) -> None:
        if any(status == "charging" for status, _, _ in self.guns.values()):
            self.tariff_pending = True  # sent once every gun is idle (see the 0x13 handler)
            return
        self.tariff_pending = False
        tariff = await self.call(self.gateway.tariff_for_pile, self.pile_no)
        self.pushed_tariff = (tariff.id, tariff.tariff_version)
        self.send(BillingModelSet(**billing_model(self.pile_no, tariff)))


def billing_model(pile_no: str | None, tariff: Any) -> dict[str, Any]:
    """The YKC billing model of a tariff version: four tier rates and the 48-slot table."""
    schedule = tariff.schedule
    tiers = tuple(TierRate(p.electricity, p.service) for p in schedule.prices)  # sharp, peak, flat, valley
    return {"pile_no": pile_no, "model_no": f"{tariff.model_no:04d}", "tiers": tiers, "loss_ratio": 0,
            "slots": tuple(schedule.slots)}


# ---- registration, heartbeat, billing model, time ---------------------------------------------
@routes.handles(Login)
async def on_login(link: PileLink, frame: Frame, msg: Login) -> None:
    gateway = link.gateway
    try:
        pile = await link.call(gateway.ledger.pile_login, msg.pile_no)
    except (NotFound, PileUnavailable) as error:
        gateway.stats["logins_refused"] += 1
        log.warning("%s: login of pile %s refused: %s", link.peer, msg.pile_no, error)
        link.reply(frame, LoginAck(msg.pile_no, 1))
        await link.writer.drain()
        await link.close(f"login refused: {error.code}")
        return
    link.pile_no, link.pile_id, link.logged_in_at = msg.pile_no, pile.id, link.now()
    link.login_timer.cancel()
    link.timezone = await link.call(gateway.station_timezone, pile.station_id)
    link.guns = {int(n): (g["status"], g["plugged"], tuple(sorted(g["faults"]))) for n, g in pile.guns.items()}
    link.gun_numbers = frozenset(link.guns)
    link.reply(frame, LoginAck(msg.pile_no, 0))
    link.versions = (msg.protocol_version, msg.firmware_version.strip("\x00 "))
    link.record_connected(link.now())
    await gateway.link_opened(link)
    log.info("pile %s online from %s (protocol %s, firmware %s)", msg.pile_no, link.peer,
             msg.protocol_version, msg.firmware_version.strip())
    link.send_time()
    if link.owed is not None:  # logged in again on the same connection
        link.owed.cancel()
    link.owed = asyncio.create_task(gateway.deliver_owed_until_done(link), name=f"owed to {msg.pile_no}")


@routes.handles(Heartbeat)
async def on_heartbeat(link: PileLink, frame: Frame, msg: Heartbeat) -> None:
    link.reply(frame, HeartbeatAck(msg.pile_no, msg.gun_no, 0))


@routes.handles(BillingModelVerify)
async def on_billing_verify(link: PileLink, frame: Frame, msg: BillingModelVerify) -> None:
    same = await link.call(link.gateway.ledger.billing_model_matches, link.pile_no, msg.model_no)
    link.reply(frame, BillingModelVerifyAck(msg.pile_no, msg.model_no, 0 if same else 1))


@routes.handles(BillingModelRequest)
async def on_billing_request(link: PileLink, frame: Frame, msg: BillingModelRequest) -> None:
    tariff = await link.call(link.gateway.tariff_for_pile, link.pile_no)
    link.reply(frame, BillingModelReply(**billing_model(link.pile_no, tariff)))
    await link.call(link.gateway.ledger.confirm_billing_model, link.pile_no, tariff.id, tariff.tariff_version,
                    link.now())


@routes.handles(BillingModelSetAck)
async def on_billing_set_ack(link: PileLink, frame: Frame, msg: BillingModelSetAck) -> None:
    ok = msg.result == 1
    if ok and link.pushed_tariff is not None:
        await link.call(link.gateway.ledger.confirm_billing_model, link.pile_no, *link.pushed_tariff, link.now())
    link.pushed_tariff = None
    await link.call(link.gateway.ledger.answer_pile_command, link.pile_no, "push_tariff", ok,
                    "" if ok else "pile refused the billing model", link.now())


@routes.handles(TimeSyncAck)
async def on_time_ack(link: PileLink, frame: Frame, msg: TimeSyncAck) -> None:
    log.debug("pile %s clock set to %s", link.pile_no, msg.time)


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
    if not ok and msg.fail_reason == GUN_BUSY and msg.trade_no in link.starts_sent_again:
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


# ---- the transaction record -----------------------------------------------------------------------
@routes.handles(TransactionRecord)
async def on_transaction(link: PileLink, frame: Frame, msg: TransactionRecord) -> None:
    """Settle by trade serial, then confirm (0x40). Every delivery is confirmed, duplicates too.

    The settlement runs beside the connection's read loop, not on it: while it waits for the database
    (an outage of any length), the pile's heartbeats and readings are still read and answered; the
    record alone waits, unanswered, as a record not yet stored must. A resend of a record whose
    settlement is under way is left to that one (it answers the pile)."""
    if msg.trade_no in link.settling:
        link.gateway.stats["records_resent_while_settling"] += 1
        return
    record = SettlementRecord(
        tier_energy=tuple(t.energy for t in msg.tiers),  # type: ignore[arg-type]
        pile_tier_amounts=tuple(t.amount for t in msg.tiers),  # type: ignore[arg-type]
        pile_total_amount=msg.amount, pile_total_energy=msg.energy, meter_start=msg.meter_start,
        meter_end=msg.meter_end, started_at=utc_from_pile(msg.start_time, link.timezone),
        ended_at=utc_from_pile(msg.end_time, link.timezone), stop_reason=msg.stop_reason,
    )
    sent_by = link.sent_by(msg.gun_no)
    task = asyncio.create_task(settle(link, frame, msg, record, sent_by), name=f"settle {msg.trade_no}")
    link.settling[msg.trade_no] = task
    task.add_done_callback(lambda _: link.settling.pop(msg.trade_no, None))


async def settle(link: PileLink, frame: Frame, msg: TransactionRecord, record: SettlementRecord,
                 sent_by: PileGun) -> None:
    try:
        await link.gateway.readings.flush()  # every reading before the record, in order
        try:
            await link.call(link.gateway.ledger.settle, msg.trade_no, record, link.now(), pile_no=link.pile_no,
                            gun_no=sent_by.gun_no)
        except WrongPile as error:  # refused at the boundary: answered 0x40 "invalid", counted and reported
            link.refuse(frame, msg, Refusal("foreign_session", str(error)))
            return
        except DomainError as error:
            log.error("pile %s: transaction record %s refused: %s (%s)", link.pile_no, msg.trade_no, error,
                      error.code)
            link.reply(frame, TransactionConfirm(msg.trade_no, 1))
            return
    except asyncio.CancelledError:
        raise
    except Exception:  # as PileLink.dispatch: one bad run must not end the connection; the pile resends
        link.gateway.stats["handler_errors"] += 1
        log.exception("pile %s: settling %s failed", link.pile_no, msg.trade_no)
        return
    link.charging.pop(msg.trade_no, None)
    link.gateway.stop_requested.discard(msg.trade_no)
    link.gateway.stats["records_settled"] += 1
    link.reply(frame, TransactionConfirm(msg.trade_no, 0))
    log.info("pile %s gun %s: record %s settled, %s kWh", link.pile_no, msg.gun_no, msg.trade_no,
             f"{msg.energy / 10000:.4f}")


# ---- answers to platform commands -------------------------------------------------------------------
@routes.handles(WorkParamsAck)
async def on_params_ack(link: PileLink, frame: Frame, msg: WorkParamsAck) -> None:
    await link.call(link.gateway.ledger.answer_pile_command, link.pile_no, "set_parameters", msg.result == 1,
                    "", link.now())


@routes.handles(RebootAck)
async def on_reboot_ack(link: PileLink, frame: Frame, msg: RebootAck) -> None:
    await link.call(link.gateway.ledger.answer_pile_command, link.pile_no, "reboot", msg.result == 1, "",
                    link.now())


@routes.handles(RemoteUpdateAck)
async def on_update_ack(link: PileLink, frame: Frame, msg: RemoteUpdateAck) -> None:
    log.info("pile %s: firmware update status %s", link.pile_no, msg.status)


# ---- frames the platform sends, built from ledger events -----------------------------------------------
def start_frame(pile_no: str, gun_no: int, trade_no: str, balance_fen: int) -> RemoteStart:
    return RemoteStart(trade_no, pile_no, f"{gun_no:02d}", "0" * 16, bytes(8), balance_fen)


def stop_frame(pile_no: str, gun_no: int) -> RemoteStop:
    return RemoteStop(pile_no, f"{gun_no:02d}")


def reboot_frame(pile_no: str, params: dict[str, Any]) -> Reboot:
    return Reboot(pile_no, 2 if params.get("when") == "idle" else 1)


def parameters_frame(pile_no: str, params: dict[str, Any]) -> WorkParams:
    return WorkParams(pile_no, 1 if params.get("disabled") else 0, int(params.get("max_power_pct", 100)))
