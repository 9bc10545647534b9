"""One simulated YKC pile: its state and what happens to it, over :mod:`pile_link.simulator.connection`.

A :class:`SimPile` is a pile with guns, a billing model and the transaction records it still holds.
Drivers and tests act on it (plug, unplug, press stop, swipe a card, raise a fault, drain); it
charges along a seeded curve and, after each stop, keeps the transaction record (0x3B) until the
platform confirms it (0x40), across disconnects. Its link to the platform (connect, login, frames,
heartbeats, resends) is :class:`~pile_link.simulator.connection.PileConnection`, which it extends;
what it does with each platform command (0x34, 0x36, 0x12, 0x56, 0x58, 0x40 ...) is one handler per
message class in :mod:`pile_link.simulator.handlers`. Its identity and timers are
:class:`~pile_link.simulator.spec.PileSpec` and :class:`~pile_link.simulator.spec.PileConfig`.
Everything notable goes to the fleet's :class:`~pile_link.simulator.events.EventLog`.

Each pile has its own ``random.Random`` derived from the run seed, used for the pile's meter
registers, its vehicles and jitter, never the wall clock, so a run replays.
"""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from typing import Any

from pile_link.simulator.battery import ChargeCurve, Vehicle
from pile_link.simulator.billing import BillingModel, TierMeter
from pile_link.simulator.clock import SimClock
from pile_link.simulator.connection import PileConnection
from pile_link.simulator.events import Event, EventLog
from pile_link.simulator.gun import (
    NO_CARD,
    STOP_BY_FAULT_BIT,
    STOP_FAULT_DEFAULT,
    STOP_MANUAL,
    STOP_NO_BALANCE,
    STOP_PILOT_LOST,
    STOP_SOC_FULL,
    STOP_START_NO_BALANCE,
    ChargeSession,
    Gun,
    fault_name,
)
from pile_link.simulator.spec import (
    START_DEVICE_FAULT,
    START_GUN_BUSY,
    START_NOT_PLUGGED,
    START_OK,
    PendingRecord,
    PileConfig,
    PileSpec,
    SimulatorError,
)
from pile_link.ykc import (
    BillingModelReply,
    BillingModelSet,
    RemoteStartReply,
    StartAuthReply,
    StartRequest,
)
from pile_link.ykc.transactions import START_BY_CARD, TRADE_APP, TRADE_CARD

class SimPile(PileConnection):
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
        super().__init__(host, port)
        self.spec = spec
        self.pile_no = spec.pile_no
        self.clock, self.log, self.rng = clock, log, rng
        self.config = config or PileConfig()
        self.max_power_w = spec.max_power_w or rng.choice((60_000, 120_000, 160_000, 240_000))
        self.guns = [
            Gun(no=i + 1, register=rng.randrange(0, 50_000_000), plugged=spec.plugged) for i in range(spec.guns)
        ]
        self.model: BillingModel | None = None
        self.model_no = spec.model_no
        self.clock_offset = timedelta(0)  # set by 0x56
        self.records: dict[str, PendingRecord] = {}  # unconfirmed 0x3B by trade number, oldest first
        self.draining = False  # taken out of service (drain): refuses starts, stays online until its records are confirmed

    # -- public API ------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The pile's wall clock: simulated time plus the offset the platform's 0x56 set."""
        return self.clock.now() + self.clock_offset

    def gun(self, no: int | str) -> Gun:
        n = int(no)
        if not 1 <= n <= len(self.guns):
            raise SimulatorError(f"pile {self.pile_no} has guns 1..{len(self.guns)}, not {no!r}")
        return self.guns[n - 1]

    def drain(self) -> None:
        """Take the pile out of service, as an operator ending a test run would: refuse every new start
        (0x33 reason 3; a card gets no charge), drop a start waiting for a plug, and stop every charge as
        a driver pressing stop would (reason 0x45). The records go out at once and are resent until the
        platform confirms them; the link stays up (and reconnects) meanwhile. See :attr:`drained`."""
        self.draining = True
        for gun in self.guns:
            if gun.pending_start is not None:
                gun.pending_start = None
                self.emit(gun, "pending_start_dropped")
            if gun.charging:
                self.finish(gun, STOP_MANUAL)
        self.emit(None, "draining", records=len(self.records))

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
        self.emit(gun, "plugged")
        self.send_realtime(gun)
        pending, gun.pending_start = gun.pending_start, None
        if pending is not None and self.clock.elapsed() <= pending.deadline and self.can_start(gun) == START_OK:
            self.write(RemoteStartReply(pending.command.trade_no, self.pile_no, gun.gun_no, 1, START_OK))
            self.emit(gun, "start_replied", trade_no=pending.command.trade_no, result=1, fail_reason=START_OK)
            self.start_session(gun, pending.command.trade_no, TRADE_APP, pending.command.balance_fen,
                                logical_card_no=pending.command.logical_card_no,
                                physical_card=pending.command.physical_card)

    def unplug(self, gun_no: int) -> None:
        """The plug comes out. While charging that ends the charge (stop reason 0x6B)."""
        gun = self.gun(gun_no)
        if not gun.plugged:
            return
        if gun.charging:
            self.finish(gun, STOP_PILOT_LOST)
        gun.plugged = False
        self.emit(gun, "unplugged")
        self.send_realtime(gun)

    def press_stop(self, gun_no: int) -> None:
        """The stop button on the pile (stop reason 0x45)."""
        gun = self.gun(gun_no)
        if gun.charging:
            self.finish(gun, STOP_MANUAL)

    def fault(self, gun_no: int, bit: int = 0) -> None:
        """Raise hardware fault ``bit`` (0x13 bit mask, 0 = emergency stop). Stops a charge on the gun."""
        if not 0 <= bit <= 15:
            raise SimulatorError(f"fault bit must be 0..15, got {bit}")
        gun = self.gun(gun_no)
        gun.faults |= 1 << bit
        self.emit(gun, "fault", bit=bit, name=fault_name(bit))
        if gun.charging:
            self.finish(gun, STOP_BY_FAULT_BIT.get(bit, STOP_FAULT_DEFAULT))  # reports the fault too
        else:
            self.send_realtime(gun)

    def clear_fault(self, gun_no: int) -> None:
        gun = self.gun(gun_no)
        gun.faults = 0
        self.emit(gun, "fault_cleared")
        self.send_realtime(gun)

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
        reply = self.expect(StartAuthReply, lambda m: m.gun_no == gun.gun_no)
        sent = self.write(StartRequest(self.pile_no, gun.gun_no, START_BY_CARD, 0, card_bytes, bytes(16), ""))
        self.emit(gun, "card_swiped", card=card_bytes.hex().upper())
        if not sent:
            self.unexpect(reply)
            return self.emit(gun, "card_refused", card=card_bytes.hex().upper(), fail_reason=None, why="offline")
        try:
            auth: StartAuthReply = await asyncio.wait_for(reply, self.config.reply_timeout)
        except TimeoutError:
            self.unexpect(reply)
            return self.emit(gun, "card_refused", card=card_bytes.hex().upper(), fail_reason=None, why="no 0x32")
        if auth.result != 1:
            return self.emit(gun, "card_refused", card=card_bytes.hex().upper(), fail_reason=auth.fail_reason,
                              trade_no=auth.trade_no)
        if self.can_start(gun) != START_OK:
            return self.emit(gun, "card_refused", card=card_bytes.hex().upper(), fail_reason=None,
                              why="gun cannot start", trade_no=auth.trade_no)
        event = self.emit(gun, "card_accepted", card=card_bytes.hex().upper(), trade_no=auth.trade_no,
                           balance_fen=auth.balance_fen)
        self.start_session(gun, auth.trade_no, TRADE_CARD, auth.balance_fen, physical_card=card_bytes,
                            logical_card_no=auth.logical_card_no)
        return event

    # -- charging --------------------------------------------------------------------------------

    def can_start(self, gun: Gun) -> int:
        if self.draining:
            return START_DEVICE_FAULT  # out of service: a pile being drained takes no new charge
        if gun.charging:
            return START_GUN_BUSY
        if gun.faults or self.model is None:
            return START_DEVICE_FAULT  # a pile must not charge without a valid billing model
        if not gun.plugged:
            return START_NOT_PLUGGED
        return START_OK

    def start_session(
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
        self.emit(gun, "charging_started", trade_no=trade_no, trade_type=trade_type, balance_fen=balance_fen,
                   start_soc=round(vehicle.start_soc), capacity_kwh=vehicle.capacity_wh // 1000)
        self.send_realtime(gun)  # report "charging" at once (the platform's 90 s start deadline)
        if balance_fen == 0:
            self.finish(gun, STOP_START_NO_BALANCE)
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
                self.finish(gun, STOP_NO_BALANCE)
            elif reading.full:
                self.finish(gun, STOP_SOC_FULL)
            elif k * cfg.step >= next_report:
                next_report += every
                self.send_realtime(gun)

    def finish(self, gun: Gun, reason: int) -> None:
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
        self.emit(gun, "charging_stopped", trade_no=session.trade_no, stop_reason=reason, energy=record.energy,
                   amount=record.amount, soc_pct=int(session.curve.soc), minutes=round(session.elapsed_s / 60))
        self.send_realtime(gun)
        self.records[record.trade_no] = PendingRecord(record)
        if self.online:
            self.upload_records()

    # -- billing model ---------------------------------------------------------------------------

    def take_model(self, msg: BillingModelReply | BillingModelSet, via: str) -> None:
        """Hold the billing model the platform gave (0x0A answering 0x09, or a pushed 0x58)."""
        self.model = BillingModel.from_message(msg)
        self.model_no = msg.model_no
        self.emit(None, "model_received", model_no=msg.model_no, via=via, describe=self.model.describe())

    # -- events ----------------------------------------------------------------------------------

    def emit(self, gun: Gun | None, kind: str, **data: Any) -> Event:
        return self.log.emit(self.now(), self.pile_no, gun.no if gun else None, kind, **data)
