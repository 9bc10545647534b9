"""One pile's TCP connection: frames in, ledger commands out, answers back.

A :class:`PileLink` reads bytes, lets :class:`~pile_link.ykc.FrameDecoder` cut them into frames,
decodes each into its message dataclass and hands it to the handler of its type in the table it is
given (``routes``, a :class:`pile_link.ykc.routing.Routes`; the gateway's handlers are the modules of
:mod:`pile_link.handlers`, one per concern; the simulated pile keeps the other side's table). The link
needs only a :class:`~pile_link.context.LinkContext` from the gateway that serves it. Frames of one pile
are handled in order; the ledger calls they make run in the gateway's thread pool, so a slow commit
holds back only this pile.

Answers that mean "stored" (0x40 for 0x3B) are sent only after the ledger committed. Every frame read
or written after login goes to the gateway's frame log (:mod:`pile_link.frame_log`: queued, never
awaited). A bad frame is counted, logged in hex and skipped; a pile that sends only garbage, or does
not log in within the gateway's login deadline, is closed. Every frame after login is bound to the pile that logged in
(:mod:`pile_link.boundary`) before its handler runs, and every session command a handler gives the
ledger is scoped to that pile and the frame's gun (``sent_by``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.errors import DomainError, NotFound, WrongPile
from domain.ledger import PileGun
from pile_link import observed
from pile_link.boundary import Refusal, binding_refusal, gun_number, refusal_answer
from pile_link.context import LinkContext
from pile_link.downlink import billing_model
from pile_link.eager import start_eagerly
from pile_link.ykc import (
    BillingModelSet,
    DecodeError,
    Frame,
    FrameDecoder,
    Login,
    Message,
    ReadRealtime,
    SequenceCounter,
    TimeSync,
    decode_message,
    encode_message,
    encode_reply,
    plausible_length,
)
from pile_link.ykc.routing import Routes

log = logging.getLogger("chargeledger.pile_link")

MAX_ERRORS_BEFORE_LOGIN = 8  # a peer that sends this many bad frames and no login is not a YKC pile
MAX_ERROR_STREAK = 64  # ... or this many bad frames in a row after logging in
MAX_BACKLOG = 256  # frames read while a handler waits; beyond, reading pauses until they are handled


@dataclass(frozen=True, slots=True)
class GunReport:
    """What a gun last reported on a connection (its 0x13): its status and the session it names."""

    status: str
    trade_no: str

    def charging_another(self, trade_no: str) -> bool:
        return self.status == "charging" and self.trade_no != trade_no


_GUN_SETS: dict[frozenset[int], frozenset[int]] = {}


def gun_set(numbers: Any) -> frozenset[int]:
    """The same frozenset for every pile with the same guns (the registry's: a handful of shapes), not
    one per connection."""
    key = frozenset(numbers)
    return _GUN_SETS.setdefault(key, key)


class PileLink(asyncio.Protocol):
    """One connection as an ``asyncio.Protocol``: no StreamReader and no task of its own. Bytes are
    cut into frames where they arrive (:meth:`data_received`) and each frame's handler is run there
    (:func:`~pile_link.eager.start_eagerly`); a handler that waits (a ledger call) becomes a task, and
    the frames read meanwhile wait in ``backlog`` until it is done, so a pile's frames are handled
    in order. Reading pauses while ``MAX_BACKLOG`` frames wait (what the stream's buffer limit did)."""

    __slots__ = ("gateway", "routes", "transport", "peer", "decoder", "seq", "pile_no", "pile_id", "tenant_id",
                 "timezone", "crc_order", "last_seen", "last_time_sync", "guns", "gun_numbers", "charging", "reported",
                 "_report_arrived", "sent", "owed", "owed_rounds", "settling", "logged_in_at", "versions",
                 "tariff_pending", "pushed_tariff", "error_streak", "closed", "closing", "login_timer", "busy",
                 "backlog", "lost", "paused", "__weakref__")

    def __init__(self, gateway: LinkContext, routes: Routes[Any]) -> None:
        self.gateway = gateway
        self.routes = routes  # the handler of each message type (pile_link.handlers)
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.decoder = FrameDecoder(lenient_crc=True, length_filter=plausible_length)
        self.seq = SequenceCounter()
        self.pile_no: str | None = None
        self.pile_id: Any = None
        self.tenant_id: Any = None  # on the pile's log lines from its login on (pile_link/observed.py)
        self.timezone = "Asia/Shanghai"
        self.crc_order = "le"  # answered in the order the pile sends (a high-byte-first pile gets "be")
        self.last_seen = gateway.loop_time()
        self.last_time_sync = 0.0
        self.guns: dict[int, tuple[str, bool, tuple[str, ...]]] = {}  # last reported (status, plugged, faults)
        self.gun_numbers: frozenset[int] = frozenset()  # the guns the registry gives the pile
        self.charging: dict[str, int] = {}  # trade serial -> gun, marked charging by this link
        self.reported: dict[int, GunReport] = {}  # gun -> its last 0x13 on this connection
        self._report_arrived: asyncio.Event | None = None  # made when someone waits for a report
        # the session commands sent on this connection, and ("again", serial) for a start sent from what the
        # pile is owed (see on_start_reply); made at the first, as most connections never get one
        self.sent: set[tuple[Any, ...]] | None = None
        self.owed: asyncio.Task[None] | None = None  # delivering what the pile is owed, after login
        self.owed_rounds = 0  # deliveries of what it was owed finished on this connection (one a login)
        self.settling: dict[str, asyncio.Task[None]] = {}  # records being settled, by trade serial (on_transaction)
        self.logged_in_at: datetime | None = None
        self.versions: tuple[int, str] = (0, "")  # (protocol, firmware) the login named
        self.tariff_pending = False  # a billing-model push waits until every gun is idle
        self.pushed_tariff: tuple[Any, int] | None = None  # (tariff id, version) sent in the last 0x58
        self.error_streak = 0
        self.closed = False
        self.closing: Any = None  # the close under way, if it had to wait
        self.login_timer: asyncio.TimerHandle | None = None
        self.busy: asyncio.Future[Any] | None = None  # the handler being waited for
        self.backlog: list[Frame | DecodeError] = []  # frames read while it waits (at most MAX_BACKLOG)
        self.lost: str | None = None  # the connection ended while a handler ran: closed once the backlog is done
        self.paused = False

    # ---- the transport's callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.peer = transport.get_extra_info("peername")
        self.login_timer = asyncio.get_running_loop().call_later(self.gateway.login_deadline, self.login_overdue)
        self.gateway.link_accepted(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_seen = self.gateway.loop_time()
        self.backlog.extend(self.decoder.feed(data))
        if self.busy is None:
            self.handle_backlog()
        elif len(self.backlog) >= MAX_BACKLOG and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "connection closed" if exc is None else f"connection lost ({type(exc).__name__})"
        if self.busy is None:
            self.close_now(reason)
        else:
            self.lost = reason  # the frames already read are handled first, as a stream reader would

    def handle_backlog(self, done: Any = None) -> None:
        """Handle the frames read so far, in order, until one's handler has to wait (then again when it is done)."""
        self.busy = None
        while self.backlog and not self.closed:
            item = self.backlog.pop(0)
            if isinstance(item, DecodeError):
                self.bad_frame(item)
                continue
            waiting = start_eagerly(self.dispatch(item))
            if waiting is not None:
                self.busy = waiting
                waiting.add_done_callback(self.handle_backlog)
                return
        if self.paused and not self.closed:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        if self.closed:
            return
        if self.lost is not None:
            self.close_now(self.lost)
        elif self.too_much_garbage():
            log.warning("pile %s %s: closing, %d bad frames, %d garbage bytes", self.pile_no or "-",
                        self.peer, self.decoder.errors, self.decoder.garbage_bytes)
            self.close_now("garbage only")

    def close_now(self, reason: str) -> None:
        """Close from a callback: at once, unless closing has to wait for something."""
        waiting = start_eagerly(self.close(reason))
        if waiting is not None:
            self.closing = waiting

    def login_overdue(self) -> None:
        """No login within the gateway's deadline: not a pile we know, whatever else it sends."""
        if self.pile_no is None and not self.closed:
            self.gateway.stats["login_overdue"] += 1
            log.warning("%s: no login within %.0f s, closing", self.peer, self.gateway.login_deadline)
            self.close_now("no login")

    def too_much_garbage(self) -> bool:
        if self.pile_no is None:
            return self.decoder.errors >= MAX_ERRORS_BEFORE_LOGIN or self.decoder.garbage_bytes > 4096
        return self.error_streak >= MAX_ERROR_STREAK

    def bad_frame(self, error: DecodeError, recorded: bool = False) -> None:
        """Count and log it; a logged-in pile's is kept in the frame log too (unless ``recorded`` there
        already: a whole frame whose payload does not decode)."""
        self.error_streak += 1
        self.gateway.stats["bad_frames"] += 1
        observed.decode_error(error.code)
        log.warning("pile %s %s: bad frame (%s): %s", self.pile_no or "-", self.peer, error.reason,
                    error.raw.hex(" ").upper() if error.raw else "")
        if self.pile_no is not None and not recorded:
            self.gateway.frames.bad_frame(self.pile_no, error)

    async def dispatch(self, frame: Frame) -> None:
        if self.closed:  # replaced by a newer login of the same pile, or closed while this chunk was handled
            return
        at, refused = time.time(), False
        try:
            msg = self.decoded(frame)
            if msg is None:
                return
            observed.bind(self, msg)
            if self.pile_no is not None and (refusal := binding_refusal(msg, self.pile_no, self.gun_numbers)):
                self.refuse(frame, msg, refusal)
                refused = True
                return
            handler = self.routes.get(msg)
            if handler is None:
                self.gateway.stats["unhandled"] += 1
                return
            try:
                await handler(self, frame, msg)
            except WrongPile as error:  # the ledger's half of the boundary: the session is not this pile's gun's
                self.refuse(frame, msg, Refusal("foreign_session", str(error)))
                refused = True
            except DomainError as error:
                log.warning("pile %s: 0x%02X refused by the ledger: %s (%s)", self.pile_no, frame.frame_type,
                            error, error.code)
            except Exception:  # one bad handler run must not end the pile's connection
                self.gateway.stats["handler_errors"] += 1
                log.exception("pile %s: handling %r failed", self.pile_no, msg)
        finally:  # after its handler (which may refuse it), stamped when it was read; a login once accepted
            observed.frame_in(frame.frame_type, time.time() - at)
            if self.pile_no is not None:
                self.gateway.frames.frame_in(self.pile_no, at, frame, refused)

    def decoded(self, frame: Frame) -> Message | None:
        """The frame's message; None for one that does not decode or comes before a login (counted, logged)."""
        try:
            msg = decode_message(frame)
        except DecodeError as error:
            self.bad_frame(error, recorded=True)  # the frame itself is recorded by dispatch
            return None
        self.error_streak = 0
        self.gateway.stats["frames"] += 1
        if frame.crc_order != self.crc_order:
            self.crc_order = frame.crc_order
            log.info("pile %s %s sends its CRC %s; answering the same way", self.pile_no or "-", self.peer,
                     "high byte first" if frame.crc_order == "be" else "low byte first")
        if self.pile_no is None and not isinstance(msg, Login):
            log.warning("%s: 0x%02X before login, ignored", self.peer, frame.frame_type)
            self.gateway.stats["before_login"] += 1
            return None
        return msg

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
        if self.closed or (self.sent is not None and key in self.sent):
            return False
        self.note_sent(key)
        self.send(msg)
        return True

    def note_sent(self, key: tuple[Any, ...]) -> None:
        if self.sent is None:
            self.sent = set()
        self.sent.add(key)

    def start_sent_again(self, trade_no: str) -> None:
        """A start sent from what the pile is owed, which may have reached an earlier connection."""
        self.note_sent(("again", trade_no))

    def was_sent_again(self, trade_no: str) -> bool:
        return self.sent is not None and ("again", trade_no) in self.sent

    def note_report(self, gun_no: int, report: GunReport) -> None:
        self.reported[gun_no] = report
        if self._report_arrived is not None:
            self._report_arrived.set()

    async def await_reports(self, guns: set[int], timeout: float) -> None:
        """Until each of ``guns`` has reported on this connection (asked for with 0x12), at most ``timeout`` s."""
        for gun in sorted(guns - self.reported.keys()):
            self.send(ReadRealtime(self.pile_no, f"{gun:02d}"))  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._report_arrived is None:
            self._report_arrived = asyncio.Event()
        while not guns <= self.reported.keys() and not self.closed and loop.time() < deadline:
            self._report_arrived.clear()
            try:
                await asyncio.wait_for(self._report_arrived.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                return

    def write(self, data: bytes) -> None:
        transport = self.transport
        if not self.closed and transport is not None and not transport.is_closing():
            transport.write(data)
            observed.frame_out(data)
            if self.pile_no is not None:
                self.gateway.frames.frame_out(self.pile_no, data)

    async def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.backlog.clear()
        if self.login_timer is not None:
            self.login_timer.cancel()
        if self.owed is not None and self.owed is not asyncio.current_task():
            self.owed.cancel()
        if self.transport is not None:
            self.transport.close()  # what was written still goes out first
        await self.gateway.link_closed(self, reason)

    def owed_delivered(self, task: asyncio.Task[None]) -> None:
        """The owed delivery is done: let its task (coroutine, context) go, as a connection lives for days."""
        self.owed_rounds += 1
        if self.owed is task:
            self.owed = None

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

