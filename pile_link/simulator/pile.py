"""One simulated YKC pile: a TCP client speaking real frames through :mod:`pile_link.ykc`.

The pile logs in (0x01), uploads any transaction records it still holds, verifies its billing
model (0x05, then 0x09 if the platform says it differs), sends a heartbeat per gun every 10 s
(0x03) and realtime data (0x13) while idle and, more often, while charging. It honours the
platform's commands: remote start (0x34 → 0x33) and stop (0x36 → 0x35), read realtime (0x12 →
0x13), time sync (0x56 → 0x55), a pushed billing model (0x58 → 0x57), and answers to its own
requests (0x02, 0x04, 0x06, 0x0A, 0x32, 0x40). After each stop it sends the transaction record
(0x3B) and resends it until the platform confirms it (0x40), across disconnects.

Handlers are registered per message class with ``@handles`` (no if/elif chain over types).
Everything notable goes to the fleet's :class:`~pile_link.simulator.events.EventLog`.

Each pile has its own ``random.Random`` derived from the run seed, used for the pile's meter
registers, its vehicles and jitter, never the wall clock, so a run replays.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pile_link.simulator.battery import ChargeCurve, Vehicle
from pile_link.simulator.billing import BillingModel, TierMeter
from pile_link.simulator.clock import SimClock
from pile_link.simulator.events import Event, EventLog
from pile_link.simulator.gun import (
    NO_CARD,
    STOP_BY_FAULT_BIT,
    STOP_FAULT_DEFAULT,
    STOP_MANUAL,
    STOP_NO_BALANCE,
    STOP_PILOT_LOST,
    STOP_REMOTE,
    STOP_SOC_FULL,
    STOP_START_NO_BALANCE,
    ChargeSession,
    Gun,
    PendingStart,
    fault_name,
)
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelSet,
    BillingModelSetAck,
    BillingModelVerify,
    BillingModelVerifyAck,
    DecodeError,
    Frame,
    FrameDecoder,
    Heartbeat,
    HeartbeatAck,
    Login,
    LoginAck,
    Message,
    ReadRealtime,
    RemoteStart,
    RemoteStartReply,
    RemoteStop,
    RemoteStopReply,
    SequenceCounter,
    StartAuthReply,
    StartRequest,
    TimeSync,
    TimeSyncAck,
    TransactionConfirm,
    TransactionRecord,
    decode_message,
    encode_message,
    plausible_length,
)
from pile_link.ykc.frame import CrcOrder
from pile_link.ykc.transactions import START_BY_CARD, TRADE_APP, TRADE_CARD

# 0x33 fail reasons
START_OK, START_PILE_MISMATCH, START_GUN_BUSY, START_DEVICE_FAULT, START_OFFLINE, START_NOT_PLUGGED = range(6)
# 0x35 fail reasons
STOP_OK, STOP_PILE_MISMATCH, STOP_NOT_CHARGING, STOP_OTHER = range(4)

M = TypeVar("M", bound=Message)
Handler = Callable[["SimPile", Frame, Any], None]
_HANDLERS: dict[type[Message], Handler] = {}


def handles(cls: type[M]) -> Callable[[Callable[[SimPile, Frame, M], None]], Callable[[SimPile, Frame, M], None]]:
    """Register a method of SimPile as the handler of one platform → pile message class."""

    def register(fn: Callable[[SimPile, Frame, M], None]) -> Callable[[SimPile, Frame, M], None]:
        _HANDLERS[cls] = fn
        return fn

    return register


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended.

    Cancels again until done: on Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that
    arrives together with the reply it was waiting for (a login, model or card exchange).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


class SimulatorError(Exception):
    """A test or the CLI asked a pile to do something a real pile could not (unknown gun, ...)."""


@dataclass(frozen=True)
class PileSpec:
    """What a pile is: its number, guns, CRC habit and power. The rest is drawn from its seed."""

    pile_no: str
    guns: int = 1
    crc_order: CrcOrder = "le"  # "be": a quirky pile that sends the CRC high byte first
    max_power_w: int | None = None  # None: drawn from the pile's seed
    protocol_version: int = 0x10  # 0x0F V1.5, 0x10 V1.6
    firmware: str = "SIM-1.0"
    model_no: str = "0000"  # the billing model it holds at first login ("0000": none)
    plugged: bool = False  # guns plugged in from the start

    def __post_init__(self) -> None:
        if len(self.pile_no) != 14 or not self.pile_no.isdigit():
            raise ValueError(f"a pile number is 14 digits, got {self.pile_no!r}")
        if not 1 <= self.guns <= 99:
            raise ValueError(f"guns must be 1..99, got {self.guns}")
        if self.crc_order not in ("le", "be"):
            raise ValueError(f"crc_order must be 'le' or 'be', got {self.crc_order!r}")


@dataclass(frozen=True)
class PileConfig:
    """Timers. Link timers are real seconds (the platform enforces them in real time); charging
    timers are simulated seconds (they describe the charge)."""

    heartbeat_interval: float = 10.0  # real s, per gun
    heartbeat_misses: int = 3  # unanswered heartbeats before the pile drops the link and reconnects
    reply_timeout: float = 10.0  # real s to wait for 0x02, 0x06, 0x0A, 0x32
    record_retry: float = 30.0  # real s between resends of an unconfirmed 0x3B
    reconnect_delay: float = 5.0  # real s (x 0.5..1.5, seeded) before reconnecting after a drop
    auto_reconnect: bool = True
    step: float = 5.0  # sim s per charging-curve step
    realtime_interval: float = 15.0  # sim s between 0x13 while charging
    idle_realtime_interval: float = 300.0  # sim s between 0x13 while idle
    min_realtime_gap: float = 0.2  # real s: at high speed, 0x13 is sent at most this often per gun
    plug_start_window: float = 60.0  # sim s: a 0x34 refused "not plugged" starts if plugged within this


@dataclass
class _Pending:
    record: TransactionRecord
    attempts: int = 0
    last_sent: float = float("-inf")  # loop time


class SimPile:
    """A pile with ``spec.guns`` guns. Use through :class:`~pile_link.simulator.fleet.Fleet`."""

    def __init__(
        self,
        spec: PileSpec,
        host: str,
        port: int,
        *,
        clock: SimClock,
        log: EventLog,
        rng: random.Random,
        config: PileConfig | None = None,
    ) -> None:
        self.spec = spec
        self.pile_no = spec.pile_no
        self.host, self.port = host, port
        self.clock, self.log, self.rng = clock, log, rng
        self.config = config or PileConfig()
        self.max_power_w = spec.max_power_w or rng.choice((60_000, 120_000, 160_000, 240_000))
        self.guns = [
            Gun(no=i + 1, register=rng.randrange(0, 50_000_000), plugged=spec.plugged) for i in range(spec.guns)
        ]
        self.model: BillingModel | None = None
        self.model_no = spec.model_no
        self.clock_offset = timedelta(0)  # set by 0x56
        self.records: dict[str, _Pending] = {}  # unconfirmed 0x3B by trade number, oldest first
        self.online = False
        self.stopped = False  # login refused or closed: the pile stays off
        self.draining = False  # taken out of service (drain): refuses starts, stays online until its records are confirmed
        self.frames_sent = 0
        self.frames_received = 0
        self._want_online = asyncio.Event()
        self._want_online.set()
        self._online_changed = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._seq = SequenceCounter()
        self._waiters: list[tuple[type[Message], Callable[[Any], bool], asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._link_tasks: list[asyncio.Task[None]] = []
        self._last_ack = 0.0

    # -- public API ------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The pile's wall clock: simulated time plus the offset the platform's 0x56 set."""
        return self.clock.now() + self.clock_offset

    def gun(self, no: int | str) -> Gun:
        n = int(no)
        if not 1 <= n <= len(self.guns):
            raise SimulatorError(f"pile {self.pile_no} has guns 1..{len(self.guns)}, not {no!r}")
        return self.guns[n - 1]

    def start(self) -> None:
        """Begin connecting (in the background); see :meth:`wait_online`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"pile {self.pile_no}")

    async def wait_online(self, timeout: float = 10.0) -> None:
        async def online() -> None:
            while not self.online:
                if self.stopped:
                    raise SimulatorError(f"pile {self.pile_no} stopped (login refused?)")
                self._online_changed.clear()
                await self._online_changed.wait()

        await asyncio.wait_for(online(), timeout)

    async def disconnect(self) -> None:
        """Go offline (close the socket) and stay offline until :meth:`reconnect`. Charging goes on."""
        self._want_online.clear()
        self._drop_link()
        while self.online:
            self._online_changed.clear()
            await self._online_changed.wait()

    async def reconnect(self, timeout: float = 10.0) -> None:
        """Come back: connect, log in, upload buffered records. Returns when logged in."""
        self._want_online.set()
        await self.wait_online(timeout)

    async def close(self) -> None:
        """Stop everything: the link and every charging task (nothing more is sent)."""
        self.stopped = True
        self._want_online.clear()
        for gun in self.guns:
            if gun.task is not None:
                gun.task.cancel()
        self._drop_link()
        if self._task is not None:
            await stop_task(self._task)

    def drain(self) -> None:
        """Take the pile out of service, as an operator ending a test run would: refuse every new start
        (0x33 reason 3; a card gets no charge), drop a start waiting for a plug, and stop every charge as
        a driver pressing stop would (reason 0x45). The records go out at once and are resent until the
        platform confirms them; the link stays up (and reconnects) meanwhile. See :attr:`drained`."""
        self.draining = True
        for gun in self.guns:
            if gun.pending_start is not None:
                gun.pending_start = None
                self._emit(gun, "pending_start_dropped")
            if gun.charging:
                self._finish(gun, STOP_MANUAL)
        self._emit(None, "draining", records=len(self.records))

    @property
    def drained(self) -> bool:
        """Nothing charging and every record confirmed (after :meth:`drain`, the pile may be closed)."""
        return not self.records and not any(gun.charging for gun in self.guns)

    def plug(self, gun_no: int) -> None:
        """A driver plugs the gun into a car. Honours a 0x34 refused "not plugged" within 60 s."""
        gun = self.gun(gun_no)
        if gun.plugged:
            return
        gun.plugged = True
        self._emit(gun, "plugged")
        self._send_realtime(gun)
        pending, gun.pending_start = gun.pending_start, None
        if pending is not None and self.clock.elapsed() <= pending.deadline and self._can_start(gun) == START_OK:
            self._write(RemoteStartReply(pending.command.trade_no, self.pile_no, gun.gun_no, 1, START_OK))
            self._emit(gun, "start_replied", trade_no=pending.command.trade_no, result=1, fail_reason=START_OK)
            self._start_session(gun, pending.command.trade_no, TRADE_APP, pending.command.balance_fen,
                                logical_card_no=pending.command.logical_card_no,
                                physical_card=pending.command.physical_card)

    def unplug(self, gun_no: int) -> None:
        """The plug comes out. While charging that ends the charge (stop reason 0x6B)."""
        gun = self.gun(gun_no)
        if not gun.plugged:
            return
        if gun.charging:
            self._finish(gun, STOP_PILOT_LOST)
        gun.plugged = False
        self._emit(gun, "unplugged")
        self._send_realtime(gun)

    def press_stop(self, gun_no: int) -> None:
        """The stop button on the pile (stop reason 0x45)."""
        gun = self.gun(gun_no)
        if gun.charging:
            self._finish(gun, STOP_MANUAL)

    def fault(self, gun_no: int, bit: int = 0) -> None:
        """Raise hardware fault ``bit`` (0x13 bit mask, 0 = emergency stop). Stops a charge on the gun."""
        if not 0 <= bit <= 15:
            raise SimulatorError(f"fault bit must be 0..15, got {bit}")
        gun = self.gun(gun_no)
        gun.faults |= 1 << bit
        self._emit(gun, "fault", bit=bit, name=fault_name(bit))
        if gun.charging:
            self._finish(gun, STOP_BY_FAULT_BIT.get(bit, STOP_FAULT_DEFAULT))  # reports the fault too
        else:
            self._send_realtime(gun)

    def clear_fault(self, gun_no: int) -> None:
        gun = self.gun(gun_no)
        gun.faults = 0
        self._emit(gun, "fault_cleared")
        self._send_realtime(gun)

    async def swipe_card(self, gun_no: int, card: bytes | str) -> Event:
        """A card on the reader: 0x31 to the platform, then charge if its 0x32 authorises.

        ``card`` is the 8-byte physical card number (or its hex). Returns the ``card_accepted`` or
        ``card_refused`` event.
        """
        gun = self.gun(gun_no)
        card_bytes = bytes.fromhex(card) if isinstance(card, str) else bytes(card)
        card_bytes = card_bytes.rjust(8, b"\0")
        if len(card_bytes) != 8:
            raise SimulatorError(f"a physical card number is 8 bytes, got {len(card_bytes)}")
        if not gun.plugged:
            raise SimulatorError(f"gun {gun.gun_no} of {self.pile_no} is not plugged in")
        if gun.charging:
            raise SimulatorError(f"gun {gun.gun_no} of {self.pile_no} is already charging")
        reply = self._expect(StartAuthReply, lambda m: m.gun_no == gun.gun_no)
        sent = self._write(StartRequest(self.pile_no, gun.gun_no, START_BY_CARD, 0, card_bytes, bytes(16), ""))
        self._emit(gun, "card_swiped", card=card_bytes.hex().upper())
        if not sent:
            self._unexpect(reply)
            return self._emit(gun, "card_refused", card=card_bytes.hex().upper(), fail_reason=None, why="offline")
        try:
            auth: StartAuthReply = await asyncio.wait_for(reply, self.config.reply_timeout)
        except TimeoutError:
            self._unexpect(reply)
            return self._emit(gun, "card_refused", card=card_bytes.hex().upper(), fail_reason=None, why="no 0x32")
        if auth.result != 1:
            return self._emit(gun, "card_refused", card=card_bytes.hex().upper(), fail_reason=auth.fail_reason,
                              trade_no=auth.trade_no)
        if self._can_start(gun) != START_OK:
            return self._emit(gun, "card_refused", card=card_bytes.hex().upper(), fail_reason=None,
                              why="gun cannot start", trade_no=auth.trade_no)
        event = self._emit(gun, "card_accepted", card=card_bytes.hex().upper(), trade_no=auth.trade_no,
                           balance_fen=auth.balance_fen)
        self._start_session(gun, auth.trade_no, TRADE_CARD, auth.balance_fen, physical_card=card_bytes,
                            logical_card_no=auth.logical_card_no)
        return event

    # -- the connection --------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopped:
            await self._want_online.wait()
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self.config.reply_timeout
                )
            except (OSError, TimeoutError) as exc:
                self._emit(None, "connect_failed", reason=str(exc) or type(exc).__name__)
                await self._reconnect_pause()
                continue
            self._writer = writer
            self._seq = SequenceCounter()  # the sequence restarts at 0 on every connection
            self._emit(None, "connected")
            decoder = FrameDecoder(lenient_crc=True, length_filter=plausible_length)
            reader_task = asyncio.create_task(self._read(reader, decoder))
            reader_task.add_done_callback(lambda _: self._fail_waiters())
            reason = "closed by the platform"
            try:
                if not await self._login():
                    return
                self.online = True
                self._online_changed.set()
                self._last_ack = loop.time()
                self._link_tasks = [
                    asyncio.create_task(self._heartbeats()),
                    asyncio.create_task(self._resend_records()),
                    asyncio.create_task(self._idle_realtime()),
                ]
                self._upload_records()
                await self._verify_model()
                await reader_task
            except TimeoutError as exc:
                reason = f"timeout: {exc}"
            except (ConnectionError, OSError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                reader_task.cancel()
                for task in self._link_tasks:
                    task.cancel()
                self._link_tasks = []
                was_online = self.online
                self.online = False
                self._online_changed.set()
                self._drop_link()
                if not self._want_online.is_set():
                    reason = "disconnected by the simulator"
                if was_online or not self.stopped:
                    self._emit(None, "disconnected", reason=reason)
            if self._want_online.is_set() and not self.stopped:
                if not self.config.auto_reconnect:
                    self._want_online.clear()
                await self._reconnect_pause()

    async def _reconnect_pause(self) -> None:
        await asyncio.sleep(self.config.reconnect_delay * self.rng.uniform(0.5, 1.5))

    def _drop_link(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self._fail_waiters()

    def _fail_waiters(self) -> None:
        """Nobody will answer a request on a closed link: wake whoever waits for an answer."""
        for _, _, fut in self._waiters:
            if not fut.done():
                fut.set_exception(ConnectionError("link closed"))
        self._waiters.clear()

    async def _read(self, reader: asyncio.StreamReader, decoder: FrameDecoder) -> None:
        while True:
            chunk = await reader.read(4096)
            if not chunk:
                for item in decoder.flush():
                    self._on_item(item)
                return
            for item in decoder.feed(chunk):
                self._on_item(item)

    def _on_item(self, item: Frame | DecodeError) -> None:
        if isinstance(item, DecodeError):
            self._emit(None, "frame_error", code=item.code, reason=item.reason, hex=item.hex)
            return
        self.frames_received += 1
        try:
            msg = decode_message(item)
        except DecodeError as exc:
            self._emit(None, "frame_error", code=exc.code, reason=exc.reason, hex=exc.hex)
            return
        # State changes happen here, synchronously, in stream order: a 0x34 right behind the 0x0A
        # in the same read must find the model already taken. Waiters are only told afterwards.
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, item, msg)
        for waiter in list(self._waiters):
            cls, predicate, fut = waiter
            if isinstance(msg, cls) and not fut.done() and predicate(msg):
                self._waiters.remove(waiter)
                fut.set_result(msg)
                return
        if handler is None:
            self._emit(None, "unhandled", frame_type=f"0x{item.frame_type:02X}", message=type(msg).__name__)

    def _expect(self, cls: type[M], predicate: Callable[[M], bool] = lambda m: True) -> asyncio.Future[M]:
        fut: asyncio.Future[M] = asyncio.get_running_loop().create_future()
        self._waiters.append((cls, predicate, fut))
        return fut

    def _unexpect(self, fut: asyncio.Future[Any]) -> None:
        self._waiters = [w for w in self._waiters if w[2] is not fut]

    def _write(self, msg: Message, seq: bytes | None = None) -> bool:
        """Send one frame (a reply echoes ``seq``); False when offline (the frame is not sent)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        writer.write(encode_message(msg, seq if seq is not None else self._seq.next(), self.spec.crc_order))
        self.frames_sent += 1
        return True

    async def _login(self) -> bool:
        spec = self.spec
        login = Login(self.pile_no, 0, spec.guns, spec.protocol_version, spec.firmware, 1, "0", 4)
        reply = self._expect(LoginAck)
        self._write(login)
        ack: LoginAck = await asyncio.wait_for(reply, self.config.reply_timeout)
        if ack.result != 0:
            self.stopped = True
            self._emit(None, "login_failed", result=ack.result)
            self._online_changed.set()
            return False
        self._emit(None, "login_ok", crc_order=spec.crc_order, guns=spec.guns,
                   version="1.6" if spec.protocol_version == 0x10 else f"0x{spec.protocol_version:02X}")
        return True

    async def _verify_model(self) -> None:
        reply = self._expect(BillingModelVerifyAck)
        self._write(BillingModelVerify(self.pile_no, self.model_no))
        ack: BillingModelVerifyAck = await asyncio.wait_for(reply, self.config.reply_timeout)
        matches = ack.result == 0 and self.model is not None
        self._emit(None, "model_verified", model_no=self.model_no, matches=ack.result == 0)
        if matches:
            return
        reply2 = self._expect(BillingModelReply)
        self._write(BillingModelRequest(self.pile_no))
        await asyncio.wait_for(reply2, self.config.reply_timeout)  # taken by _on_model_reply

    def _take_model(self, msg: BillingModelReply | BillingModelSet, via: str) -> None:
        self.model = BillingModel.from_message(msg)
        self.model_no = msg.model_no
        self._emit(None, "model_received", model_no=msg.model_no, via=via, describe=self.model.describe())

    # -- periodic link traffic -------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.heartbeat_interval
        while True:
            for gun in self.guns:
                self._write(Heartbeat(self.pile_no, gun.gun_no, 1 if gun.faults else 0))
            await asyncio.sleep(interval)
            missed = (loop.time() - self._last_ack) / interval
            if missed > self.config.heartbeat_misses:
                self._emit(None, "heartbeat_lost", missed=int(missed))
                self._drop_link()  # the reader sees the close; _run reconnects
                return

    async def _resend_records(self) -> None:
        retry = self.config.record_retry
        while True:
            await asyncio.sleep(min(retry, 1.0) / 2)
            self._upload_records(only_due=True)

    def _upload_records(self, only_due: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        for pending in list(self.records.values()):
            if only_due and now - pending.last_sent < self.config.record_retry:
                continue
            if not self._write(pending.record):
                return
            pending.attempts += 1
            pending.last_sent = now
            rec = pending.record
            self._emit(self.gun(rec.gun_no), "record_sent", trade_no=rec.trade_no, attempt=pending.attempts,
                       energy=rec.energy, amount=rec.amount, stop_reason=rec.stop_reason)

    async def _idle_realtime(self) -> None:
        every = max(self.config.idle_realtime_interval, self.config.min_realtime_gap * self.clock.speed)
        for gun in self.guns:
            self._send_realtime(gun)
        while True:
            await self.clock.sleep(every)
            for gun in self.guns:
                if not gun.charging:
                    self._send_realtime(gun)

    def _send_realtime(self, gun: Gun, seq: bytes | None = None) -> None:
        msg = gun.realtime(self.pile_no)
        if self._write(msg, seq):
            r = gun.session.reading if gun.session else None
            self._emit(gun, "realtime", trade_no=msg.trade_no, status=msg.status, power_w=r.power_w if r else 0,
                       voltage_dv=msg.voltage_dv, current_da=msg.current_da, soc_pct=msg.soc_pct,
                       energy=msg.energy, amount=msg.amount, hw_faults=msg.hw_faults)

    # -- charging --------------------------------------------------------------------------------

    def _can_start(self, gun: Gun) -> int:
        if self.draining:
            return START_DEVICE_FAULT  # out of service: a pile being drained takes no new charge
        if gun.charging:
            return START_GUN_BUSY
        if gun.faults or self.model is None:
            return START_DEVICE_FAULT  # a pile must not charge without a valid billing model
        if not gun.plugged:
            return START_NOT_PLUGGED
        return START_OK

    def _start_session(
        self,
        gun: Gun,
        trade_no: str,
        trade_type: int,
        balance_fen: int | None,
        *,
        physical_card: bytes = NO_CARD,
        logical_card_no: str = "0" * 16,
    ) -> None:
        assert self.model is not None
        vehicle = Vehicle.draw(self.rng)
        session = ChargeSession(
            trade_no=trade_no,
            trade_type=trade_type,
            balance_fen=balance_fen,
            start_time=self.now().replace(microsecond=0),
            meter=TierMeter(self.model),
            curve=ChargeCurve(vehicle, self.max_power_w, random.Random(self.rng.random())),
            meter_start=gun.register,
            physical_card=physical_card,
            logical_card_no=logical_card_no,
        )
        gun.session = session
        gun.pending_start = None
        self._emit(gun, "charging_started", trade_no=trade_no, trade_type=trade_type, balance_fen=balance_fen,
                   start_soc=round(vehicle.start_soc), capacity_kwh=vehicle.capacity_wh // 1000)
        self._send_realtime(gun)  # report "charging" at once (the platform's 90 s start deadline)
        if balance_fen == 0:
            self._finish(gun, STOP_START_NO_BALANCE)
            return
        gun.task = asyncio.create_task(self._charge(gun, session), name=f"charge {self.pile_no}-{gun.gun_no}")

    async def _charge(self, gun: Gun, session: ChargeSession) -> None:
        """Advance the curve in fixed simulated steps (so a seed replays), report, stop when due."""
        cfg = self.config
        every = max(cfg.realtime_interval, cfg.min_realtime_gap * self.clock.speed)
        base = self.clock.elapsed()
        next_report = every
        k = 0
        while gun.session is session:
            k += 1
            await self.clock.sleep_until(base + k * cfg.step)
            if gun.session is not session:
                return
            reading = session.curve.step(cfg.step)
            tier = session.meter.model.tier_at(session.start_time + timedelta(seconds=(k - 1) * cfg.step))
            energy = reading.energy_delta
            budget = session.budget
            if budget is not None:
                energy = session.meter.affordable(tier, energy, budget)
            session.meter.add(tier, energy)
            gun.register += energy
            session.elapsed_s = k * cfg.step
            session.reading = reading
            if energy < reading.energy_delta:
                self._finish(gun, STOP_NO_BALANCE)
            elif reading.full:
                self._finish(gun, STOP_SOC_FULL)
            elif k * cfg.step >= next_report:
                next_report += every
                self._send_realtime(gun)

    def _finish(self, gun: Gun, reason: int) -> None:
        """End the session on ``gun`` now: record it, queue its 0x3B, report the gun idle (or faulted)."""
        session = gun.session
        if session is None:
            return
        session.stop_reason = reason
        gun.session = None
        gun.last_session = session
        if gun.task is not None and gun.task is not asyncio.current_task():
            gun.task.cancel()
        gun.task = None
        record = session.record(self.pile_no, gun.gun_no)
        self._emit(gun, "charging_stopped", trade_no=session.trade_no, stop_reason=reason, energy=record.energy,
                   amount=record.amount, soc_pct=int(session.curve.soc), minutes=round(session.elapsed_s / 60))
        self._send_realtime(gun)
        self.records[record.trade_no] = _Pending(record)
        if self.online:
            self._upload_records()

    # -- platform commands -----------------------------------------------------------------------

    @handles(HeartbeatAck)
    def _on_heartbeat_ack(self, frame: Frame, msg: HeartbeatAck) -> None:
        self._last_ack = asyncio.get_running_loop().time()

    @handles(RemoteStart)
    def _on_remote_start(self, frame: Frame, msg: RemoteStart) -> None:
        gun = self.guns[int(msg.gun_no) - 1] if msg.gun_no.isdigit() and 1 <= int(msg.gun_no) <= len(self.guns) else None
        self._emit(gun, "remote_start", trade_no=msg.trade_no, balance_fen=msg.balance_fen, gun_no=msg.gun_no)
        if msg.pile_no != self.pile_no or gun is None:
            reason = START_PILE_MISMATCH
        else:
            reason = self._can_start(gun)
        ok = reason == START_OK
        self._write(RemoteStartReply(msg.trade_no, self.pile_no, msg.gun_no, 1 if ok else 0, reason), frame.seq)
        self._emit(gun, "start_replied", trade_no=msg.trade_no, result=1 if ok else 0, fail_reason=reason)
        if gun is None:
            return
        if reason == START_NOT_PLUGGED:
            gun.pending_start = PendingStart(msg, self.clock.elapsed() + self.config.plug_start_window)
        elif ok:
            self._start_session(gun, msg.trade_no, TRADE_APP, msg.balance_fen,
                                logical_card_no=msg.logical_card_no, physical_card=msg.physical_card)

    @handles(RemoteStop)
    def _on_remote_stop(self, frame: Frame, msg: RemoteStop) -> None:
        gun = self.guns[int(msg.gun_no) - 1] if msg.gun_no.isdigit() and 1 <= int(msg.gun_no) <= len(self.guns) else None
        self._emit(gun, "remote_stop", gun_no=msg.gun_no)
        if msg.pile_no != self.pile_no or gun is None:
            result, reason = 0, STOP_PILE_MISMATCH
        elif not gun.charging:
            result, reason = 0, STOP_NOT_CHARGING
        else:
            result, reason = 1, STOP_OK
        self._write(RemoteStopReply(self.pile_no, msg.gun_no, result, reason), frame.seq)
        self._emit(gun, "stop_replied", result=result, fail_reason=reason)
        if gun is not None and result == 1:
            self._finish(gun, STOP_REMOTE)

    @handles(ReadRealtime)
    def _on_read_realtime(self, frame: Frame, msg: ReadRealtime) -> None:
        if msg.gun_no.isdigit() and 1 <= int(msg.gun_no) <= len(self.guns):
            self._send_realtime(self.guns[int(msg.gun_no) - 1], frame.seq)

    @handles(TimeSync)
    def _on_time_sync(self, frame: Frame, msg: TimeSync) -> None:
        if msg.time is not None:
            self.clock_offset = datetime(*msg.time.timetuple()[:6]) - self.clock.now().replace(microsecond=0)
        self._write(TimeSyncAck(self.pile_no, msg.time), frame.seq)
        self._emit(None, "time_synced", time=msg.time)

    @handles(BillingModelReply)
    def _on_model_reply(self, frame: Frame, msg: BillingModelReply) -> None:
        self._take_model(msg, "0x0A")

    @handles(BillingModelSet)
    def _on_model_set(self, frame: Frame, msg: BillingModelSet) -> None:
        # Sessions keep the model they started with; the new one applies to the next start.
        self._take_model(msg, "0x58")
        self._write(BillingModelSetAck(self.pile_no, 1), frame.seq)

    @handles(TransactionConfirm)
    def _on_confirm(self, frame: Frame, msg: TransactionConfirm) -> None:
        pending = self.records.pop(msg.trade_no, None)
        if pending is None:
            return  # a second 0x40 for a record already confirmed
        gun = self.gun(pending.record.gun_no)
        kind = "record_confirmed" if msg.result == 0 else "record_rejected"
        self._emit(gun, kind, trade_no=msg.trade_no, attempts=pending.attempts, result=msg.result)

    # -- events ----------------------------------------------------------------------------------

    def _emit(self, gun: Gun | None, kind: str, **data: Any) -> Event:
        return self.log.emit(self.now(), self.pile_no, gun.no if gun else None, kind, **data)
