"""GB/T 27930 BMS telemetry relayed by DC piles: 0x15-0x25 (note §5.3).

Every frame starts with trade(16) + pile(7) + gun(1). Currents in 0x17 and 0x23 carry the GB/T
−400 A offset (raw 4000 = 0 A) and are exposed *with the offset applied*, in 0.1 A (``_da``);
temperatures are exposed in °C with the −50 offset applied. Status words made of "2位" fields are
2-*bit* fields (P12) and are kept as integers/bytes with accessors, so reserved bits survive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pile_link.ykc.base import Layout, Message, register
from pile_link.ykc.datatypes import (
    BMS_CURRENT_DA,
    GUN_NO,
    PILE_NO,
    PLUS_ONE,
    TEMP_C,
    TRADE_NO,
    U8,
    U16,
    U24,
    U32,
    VIN,
    Ascii,
    BitSplit,
    Offset,
    Raw,
    bit_pair,
)

_HEAD: Layout = (("trade_no", TRADE_NO), ("pile_no", PILE_NO), ("gun_no", GUN_NO))


@register
@dataclass(frozen=True)
class BmsHandshake(Message):
    """0x15 充电握手 (BRM). The VIN here is in forward byte order (unlike 0x31, P14)."""

    TYPE: ClassVar[int] = 0x15
    trade_no: str
    pile_no: str
    gun_no: str
    bms_protocol_version: bytes  # 3 bytes, V1.1 = 01 01 00
    battery_type: int  # 01 lead-acid ... 06 NCM, 08 LTO, FF other
    rated_capacity_dah: int  # 0.1 Ah
    rated_voltage_dv: int  # 0.1 V
    battery_maker: str  # ASCII(4)
    pack_serial: int
    production_year: int  # wire: year - 1985
    production_month: int
    production_day: int
    charge_cycles: int  # 3-byte BIN
    ownership: int  # 0 leased, 1 owned by the vehicle owner
    reserved: int
    vin: str
    bms_software_version: bytes  # 8 bytes: build, day, month, year(2, LE), FF FF FF
    LAYOUT: ClassVar[Layout] = _HEAD + (
        ("bms_protocol_version", Raw(3)),
        ("battery_type", U8),
        ("rated_capacity_dah", U16),
        ("rated_voltage_dv", U16),
        ("battery_maker", Ascii(4)),
        ("pack_serial", U32),
        ("production_year", Offset(U8, 1985)),
        ("production_month", U8),
        ("production_day", U8),
        ("charge_cycles", U24),
        ("ownership", U8),
        ("reserved", U8),
        ("vin", VIN),
        ("bms_software_version", Raw(8)),
    )


@register
@dataclass(frozen=True)
class BmsParameters(Message):
    """0x17 参数配置 (BCP/CML). All-zero frames are common before the BMS answers: currents read -4000."""

    TYPE: ClassVar[int] = 0x17
    trade_no: str
    pile_no: str
    gun_no: str
    max_cell_voltage_cv: int  # 0.01 V
    max_charge_current_da: int  # 0.1 A, offset applied
    nominal_energy_dkwh: int  # 0.1 kWh
    max_charge_voltage_dv: int  # 0.1 V
    max_temp_c: int
    soc_permille: int  # 0.1 %
    battery_voltage_dv: int
    pile_max_voltage_dv: int
    pile_min_voltage_dv: int
    pile_max_current_da: int  # offset applied
    pile_min_current_da: int  # offset applied
    LAYOUT: ClassVar[Layout] = _HEAD + (
        ("max_cell_voltage_cv", U16),
        ("max_charge_current_da", BMS_CURRENT_DA),
        ("nominal_energy_dkwh", U16),
        ("max_charge_voltage_dv", U16),
        ("max_temp_c", TEMP_C),
        ("soc_permille", U16),
        ("battery_voltage_dv", U16),
        ("pile_max_voltage_dv", U16),
        ("pile_min_voltage_dv", U16),
        ("pile_max_current_da", BMS_CURRENT_DA),
        ("pile_min_current_da", BMS_CURRENT_DA),
    )


@register
@dataclass(frozen=True)
class ChargeEnd(Message):
    """0x19 充电结束 (BSD/CSD), 39 bytes.

    Lenient: JCPP's frames are one byte longer (length 0x2C, P4); the spec layout decodes cleanly
    from them and the extra byte, meaning unknown, is kept in ``trailing``. Output energy here is in
    0.1 kWh, not the 0.0001 kWh of the billing frames.
    """

    TYPE: ClassVar[int] = 0x19
    LENIENT_TRAILING: ClassVar[bool] = True
    trade_no: str
    pile_no: str
    gun_no: str
    soc_pct: int
    min_cell_voltage_cv: int  # 0.01 V
    max_cell_voltage_cv: int
    min_battery_temp_c: int
    max_battery_temp_c: int
    elapsed_min: int
    output_energy_dkwh: int  # 0.1 kWh
    charger_no: int
    trailing: bytes = b""
    LAYOUT: ClassVar[Layout] = _HEAD + (
        ("soc_pct", U8),
        ("min_cell_voltage_cv", U16),
        ("max_cell_voltage_cv", U16),
        ("min_battery_temp_c", TEMP_C),
        ("max_battery_temp_c", TEMP_C),
        ("elapsed_min", U16),
        ("output_energy_dkwh", U16),
        ("charger_no", U32),
    )


@register
@dataclass(frozen=True)
class BmsError(Message):
    """0x1B 错误报文 (BEM + CEM): 8 bytes of 2-bit fields (00 normal, 01 timeout, 10 untrustworthy).

    Kept as the raw 8 bytes (P12: the spec's "2位" is 2 bits, proven by the frame length); the
    accessors read the named fields, and reserved or "other" bits are preserved untouched.
    """

    TYPE: ClassVar[int] = 0x1B
    trade_no: str
    pile_no: str
    gun_no: str
    flags: bytes  # 8 bytes, see the table in note §5.3
    LAYOUT: ClassVar[Layout] = _HEAD + (("flags", Raw(8)),)

    def field(self, byte: int, pair: int) -> int:
        """The 2-bit field ``pair`` (0 = bits 1-2) of flag byte ``byte`` (0 = payload offset 24)."""
        return bit_pair(self.flags[byte], pair)

    @property
    def timeouts(self) -> dict[str, int]:
        """Every named field, e.g. ``{"CRM_00": 0, ..., "BST": 1}``."""
        f = self.field
        return {
            "CRM_00": f(0, 0),
            "CRM_AA": f(0, 1),
            "CML_CTS": f(1, 0),
            "CRO": f(1, 1),
            "CCS": f(2, 0),
            "CST": f(2, 1),
            "CSD": f(3, 0),
            "BRM": f(4, 0),
            "BCP": f(5, 0),
            "BRO": f(5, 1),
            "BCS": f(6, 0),
            "BCL": f(6, 1),
            "BST": f(6, 2),
            "BSD": f(7, 0),
        }

    @property
    def bms_other(self) -> int:
        return self.flags[3] >> 2

    @property
    def charger_other(self) -> int:
        return self.flags[7] >> 2


_ABORT_LAYOUT: Layout = _HEAD + (("reason", U8), ("fault", U16), ("error", U8))


@dataclass(frozen=True)
class _Abort(Message):
    """reason(1) + fault(2, LE) + error(1), all 2-bit flags (00 no, 01 yes, 10 untrustworthy)."""

    trade_no: str
    pile_no: str
    gun_no: str
    reason: int
    fault: int
    error: int
    LAYOUT: ClassVar[Layout] = _ABORT_LAYOUT

    def reason_flag(self, i: int) -> int:
        return bit_pair(self.reason, i)

    def fault_flag(self, i: int) -> int:
        return bit_pair(self.fault, i)

    def error_flag(self, i: int) -> int:
        return bit_pair(self.error, i)


@register
@dataclass(frozen=True)
class BmsAbort(_Abort):
    """0x1D 充电阶段BMS中止 (BST). reason pairs: SOC target, total-voltage target, cell-voltage target,
    charger requested. fault pairs: insulation, output connector temp, BMS component temp, charge
    connector, battery temp, HV relay, CC2 detection, other. error pairs: over-current, voltage.

    (S3's decoder never consumes the fault word, P12; the layout here follows the 28-byte length.)
    """

    TYPE: ClassVar[int] = 0x1D


@register
@dataclass(frozen=True)
class ChargerAbort(_Abort):
    """0x21 充电阶段充电机中止 (CST). reason pairs: condition reached, manual, fault, BMS requested.
    fault pairs: charger temp, connector, internal temp, energy undeliverable, e-stop, other.
    error pairs: current mismatch, voltage."""

    TYPE: ClassVar[int] = 0x21


@register
@dataclass(frozen=True)
class BmsDemand(Message):
    """0x23 BMS需求与充电机输出 (BCL/BCS/CCS), every 15 s while charging."""

    TYPE: ClassVar[int] = 0x23
    trade_no: str
    pile_no: str
    gun_no: str
    voltage_demand_dv: int
    current_demand_da: int  # offset applied
    charge_mode: int  # 1 constant voltage, 2 constant current
    measured_voltage_dv: int
    measured_current_da: int  # offset applied
    max_cell_voltage_cv: int  # bits 0-11 of the highest-cell word, 0.01 V
    max_cell_group: int  # bits 12-15
    soc_pct: int
    remaining_min: int
    output_voltage_dv: int  # the pile's output
    output_current_da: int  # offset applied
    elapsed_min: int
    LAYOUT: ClassVar[Layout] = _HEAD + (
        ("voltage_demand_dv", U16),
        ("current_demand_da", BMS_CURRENT_DA),
        ("charge_mode", U8),
        ("measured_voltage_dv", U16),
        ("measured_current_da", BMS_CURRENT_DA),
        (("max_cell_voltage_cv", "max_cell_group"), BitSplit(2, (12, 4))),
        ("soc_pct", U8),
        ("remaining_min", U16),
        ("output_voltage_dv", U16),
        ("output_current_da", BMS_CURRENT_DA),
        ("elapsed_min", U16),
    )


BSM_STATUS_FIELDS = (
    "cell_voltage",  # 00 normal, 01 high, 10 low
    "soc",  # 00 normal, 01 high, 10 low
    "over_current",
    "over_temperature",
    "insulation",
    "output_connector",
    "charging_permitted",  # 00 forbidden, 01 permitted
    "reserved",
)


@register
@dataclass(frozen=True)
class BmsStatus(Message):
    """0x25 充电过程BMS信息 (BSM), 31 bytes.

    Lenient: JCPP reads each 2-bit status field as a 2-byte short (P12) so its frames are 14 bytes
    longer (length 0x31). The spec layout still decodes their first 31 bytes; the 14 extra bytes are
    kept in ``trailing``, not interpreted.
    """

    TYPE: ClassVar[int] = 0x25
    LENIENT_TRAILING: ClassVar[bool] = True
    trade_no: str
    pile_no: str
    gun_no: str
    max_cell_no: int  # wire: number - 1
    max_temp_c: int
    max_temp_probe: int  # wire: number - 1
    min_temp_c: int
    min_temp_probe: int  # wire: number - 1
    status_bits: int  # 2 bytes LE, eight 2-bit fields, see BSM_STATUS_FIELDS
    trailing: bytes = b""
    LAYOUT: ClassVar[Layout] = _HEAD + (
        ("max_cell_no", PLUS_ONE),
        ("max_temp_c", TEMP_C),
        ("max_temp_probe", PLUS_ONE),
        ("min_temp_c", TEMP_C),
        ("min_temp_probe", PLUS_ONE),
        ("status_bits", U16),
    )

    @property
    def status(self) -> dict[str, int]:
        return {name: bit_pair(self.status_bits, i) for i, name in enumerate(BSM_STATUS_FIELDS)}
