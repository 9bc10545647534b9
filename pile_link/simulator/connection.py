"""A simulated pile's protocol I/O: the TCP client under :class:`~pile_link.simulator.pile.SimPile`.

:class:`PileConnection` connects, logs in (0x01 → 0x02; a refusal stops the pile, no answer is a link
problem and it tries again), uploads the transaction records the pile still holds, verifies its
billing model (0x05, then 0x09 if the platform says it differs), and keeps the link's periodic
traffic going: a heartbeat per gun every 10 s (0x03; after 3 unanswered intervals it drops the link),
idle realtime data (0x13) and resends of unconfirmed records (0x3B). It reconnects after a drop.

Frames read are decoded and handed to the pile side's handler table
(:data:`pile_link.simulator.handlers.routes`) in stream order; an answer to one of the pile's own
requests goes to whoever waits for it (:meth:`PileConnection.expect`). What the pile *is* (guns,
records, model) and what happens to it (plugs, charges, faults) is :class:`SimPile`'s.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any, TypeVar

from pile_link.simulator.billing import BillingModel
from pile_link.simulator.clock import SimClock
from pile_link.simulator.events import Event
from pile_link.simulator.gun import Gun
from pile_link.simulator.handlers import routes
from pile_link.simulator.spec import PendingRecord, PileConfig, PileSpec, SimulatorError
from pile_link.ykc import (
    BillingModelReply,
    BillingModelRequest,
    BillingModelVerify,
    BillingModelVerifyAck,
    DecodeError,
    Frame,
    FrameDecoder,
    Heartbeat,
    Login,
    LoginAck,
    Message,
    SequenceCounter,
    decode_message,
    encode_message,
    plausible_length,
)

M = TypeVar("M", bound=Message)


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


class PileConnection:
    """The link of one simulated pile. :class:`~pile_link.simulator.pile.SimPile` adds the pile."""

    # The pile's state the link reads and reports (set by SimPile).
    spec: PileSpec
    pile_no: str
    config: PileConfig
    clock: SimClock
    rng: random.Random
    guns: list[Gun]
    records: dict[str, PendingRecord]
    model: BillingModel | None
    model_no: str

    def emit(self, gun: Gun | None, kind: str, **data: Any) -> Event:
        raise NotImplementedError

    def gun(self, no: int | str) -> Gun:
        raise NotImplementedError

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.online = False
        self.stopped = False  # login refused or closed: the pile stays off
        self.frames_sent = 0
        self.frames_received = 0
        self.last_ack = 0.0  # loop time of the last heartbeat ack (0x04)
        self._want_online = asyncio.Event()
        self._want_online.set()
        self._online_changed = asyncio.Event()
        self._writer: asyncio.StreamWriter | None = None
        self._seq = SequenceCounter()
        self._waiters: list[tuple[type[Message], Callable[[Any], bool], asyncio.Future[Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self._link_tasks: list[asyncio.Task[None]] = []

    # -- coming and going ------------------------------------------------------------------------

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
                self.emit(None, "connect_failed", reason=str(exc) or type(exc).__name__)
                await self._reconnect_pause()
                continue
            self._writer = writer
            self._seq = SequenceCounter()  # the sequence restarts at 0 on every connection
            self.emit(None, "connected")
            decoder = FrameDecoder(lenient_crc=True, length_filter=plausible_length)
            reader_task = asyncio.create_task(self._read(reader, decoder))
            reader_task.add_done_callback(lambda _: self._fail_waiters())
            reason = "closed by the platform"
            try:
                if not await self._login():
                    return
                self.online = True
                self._online_changed.set()
                self.last_ack = loop.time()
                self._link_tasks = [
                    asyncio.create_task(self._heartbeats()),
                    asyncio.create_task(self._resend_records()),
                    asyncio.create_task(self._idle_realtime()),
                ]
                self.upload_records()
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
                    self.emit(None, "disconnected", reason=reason)
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
            self.emit(None, "frame_error", code=item.code, reason=item.reason, hex=item.hex)
            return
        self.frames_received += 1
        try:
            msg = decode_message(item)
        except DecodeError as exc:
            self.emit(None, "frame_error", code=exc.code, reason=exc.reason, hex=exc.hex)
            return
        # State changes happen here, synchronously, in stream order: a 0x34 right behind the 0x0A
        # in the same read must find the model already taken. Waiters are only told afterwards.
        handler = routes.get(msg)
        if handler is not None:
            handler(self, item, msg)  # type: ignore[arg-type]  # SimPile is the handlers' Pile
        for waiter in list(self._waiters):
            cls, predicate, fut = waiter
            if isinstance(msg, cls) and not fut.done() and predicate(msg):
                self._waiters.remove(waiter)
                fut.set_result(msg)
                return
        if handler is None:
            self.emit(None, "unhandled", frame_type=f"0x{item.frame_type:02X}", message=type(msg).__name__)

    def expect(self, cls: type[M], predicate: Callable[[M], bool] = lambda m: True) -> asyncio.Future[M]:
        """A future for the next ``cls`` frame that satisfies ``predicate`` (an answer to a request)."""
        fut: asyncio.Future[M] = asyncio.get_running_loop().create_future()
        self._waiters.append((cls, predicate, fut))
        return fut

    def unexpect(self, fut: asyncio.Future[Any]) -> None:
        self._waiters = [w for w in self._waiters if w[2] is not fut]

    def write(self, msg: Message, seq: bytes | None = None) -> bool:
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
        reply = self.expect(LoginAck)
        self.write(login)
        ack: LoginAck = await asyncio.wait_for(reply, self.config.reply_timeout)
        if ack.result != 0:
            self.stopped = True
            self.emit(None, "login_failed", result=ack.result)
            self._online_changed.set()
            return False
        self.emit(None, "login_ok", crc_order=spec.crc_order, guns=spec.guns,
                  version="1.6" if spec.protocol_version == 0x10 else f"0x{spec.protocol_version:02X}")
        return True

    async def _verify_model(self) -> None:
        reply = self.expect(BillingModelVerifyAck)
        self.write(BillingModelVerify(self.pile_no, self.model_no))
        ack: BillingModelVerifyAck = await asyncio.wait_for(reply, self.config.reply_timeout)
        matches = ack.result == 0 and self.model is not None
        self.emit(None, "model_verified", model_no=self.model_no, matches=ack.result == 0)
        if matches:
            return
        reply2 = self.expect(BillingModelReply)
        self.write(BillingModelRequest(self.pile_no))
        await asyncio.wait_for(reply2, self.config.reply_timeout)  # taken by handlers.on_model_reply

    # -- periodic link traffic -------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.heartbeat_interval
        while True:
            for gun in self.guns:
                self.write(Heartbeat(self.pile_no, gun.gun_no, 1 if gun.faults else 0))
            await asyncio.sleep(interval)
            missed = (loop.time() - self.last_ack) / interval
            if missed > self.config.heartbeat_misses:
                self.emit(None, "heartbeat_lost", missed=int(missed))
                self._drop_link()  # the reader sees the close; _run reconnects
                return

    async def _resend_records(self) -> None:
        retry = self.config.record_retry
        while True:
            await asyncio.sleep(min(retry, 1.0) / 2)
            self.upload_records(only_due=True)

    def upload_records(self, only_due: bool = False) -> None:
        """Send the unconfirmed transaction records (``only_due``: those not sent for ``record_retry`` s)."""
        now = asyncio.get_running_loop().time()
        for pending in list(self.records.values()):
            if only_due and now - pending.last_sent < self.config.record_retry:
                continue
            if not self.write(pending.record):
                return
            pending.attempts += 1
            pending.last_sent = now
            rec = pending.record
            self.emit(self.gun(rec.gun_no), "record_sent", trade_no=rec.trade_no, attempt=pending.attempts,
                      energy=rec.energy, amount=rec.amount, stop_reason=rec.stop_reason)

    async def _idle_realtime(self) -> None:
        every = max(self.config.idle_realtime_interval, self.config.min_realtime_gap * self.clock.speed)
        for gun in self.guns:
            self.send_realtime(gun)
        while True:
            await self.clock.sleep(every)
            for gun in self.guns:
                if not gun.charging:
                    self.send_realtime(gun)

    def send_realtime(self, gun: Gun, seq: bytes | None = None) -> None:
        """The gun's realtime data (0x13), logged if sent (``seq``: answering a 0x12)."""
        msg = gun.realtime(self.pile_no)
        if self.write(msg, seq):
            r = gun.session.reading if gun.session else None
            self.emit(gun, "realtime", trade_no=msg.trade_no, status=msg.status, power_w=r.power_w if r else 0,
                      voltage_dv=msg.voltage_dv, current_da=msg.current_da, soc_pct=msg.soc_pct,
                      energy=msg.energy, amount=msg.amount, hw_faults=msg.hw_faults)
