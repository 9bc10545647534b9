"""Realtime monitoring: 0x12 read request and 0x13 upload (note §5.2).

0x13 arrives every 15 s while charging, every 5 min while idle, on every status or plug change
and in answer to 0x12. The spec's summary table calls it "离线监测数据"; it is the ordinary
realtime frame (P19). Its output current has **no** −400 A offset, unlike the BMS frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pile_link.ykc.base import Layout, Message, register
from pile_link.ykc.datatypes import GUN_NO, PILE_NO, TEMP_C, TRADE_NO, U8, U16, U32, Raw

# status values of RealtimeData.status
OFFLINE, FAULT, IDLE, CHARGING = range(4)

# RealtimeData.hw_faults bits: the spec's "Bit n" is mask 1 << (n - 1)
HW_FAULTS = {
    1 << 0: "emergency stop pressed",
    1 << 1: "no rectifier module available",
    1 << 2: "air outlet over-temperature",
    1 << 3: "AC surge protector fault",
    1 << 4: "AC/DC module DC20 comms lost",
    1 << 5: "insulation monitor FC08 comms lost",
    1 << 6: "energy meter comms lost",
    1 << 7: "card reader comms lost",
    1 << 8: "RC10 comms lost",
    1 << 9: "fan speed board fault",
    1 << 10: "DC fuse fault",
    1 << 11: "HV contactor fault",
    1 << 12: "door open",
}


@register
@dataclass(frozen=True)
class ReadRealtime(Message):
    """0x12 读取实时监测数据 (P→C). The pile answers with 0x13."""

    TYPE: ClassVar[int] = 0x12
    pile_no: str
    gun_no: str
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("gun_no", GUN_NO))


@register
@dataclass(frozen=True)
class RealtimeData(Message):
    """0x13 上传实时监测数据 (C→P), 60 bytes. ``trade_no`` is all zeros while the gun is idle."""

    TYPE: ClassVar[int] = 0x13
    trade_no: str
    pile_no: str
    gun_no: str
    status: int  # 0 offline, 1 fault, 2 idle, 3 charging
    holstered: int  # 枪是否归位: 0 no, 1 yes, 2 unknown
    plugged: int  # 是否插枪: 0 no, 1 yes
    voltage_dv: int  # 0.1 V
    current_da: int  # 0.1 A, no offset
    cable_temp_c: int  # °C (wire: +50; a raw 0 while idle reads -50)
    cable_code: bytes  # 8 bytes, zeros if none
    soc_pct: int  # %; 0 for AC piles
    battery_max_temp_c: int  # °C; raw 0 (-50) for AC piles
    elapsed_min: int
    remaining_min: int  # 0 for AC piles
    energy: int  # 0.0001 kWh
    loss_energy: int  # 0.0001 kWh, energy incl. loss ratio
    amount: int  # 0.0001 yuan so far
    hw_faults: int  # bit mask, see HW_FAULTS
    LAYOUT: ClassVar[Layout] = (
        ("trade_no", TRADE_NO),
        ("pile_no", PILE_NO),
        ("gun_no", GUN_NO),
        ("status", U8),
        ("holstered", U8),
        ("plugged", U8),
        ("voltage_dv", U16),
        ("current_da", U16),
        ("cable_temp_c", TEMP_C),
        ("cable_code", Raw(8)),
        ("soc_pct", U8),
        ("battery_max_temp_c", TEMP_C),
        ("elapsed_min", U16),
        ("remaining_min", U16),
        ("energy", U32),
        ("loss_energy", U32),
        ("amount", U32),
        ("hw_faults", U16),
    )

    @property
    def fault_names(self) -> list[str]:
        return [name for bit, name in HW_FAULTS.items() if self.hw_faults & bit]
