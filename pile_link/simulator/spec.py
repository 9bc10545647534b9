"""What a simulated pile is and how its timers run: :class:`PileSpec`, :class:`PileConfig`.

Also the answers a pile gives the platform's commands (0x33 and 0x35 fail reasons), a record
waiting for its 0x40 (:class:`PendingRecord`) and :class:`SimulatorError`. Stop reasons of the
transaction record (0x3B) live beside the gun that stops: :mod:`pile_link.simulator.gun`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pile_link.ykc import TransactionRecord
from pile_link.ykc.frame import CrcOrder

# 0x33 fail reasons
START_OK, START_PILE_MISMATCH, START_GUN_BUSY, START_DEVICE_FAULT, START_OFFLINE, START_NOT_PLUGGED = range(6)
# 0x35 fail reasons
STOP_OK, STOP_PILE_MISMATCH, STOP_NOT_CHARGING, STOP_OTHER = range(4)


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
class PendingRecord:
    """A transaction record (0x3B) the pile holds until the platform confirms it (0x40)."""

    record: TransactionRecord
    attempts: int = 0
    last_sent: float = float("-inf")  # loop time
