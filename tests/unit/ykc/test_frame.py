"""The frame envelope (pile_link/ykc/frame.py): the CRC, sequence numbers, and replies that echo them."""

from __future__ import annotations

from pile_link.ykc import BillingModelVerifyAck, Frame, SequenceCounter, crc16_modbus, encode_frame, encode_reply
from tests.unit.ykc.examples import decode_one


def test_crc16_modbus_check_value_and_spec_sample() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37
    body = bytes.fromhex("000000025503141278230500")
    assert crc16_modbus(body) == 0x4CDA  # on the wire: DA 4C
    assert encode_frame(0x02, bytes.fromhex("5503141278230500"), b"\x00\x00") == bytes.fromhex(
        "680C000000025503141278230500DA4C"
    )


def test_sequence_counter_wraps() -> None:
    counter = SequenceCounter(0xFFFE)
    assert [counter.next() for _ in range(3)] == [b"\xff\xfe", b"\xff\xff", b"\x00\x00"]


def test_encode_reply_echoes_seq_verbatim() -> None:
    request = Frame(b"\x71\xad", 0, 0x05, bytes.fromhex("202312120000100000"), "be")
    reply = encode_reply(request, BillingModelVerifyAck("20231212000010", "0000", 0))
    assert reply[2:4] == b"\x71\xad"  # not byte-swapped as JCPP does (P5)
    assert decode_one(reply).crc_order == "le"
