"""The message registry (pile_link/ykc/base.py, messages.py): every required type once, payload lengths as
the catalogue gives them, the lenient types, errors that name the field, and frame-specific accessors."""

from __future__ import annotations

import dataclasses

import pytest

from pile_link.ykc import (
    MAX_PAYLOAD,
    MESSAGES,
    BalanceUpdate,
    BalanceUpdateAck,
    BillingModelReply,
    BillingModelSet,
    BmsAbort,
    BmsError,
    BmsStatus,
    DecodeError,
    EncodeError,
    Frame,
    Heartbeat,
    HeartbeatAck,
    LoginAck,
    OfflineCard,
    OfflineCardSync,
    RealtimeData,
    StartRequest,
    TierRate,
    TransactionRecord,
    TransactionRecordV17,
    decode_message,
    encode_frame,
    encode_message,
    plausible_length,
)
from tests.unit.ykc.vectors import VECTORS
from tests.unit.ykc.examples import EXAMPLES, decode_one


# Every frame type the brief and the note's catalogue (§4) require, plus V1.7's 0x3D.
REQUIRED_TYPES = {
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x0A, 0x12, 0x13, 0x15, 0x17, 0x19, 0x1B, 0x1D, 0x21,
    0x23, 0x25, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x3B, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x51, 0x52, 0x55, 0x56, 0x57, 0x58, 0x61, 0x62, 0x63, 0x91, 0x92, 0x93, 0x94,
    0xA1, 0xA2, 0xA3, 0xA4,
}  # fmt: skip


def test_registry_holds_every_required_type_once() -> None:
    assert REQUIRED_TYPES | {0x3D} == set(MESSAGES)
    for code, cls in MESSAGES.items():
        assert cls.TYPE == code
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


CATALOGUE_LENGTH = {  # the note's §4 "len" column (payload + 4) for fixed-size frames
    0x01: 0x22, 0x02: 0x0C, 0x03: 0x0D, 0x04: 0x0D, 0x05: 0x0D, 0x06: 0x0E, 0x09: 0x0B, 0x0A: 0x5E,
    0x12: 0x0C, 0x13: 0x40, 0x15: 0x4D, 0x17: 0x31, 0x19: 0x2B, 0x1B: 0x24, 0x1D: 0x20, 0x21: 0x20,
    0x23: 0x30, 0x25: 0x23, 0x31: 0x37, 0x32: 0x2A, 0x33: 0x1E, 0x34: 0x30, 0x35: 0x0E, 0x36: 0x0C,
    0x3B: 0xA2, 0x3D: 0xCD, 0x40: 0x15, 0x41: 0x14, 0x42: 0x18, 0x43: 0x0D, 0x51: 0x0C, 0x52: 0x0D,
    0x55: 0x12, 0x56: 0x12, 0x57: 0x0C, 0x58: 0x5E, 0x61: 0x14, 0x62: 0x11, 0x63: 0x11, 0x91: 0x0C,
    0x92: 0x0C, 0x93: 0x0C, 0x94: 0x62, 0xA1: 0x3E, 0xA2: 0x30, 0xA3: 0x25, 0xA4: 0x36,
}  # fmt: skip
VARIABLE_BASE = {0x44: (8, 16), 0x45: (7, 10), 0x46: (8, 8), 0x47: (7, 9), 0x48: (8, 8)}  # base + n * unit


@pytest.mark.parametrize("code", sorted(CATALOGUE_LENGTH), ids=lambda c: f"0x{c:02X}")
def test_fixed_payload_sizes_match_the_catalogue(code: int) -> None:
    cls = MESSAGES[code]
    assert cls.payload_size() + 4 == CATALOGUE_LENGTH[code]
    n = cls.payload_size()
    with pytest.raises(DecodeError) as err:
        cls.decode(bytes(n - 1))
    assert err.value.code == "length"
    if cls.LENIENT_TRAILING:
        assert cls.decode(bytes(n) + b"\x01\x02").trailing == b"\x01\x02"  # type: ignore[attr-defined]
    else:
        with pytest.raises(DecodeError) as err:
            cls.decode(bytes(n + 1))
        assert err.value.code == "length"


@pytest.mark.parametrize("code", sorted(VARIABLE_BASE), ids=lambda c: f"0x{c:02X}")
def test_variable_payload_sizes(code: int) -> None:
    cls = MESSAGES[code]
    base, unit = VARIABLE_BASE[code]
    counted = base == 8
    for n in range(3):
        payload = bytearray(base + n * unit)
        if counted:
            payload[7] = n
        assert len(cls.decode(bytes(payload)).encode()) == len(payload)
        assert plausible_length(code, len(payload) + 4)
    bad = bytearray(base + unit + 1)
    if counted:
        bad[7] = 1
    with pytest.raises(DecodeError):
        cls.decode(bytes(bad))
    assert not plausible_length(code, len(bad) + 4)
    if counted:
        wrong_count = bytearray(base + unit)
        wrong_count[7] = 2
        with pytest.raises(DecodeError, match="count byte says 2"):
            cls.decode(bytes(wrong_count))


def test_lenient_types_are_exactly_the_documented_ones() -> None:
    lenient = {code for code, cls in MESSAGES.items() if cls.LENIENT_TRAILING}
    assert lenient == {0x19, 0x25, 0x92}
    for code in lenient:
        assert "Lenient" in (MESSAGES[code].__doc__ or "")


def test_field_errors_name_the_field() -> None:
    payload = bytearray(BillingModelReply.payload_size())
    payload[42 + 5] = 4  # slot 5 names tier 4
    with pytest.raises(DecodeError, match=r"slots: \[5\]") as err:
        BillingModelReply.decode(bytes(payload))
    assert err.value.code == "field"
    record = bytearray(TransactionRecord.payload_size())
    record[24:31] = bytes.fromhex("00000000000D14")  # month 13
    with pytest.raises(DecodeError, match="start_time"):
        TransactionRecord.decode(bytes(record))


def test_encode_errors_name_the_field() -> None:
    with pytest.raises(EncodeError, match="pile_no"):
        LoginAck("320106000192361", 0).encode()
    with pytest.raises(EncodeError, match="balance_fen"):
        BalanceUpdate("32010600019236", "01", bytes(8), -1).encode()
    with pytest.raises(EncodeError, match="slots"):
        BillingModelSet("32010600019236", "0001", (TierRate(1, 1),) * 4, 0, (4,) * 48).encode()
    with pytest.raises(EncodeError, match="cards"):
        OfflineCardSync("32010600019236", (OfflineCard("1", bytes(8)),) * 16).encode()
    with pytest.raises(EncodeError, match="physical_card"):
        BalanceUpdateAck("32010600019236", b"\x01", 0).encode()
    with pytest.raises(EncodeError):
        encode_message("not a message", b"\x00\x00")  # type: ignore[arg-type]
    with pytest.raises(EncodeError):
        encode_frame(0x02, b"", b"\x00")  # seq must be 2 bytes
    with pytest.raises(EncodeError):
        encode_frame(0x02, bytes(MAX_PAYLOAD + 1), b"\x00\x00")


def test_decode_message_rejects_unknown_and_encrypted_frames() -> None:
    with pytest.raises(DecodeError) as err:
        decode_message(Frame(b"\x00\x01", 0, 0x7F, b"\x01\x02"))
    assert err.value.code == "unknown_type" and err.value.frame_type == 0x7F
    with pytest.raises(DecodeError) as err:
        decode_message(Frame(b"\x00\x01", 1, 0x02, bytes(8)))
    assert err.value.code == "encrypted"


def test_0x31_vin_is_exposed_in_reading_order() -> None:
    msg = StartRequest("32010600019236", "01", 3, 0, bytes(8), bytes(16), "LSVAU2180N2183294")
    payload = msg.encode()
    assert payload[34:] == b"LSVAU2180N2183294"[::-1]
    assert StartRequest.decode(payload).vin == "LSVAU2180N2183294"


def test_0x3d_is_a_transaction_record() -> None:
    v17 = next(v for v in VECTORS if v["type"] == "0x3D")
    msg = decode_message(decode_one(bytes.fromhex(v17["hex"])))
    assert isinstance(msg, TransactionRecord) and isinstance(msg, TransactionRecordV17)
    assert msg.energy_by_tier == (0, 0, 0, 0)


def test_accessors() -> None:
    rt = next(m for m in EXAMPLES if isinstance(m, RealtimeData))
    rt = dataclasses.replace(rt, hw_faults=0b1_0000_0000_0001)
    assert rt.fault_names == ["emergency stop pressed", "door open"]
    bsm = BmsStatus("0" * 32, "32010600019236", "01", 1, 25, 1, 20, 1, 0b00_01_00_00_00_00_10_01)
    assert bsm.status["cell_voltage"] == 1 and bsm.status["soc"] == 2 and bsm.status["charging_permitted"] == 1
    bem = BmsError("0" * 32, "32010600019236", "01", bytes.fromhex("0100000000001000"))
    assert bem.timeouts["CRM_00"] == 1 and bem.timeouts["BST"] == 1 and bem.timeouts["BRM"] == 0
    bst = BmsAbort("0" * 32, "32010600019236", "01", 0b01, 0b0100_0000_0000, 0b0100)
    assert bst.reason_flag(0) == 1 and bst.fault_flag(5) == 1 and bst.error_flag(1) == 1
    assert Heartbeat("32010600019236", "01", 0).uplink and not HeartbeatAck("32010600019236", "01").uplink
