"""One gun of a simulated pile and the charging session on it.

State only, no I/O: :class:`~pile_link.simulator.pile.SimPile` owns the tasks (its link,
:mod:`pile_link.simulator.connection`, the socket) and calls into this. Keeping it plain makes what a gun reports (0x13) and what it bills (0x3B) easy
to read in one place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pile_link.simulator.battery import ChargeCurve, Reading
from pile_link.simulator.billing import TierMeter
from pile_link.ykc import RealtimeData, RemoteStart, TransactionRecord
from pile_link.ykc.realtime import CHARGING, FAULT, HW_FAULTS, IDLE

NO_TRADE = "0" * 32
NO_CARD = bytes(8)
IDLE_TEMP_C = -50  # the raw 0 the spec asks for while idle, with the -50 offset applied

# stop reasons (protocol note §7.1) this simulator uses
STOP_REMOTE = 0x40  # stopped from the app (0x36)
STOP_SOC_FULL = 0x41  # the BMS reached its target SOC
STOP_MANUAL = 0x45  # the stop button on the pile
STOP_START_NO_BALANCE = 0x4E  # start failed: the balance given was zero
STOP_PILOT_LOST = 0x6B  # the plug was pulled while charging
STOP_NO_BALANCE = 0x6E  # the balance given at start is used up
STOP_FAULT_DEFAULT = 0x71  # module fault
STOP_BY_FAULT_BIT = {0: 0x72, 3: 0x73, 2: 0x74, 10: 0x70, 11: 0x56}  # e-stop, surge, over-temp, fuse, contactor

STOP_REASON_NAMES = {
    STOP_REMOTE: "remote stop",
    STOP_SOC_FULL: "SOC target reached",
    STOP_MANUAL: "stop button",
    STOP_START_NO_BALANCE: "start failed: no balance",
    STOP_PILOT_LOST: "plug pulled",
    STOP_NO_BALANCE: "balance used up",
    0x70: "fault: DC protection",
    0x71: "fault: module",
    0x72: "fault: emergency stop",
    0x73: "fault: surge protector",
    0x74: "fault: temperature",
    0x56: "fault: contactor",
}


def stop_reason_name(code: int) -> str:
    return STOP_REASON_NAMES.get(code, f"0x{code:02X}")


def fault_name(bit: int) -> str:
    return HW_FAULTS.get(1 << bit, f"fault bit {bit}")


@dataclass
class ChargeSession:
    """One charge: from the accepted start (0x34 or 0x32) to the transaction record (0x3B)."""

    trade_no: str
    trade_type: int  # 0x01 app, 0x02 card
    balance_fen: int | None  # what the platform said the driver may spend; None: no limit
    start_time: datetime  # pile wall clock
    meter: TierMeter
    curve: ChargeCurve
    meter_start: int  # 0.0001 kWh, the gun's register at start
    physical_card: bytes = NO_CARD
    logical_card_no: str = "0" * 16
    vin: str = ""
    elapsed_s: float = 0.0
    reading: Reading | None = None
    stop_reason: int | None = None

    @property
    def budget(self) -> int | None:
        """The balance in 0.0001 yuan (the unit of amounts), or None."""
        return None if self.balance_fen is None else self.balance_fen * 100

    @property
    def end_time(self) -> datetime:
        return self.start_time + timedelta(seconds=self.elapsed_s)

    def record(self, pile_no: str, gun_no: str) -> TransactionRecord:
        """The 0x3B for this session: per-tier split by the model held at start, meter readings, totals."""
        usage = self.meter.usage()
        energy = sum(u.energy for u in usage)
        end = self.end_time
        return TransactionRecord(
            trade_no=self.trade_no,
            pile_no=pile_no,
            gun_no=gun_no,
            start_time=self.start_time,
            end_time=end,
            tiers=usage,
            meter_start=self.meter_start,
            meter_end=self.meter_start + energy,
            energy=energy,
            loss_energy=sum(u.loss_energy for u in usage),
            amount=sum(u.amount for u in usage),
            vin=self.vin,
            trade_type=self.trade_type,
            trade_time=end,
            stop_reason=self.stop_reason if self.stop_reason is not None else 0x90,
            physical_card=self.physical_card,
        )


@dataclass
class PendingStart:
    """A 0x34 refused with "not plugged": honoured if the gun is plugged in time (a second 0x33)."""

    command: RemoteStart
    deadline: float  # SimClock.elapsed() after which it lapses


@dataclass
class Gun:
    no: int
    register: int  # the gun's energy meter, 0.0001 kWh
    plugged: bool = False
    faults: int = 0  # 0x13 hardware fault bit mask
    session: ChargeSession | None = None
    last_session: ChargeSession | None = None
    pending_start: PendingStart | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def gun_no(self) -> str:
        return f"{self.no:02d}"

    @property
    def status(self) -> int:
        if self.faults:
            return FAULT
        return CHARGING if self.session is not None else IDLE

    @property
    def charging(self) -> bool:
        return self.session is not None

    def realtime(self, pile_no: str) -> RealtimeData:
        """The 0x13 this gun would send now."""
        s, r = self.session, self.session.reading if self.session else None
        return RealtimeData(
            trade_no=s.trade_no if s else NO_TRADE,
            pile_no=pile_no,
            gun_no=self.gun_no,
            status=self.status,
            holstered=0 if self.plugged else 1,
            plugged=1 if self.plugged else 0,
            voltage_dv=r.voltage_dv if r else 0,
            current_da=r.current_da if r else 0,
            cable_temp_c=r.cable_temp_c if r else IDLE_TEMP_C,
            cable_code=bytes(8),
            soc_pct=r.soc_pct if r else (int(s.curve.soc) if s else 0),
            battery_max_temp_c=r.battery_temp_c if r else IDLE_TEMP_C,
            elapsed_min=int(s.elapsed_s // 60) if s else 0,
            remaining_min=r.remaining_min if r else 0,
            energy=s.meter.total_energy if s else 0,
            loss_energy=sum(s.meter.model.with_loss(e) for e in s.meter.energy) if s else 0,
            amount=s.meter.amount if s else 0,
            hw_faults=self.faults,
        )
