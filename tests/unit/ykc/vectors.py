"""The YKC vector file and what its fields mean in the codec's terms, for tests/unit/ykc/.

The vectors come from ../shared/reference/ykc-vectors.json (beside the repository) (copied from the protocol note's
sources and checked there). Their field names and float units are the vector file's; the
``FIELD_MAP`` below translates them to the codec's names and integer protocol units, so each
positive vector is checked field by field, not just "it decodes".
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pile_link.ykc import CardClearResult, CardQueryResult, Frame, Message

VECTORS_PATH = Path(__file__).resolve().parents[2] / "data" / "ykc-vectors.json"  # copy of the reference file
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


# -- the vector file ------------------------------------------------------------------------------

# Vectors whose frame is intact but whose payload the spec layout cannot accept. The note says to
# use them only as length/framing tests; the codec rejects them in decode_message. (JCPP's 40-byte
# 0x32 without the balance is the other one; the vector file marks it with "_decode_error".)
MALFORMED_PAYLOAD = {
    "0x44": "count byte 3 but 51 bytes of card data (the vector's note: framing tests only)",
}


def classify(v: dict[str, Any]) -> str:
    if not v["length_ok"]:
        return "bad_length"
    if not v["crc_ok"]:
        return "be_crc" if v["crc_ok_if_read_big_endian"] else "bad_crc"
    if "_decode_error" in v["decoded"] or v["type"] in MALFORMED_PAYLOAD:
        return "bad_payload"
    return "positive"


def by_kind(kind: str) -> list[Any]:
    return [pytest.param(v, id=f"{i}-{v['type']}") for i, v in enumerate(VECTORS) if classify(v) == kind]


def _same(x: Any) -> Any:
    return x


def _x10(x: float) -> int:
    return round(x * 10)


def _x100(x: float) -> int:
    return round(x * 100)


def _x1e4(x: float) -> int:
    return round(x * 10_000)


def _x1e5(x: float) -> int:
    return round(x * 100_000)


def _hex(x: str) -> bytes:
    return bytes.fromhex(x)


def _time(x: str) -> tuple[datetime, int]:
    """'2023-12-13 17:04:14 (dow=3)' -> (datetime, wire weekday)."""
    dow = int(x.split("dow=")[1].rstrip(")")) if "dow=" in x else 0
    return datetime.strptime(x[:19], "%Y-%m-%d %H:%M:%S"), dow


def _le_int(x: str) -> int:
    return int.from_bytes(bytes.fromhex(x), "little")


# JSON key -> (attribute path on our message, converter). Keys that are frame-level or derived
# are checked separately (FRAME_KEYS) or listed in DERIVED_KEYS; any other unmapped key fails.
COMMON: dict[str, tuple[str, Any]] = {
    "pile": ("pile_no", _same),
    "gun": ("gun_no", _same),
    "trade_no": ("trade_no", _same),
    "result": ("result", _same),
    "fail_reason": ("fail_reason", _same),
}
_RECORD_TIME = {
    "start_time": ("start_time", _time),
    "end_time": ("end_time", _time),
    "trade_time": ("trade_time", _time),
}
_RECORD: dict[str, tuple[str, Any]] = {
    **_RECORD_TIME,
    **{
        f"{tier}_{key}": (f"tiers[{i}].{attr}", conv)
        for i, tier in enumerate(("sharp", "peak", "flat", "valley"))
        for key, attr, conv in (
            ("price_yuan_per_kwh", "price", _x1e5),
            ("kwh", "energy", _x1e4),
            ("loss_kwh", "loss_energy", _x1e4),
            ("amount_yuan", "amount", _x1e4),
        )
    },
    "meter_start_kwh": ("meter_start", _x1e4),
    "meter_end_kwh": ("meter_end", _x1e4),
    "total_kwh": ("energy", _x1e4),
    "total_loss_kwh": ("loss_energy", _x1e4),
    "total_amount_yuan": ("amount", _x1e4),
    "vin": ("vin", _same),
    "trade_flag": ("trade_type", _same),
    "stop_reason": ("stop_reason", lambda s: int(s, 16)),
    "physical_card": ("physical_card", _hex),
}
FIELD_MAP: dict[int, dict[str, tuple[str, Any]]] = {
    0x01: {
        "pile_type": ("pile_type", {"DC": 0, "AC": 1}.__getitem__),
        "gun_count": ("gun_count", _same),
        "protocol_version": ("protocol_version", _x10),
        "software_version": ("firmware_version", _same),
        "network_type": ("network_type", _same),
        "sim": ("sim", _same),
        "operator": ("carrier", _same),
    },
    0x03: {"gun_status": ("gun_status", _same)},
    0x05: {"billing_model_no": ("model_no", _same)},
    0x06: {"billing_model_no": ("model_no", _same)},
    0x0A: {
        "billing_model_no": ("model_no", _same),
        **{
            f"{tier}_{key}_yuan_per_kwh": (f"tiers[{i}].{attr}", _x1e5)
            for i, tier in enumerate(("sharp", "peak", "flat", "valley"))
            for key, attr in (("elec", "electricity_price"), ("service", "service_price"))
        },
        "loss_ratio": ("loss_ratio", _same),
        "slots": ("slots", tuple),
    },
    0x13: {
        "status": ("status", _same),
        "gun_homed": ("holstered", _same),
        "gun_plugged": ("plugged", _same),
        "output_voltage_v": ("voltage_dv", _x10),
        "output_current_a": ("current_da", _x10),
        "gun_line_temp_c": ("cable_temp_c", _same),
        "gun_line_code": ("cable_code", _hex),
        "soc": ("soc_pct", _same),
        "battery_max_temp_c": ("battery_max_temp_c", _same),
        "charged_min": ("elapsed_min", _same),
        "remaining_min": ("remaining_min", _same),
        "energy_kwh": ("energy", _x1e4),
        "loss_energy_kwh": ("loss_energy", _x1e4),
        "amount_yuan": ("amount", _x1e4),
        "hw_fault_bits": ("hw_faults", _same),
        "hw_fault_bit_numbers": ("fault_names", len),
    },
    0x15: {
        "bms_protocol_version": ("bms_protocol_version", _hex),
        "battery_type": ("battery_type", _same),
        "rated_capacity_ah": ("rated_capacity_dah", _x10),
        "rated_voltage_v": ("rated_voltage_dv", _x10),
        "manufacturer": ("battery_maker", _same),
        "pack_serial": ("pack_serial", _same),
        "prod_year": ("production_year", _same),
        "prod_month": ("production_month", _same),
        "prod_day": ("production_day", _same),
        "charge_count": ("charge_cycles", _same),
        "property_flag": ("ownership", _same),
        "reserved": ("reserved", _same),
        "vin": ("vin", _same),
        "bms_sw_version": ("bms_software_version", _hex),
    },
    0x17: {
        "cell_max_allowed_v": ("max_cell_voltage_cv", _x100),
        "max_allowed_current_a": ("max_charge_current_da", _x10),
        "nominal_energy_kwh": ("nominal_energy_dkwh", _x10),
        "max_allowed_total_v": ("max_charge_voltage_dv", _x10),
        "max_allowed_temp_c": ("max_temp_c", _same),
        "soc_pct": ("soc_permille", _x10),
        "battery_voltage_v": ("battery_voltage_dv", _x10),
        "pile_max_v": ("pile_max_voltage_dv", _x10),
        "pile_min_v": ("pile_min_voltage_dv", _x10),
        "pile_max_a": ("pile_max_current_da", _x10),
        "pile_min_a": ("pile_min_current_da", _x10),
    },
    0x19: {
        "end_soc": ("soc_pct", _same),
        "cell_min_v": ("min_cell_voltage_cv", _x100),
        "cell_max_v": ("max_cell_voltage_cv", _x100),
        "min_temp_c": ("min_battery_temp_c", _same),
        "max_temp_c": ("max_battery_temp_c", _same),
        "charged_min": ("elapsed_min", _same),
        "output_energy_kwh": ("output_energy_dkwh", _x10),
        "charger_no": ("charger_no", _same),
        "_trailing_bytes_not_in_spec_layout": ("trailing", _same),
    },
    0x1B: {"bem_cem_bytes": ("flags", _hex)},
    0x1D: {"reason": ("reason", _same), "fault": ("fault", _same), "error": ("error", _same)},
    0x23: {
        "bms_v_demand": ("voltage_demand_dv", _x10),
        "bms_i_demand": ("current_demand_da", _x10),
        "bms_mode": ("charge_mode", _same),
        "bms_v_meas": ("measured_voltage_dv", _x10),
        "bms_i_meas": ("measured_current_da", _x10),
        "max_cell_v": ("max_cell_voltage_cv", _x100),
        "max_cell_group": ("max_cell_group", _same),
        "soc": ("soc_pct", _same),
        "remain_min": ("remaining_min", _same),
        "pile_v_out": ("output_voltage_dv", _x10),
        "pile_i_out": ("output_current_da", _x10),
        "charged_min": ("elapsed_min", _same),
    },
    0x25: {
        "max_cell_v_no": ("max_cell_no", _same),
        "max_temp_c": ("max_temp_c", _same),
        "max_temp_point": ("max_temp_probe", _same),
        "min_temp_c": ("min_temp_c", _same),
        "min_temp_point": ("min_temp_probe", _same),
        "status_bits": ("status_bits", _le_int),
        "_trailing_bytes_not_in_spec_layout": ("trailing", _same),
    },
    0x31: {
        "start_type": ("start_type", _same),
        "need_password": ("password_required", _same),
        "account_or_card": ("card_no", _hex),
        "password": ("password", _hex),
        "vin_reversed_decoded": ("vin", _same),
    },
    0x32: {
        "logical_card": ("logical_card_no", _same),
        "balance_yuan": ("balance_fen", _x100),
        "auth_ok": ("result", _same),
    },
    0x34: {
        "logical_card": ("logical_card_no", _same),
        "physical_card": ("physical_card", _hex),
        "balance_yuan": ("balance_fen", _x100),
    },
    0x3B: _RECORD,
    0x3D: {
        **_RECORD,
        "meter_no": ("meter_no", _same),
        "meter_cipher": ("meter_cipher", _hex),
        "meter_protocol_version": ("meter_protocol_version", _same),
        "encryption_method": ("encryption_method", _same),
    },
    0x41: {"physical_card": ("physical_card", _hex)},
    0x42: {"physical_card": ("physical_card", _hex), "balance_yuan": ("balance_fen", _x100)},
    0x43: {"save_result": ("result", _same)},
    0x45: {
        "entries": (
            "results",
            lambda es: tuple(CardClearResult(_hex(e["physical"]), e["cleared"], e["fail_reason"]) for e in es),
        )
    },
    0x47: {"entries": ("results", lambda es: tuple(CardQueryResult(_hex(e["physical"]), e["exists"]) for e in es))},
    0x52: {"disable": ("disabled", _same), "max_power_pct": ("max_power_pct", _same)},
    0x55: {"time": ("time", _time)},
    0x56: {"time": ("time", _time)},
    0x61: {
        "lock_state": ("lock_state", _same),
        "parking_state": ("parking_state", _same),
        "lock_battery_pct": ("lock_battery_pct", _same),
        "alarm": ("alarm", _same),
        "reserved": ("reserved", _hex),
    },
    0x92: {"exec_control": ("exec_control", _same), "_trailing_bytes_not_in_spec_layout": ("trailing", _same)},
    0x93: {"status": ("status", _same)},
    0x94: {
        "pile_model": ("pile_model", _same),
        "pile_power": ("pile_power", _same),
        "server": ("server", _same),
        "port": ("port", _same),
        "user": ("username", _same),
        "password": ("password", _same),
        "path": ("file_path", _same),
        "exec_control": ("exec_control", _same),
        "download_timeout_min": ("timeout_min", _same),
    },
}
FRAME_KEYS = {"seq_bytes", "encrypt_flag", "length_byte"}
# Derived presentations in the vector file, covered by other keys or by byte-exact re-encoding.
DERIVED_KEYS = {"gun_line_temp_raw", "battery_max_temp_raw", "vin_raw_hex"}


def attr(msg: Any, path: str) -> Any:
    """'tiers[2].price' -> msg.tiers[2].price."""
    obj = msg
    for part in path.split("."):
        if "[" in part:
            name, index = part[:-1].split("[")
            obj = getattr(obj, name)[int(index)]
        else:
            obj = getattr(obj, part)
    return obj


def assert_fields(msg: Message, frame: Frame, raw: bytes, decoded: dict[str, Any]) -> None:
    assert frame.seq == bytes.fromhex(decoded["seq_bytes"])
    assert frame.encrypt_flag == decoded["encrypt_flag"]
    assert raw[1] == decoded["length_byte"]
    mapping = {**COMMON, **FIELD_MAP.get(msg.TYPE, {})}
    for key, expected in decoded.items():
        if key in FRAME_KEYS or key in DERIVED_KEYS:
            continue
        assert key in mapping, f"vector field {key!r} of 0x{msg.TYPE:02X} is not mapped"
        path, convert = mapping[key]
        want = convert(expected)
        got = attr(msg, path)
        if path.endswith("_time") or path == "time":
            want_dt, want_dow = want
            assert got == want_dt, key
            assert got.wire_weekday == want_dow, key
        elif path == "fault_names":
            assert len(got) == want, key
        elif path == "trailing":
            assert len(got) == want, key
        else:
            assert got == want, f"{key}: {got!r} != {want!r}"
