"""The codec's field types (pile_link/ykc/datatypes.py, cp56.py): BCD, binary integers, offsets, ASCII, CP56Time2a."""

from __future__ import annotations

import copy
import pickle
from datetime import datetime

import pytest

from pile_link.ykc import Cp56Datetime, TierRate
from pile_link.ykc.cp56 import CP56
from pile_link.ykc.datatypes import (
    PILE_NO,
    TEMP_C,
    VIN_REVERSED,
    Array,
    Ascii,
    Bcd,
    BitSplit,
    Offset,
    Raw,
    Record,
    Repeated,
    UInt,
)


def test_bcd() -> None:
    assert PILE_NO.decode(bytes.fromhex("32010600019236")) == "32010600019236"
    assert PILE_NO.encode("123") == bytes.fromhex("00000000000123")  # left-padded with 0
    assert Bcd(10).decode(bytes.fromhex("898604D11722D0348606")) == "898604D11722D0348606"  # ICCID nibbles kept
    for bad in ("123456789012345", "12a", "12 3", 12):
        with pytest.raises((ValueError, TypeError)):
            PILE_NO.encode(bad)


def test_bin_ints_are_little_endian_and_range_checked() -> None:
    assert UInt(2).encode(2251) == bytes.fromhex("CB08")  # 225.1 V, the note's example
    assert UInt(5).decode(bytes.fromhex("0000000001")) == 1 << 32  # 5-byte meters: no truncation (P10)
    with pytest.raises(ValueError):
        UInt(1).encode(256)
    with pytest.raises(ValueError):
        UInt(2).encode(-1)
    with pytest.raises(TypeError):
        UInt(2).encode(1.5)
    with pytest.raises(ValueError):
        UInt(1, max_value=3).decode(b"\x04")


def test_offsets() -> None:
    assert TEMP_C.decode(b"\x4b") == 25
    assert TEMP_C.encode(-50) == b"\x00"
    bms = Offset(UInt(2), -4000)
    assert bms.decode((4000).to_bytes(2, "little")) == 0
    assert bms.decode(b"\x00\x00") == -4000
    with pytest.raises(ValueError):
        TEMP_C.encode(206)


def test_ascii_and_reversed_vin() -> None:
    assert Ascii(8).decode(b"V4.1.50\x00") == "V4.1.50"
    assert Ascii(8).encode("V4.1.50") == b"V4.1.50\x00"
    assert Ascii(4).decode(b"A\x00B\x00") == "A\x00B"  # inner NUL kept so the bytes round-trip
    with pytest.raises(ValueError):
        Ascii(4).encode("TOOLONG")
    vin = "LSVAU2180N2183294"
    assert VIN_REVERSED.encode(vin) == vin.encode()[::-1]
    assert VIN_REVERSED.decode(vin.encode()[::-1]) == vin
    assert VIN_REVERSED.decode(bytes(17)) == ""


def test_cp56time2a() -> None:
    t = CP56.decode(bytes.fromhex("98B70E11100314"))
    assert t == datetime(2020, 3, 16, 17, 14, 47) and t.wire_weekday == 0
    assert CP56.encode(t) == bytes.fromhex("98B70E11100314")
    # S3's 0x3B: day byte 0x6D = day 13 with weekday 3 (Wednesday)
    t = CP56.decode(bytes.fromhex("B03604116D0C17"))
    assert t == datetime(2023, 12, 13, 17, 4, 14) and t.wire_weekday == 3
    assert CP56.encode(t) == bytes.fromhex("B03604116D0C17")
    assert CP56.encode(datetime(2023, 12, 13, 17, 4, 14)) == bytes.fromhex("B03604110D0C17")
    # IV and SU bits are masked on decode and remembered
    t = CP56.decode(bytes.fromhex("98B78E91100314"))
    assert t == datetime(2020, 3, 16, 17, 14, 47) and t.invalid and t.summer_time
    # milliseconds are part of the first field
    assert CP56.decode(bytes.fromhex("5FEA0000010100")) == datetime(2000, 1, 1, 0, 0, 59, 999000)
    assert CP56.decode(bytes(7)) is None and CP56.encode(None) == bytes(7)
    bad_times = {
        "60EA0000010100": "ms 60000",
        "000000000D0D00": "month 13",
        "00000018010100": "hour 24",
        "00003C00010100": "minute 60",
        "00000000000100": "day 0",
        "000000001E0218": "30 February",
    }
    for bad in bad_times:
        with pytest.raises(ValueError):
            CP56.decode(bytes.fromhex(bad))
    with pytest.raises(ValueError):
        CP56.encode(datetime(1999, 12, 31))
    with pytest.raises(ValueError):
        CP56.encode(datetime(2024, 1, 1).astimezone())  # aware: the pile's clock is local and naive
    wed = Cp56Datetime.from_datetime(datetime(2023, 12, 13, 17, 4, 14), weekday=3)
    assert CP56.encode(wed) == bytes.fromhex("B03604116D0C17")
    for clone in (copy.copy(wed), copy.deepcopy(wed), pickle.loads(pickle.dumps(wed))):
        assert clone == wed and clone.wire_weekday == 3


def test_bitsplit_and_composites_reject_bad_shapes() -> None:
    cell = BitSplit(2, (12, 4))
    assert cell.decode(bytes.fromhex("5801")) == (344, 0)
    assert cell.encode((344, 15)) == bytes.fromhex("58F1")
    with pytest.raises(ValueError):
        cell.encode((4096, 0))
    with pytest.raises(ValueError):
        Array(UInt(1), 3).encode((1, 2))
    with pytest.raises(TypeError):
        Record(TierRate, (("electricity_price", UInt(4)), ("service_price", UInt(4)))).encode((1, 2))
    with pytest.raises(ValueError):
        Repeated(Raw(8), counted=True, max_count=2).encode((bytes(8),) * 3)
