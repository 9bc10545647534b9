"""The verified vectors (tests/data/ykc-vectors.json), each by its kind: positive vectors decode to the
listed fields and re-encode exactly; CRC, length and payload faults are refused as the note says."""

from __future__ import annotations

from typing import Any

import pytest

from pile_link.ykc import (
    BillingModelReply,
    DecodeError,
    Frame,
    FrameDecoder,
    decode_message,
    encode_message,
    encode_reply,
    plausible_length,
)
from tests.unit.ykc.vectors import VECTORS, assert_fields, by_kind, classify
from tests.unit.ykc.examples import decode_one


@pytest.mark.parametrize("vector", by_kind("positive"))
def test_positive_vector_decodes_to_listed_fields_and_reencodes_exactly(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    frame = decode_one(raw)
    assert frame.crc_order == "le"
    msg = decode_message(frame)
    assert f"0x{msg.TYPE:02X}" == vector["type"].upper().replace("0X", "0x")
    assert_fields(msg, frame, raw, vector["decoded"])
    assert msg.encode() == frame.payload
    assert encode_message(msg, frame.seq) == raw
    assert decode_one(raw, lenient=True) == frame  # lenient mode changes nothing for good frames
    assert FrameDecoder(length_filter=plausible_length).feed(raw) == [frame]  # nor does the length filter


@pytest.mark.parametrize("vector", by_kind("be_crc"))
def test_high_byte_first_crc_rejected_strict_accepted_lenient(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    strict = FrameDecoder().feed(raw)
    assert strict and all(isinstance(i, DecodeError) for i in strict)
    assert strict[0].code == "crc" and strict[0].raw == raw

    frame = decode_one(raw, lenient=True)
    assert frame.crc_order == "be"
    msg = decode_message(frame)
    assert_fields(msg, frame, raw, vector["decoded"])
    # a reply in the pile's own order round-trips; our default order is the spec's
    assert encode_message(msg, frame.seq, crc_order="be") == raw
    fixed = raw[:-2] + bytes.fromhex(vector["expected_crc_bytes"])
    assert encode_message(msg, frame.seq) == fixed
    assert decode_one(fixed).crc_order == "le"
    reply = encode_reply(frame, msg, mirror_crc=True)
    assert decode_one(reply, lenient=True).crc_order == "be"
    assert decode_one(encode_reply(frame, msg), lenient=True).crc_order == "le"


@pytest.mark.parametrize("vector", by_kind("bad_crc"))
def test_wrong_crc_rejected_in_both_modes_and_fields_check_with_corrected_crc(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    for lenient in (False, True):
        items = FrameDecoder(lenient_crc=lenient).feed(raw)
        assert not any(isinstance(i, Frame) for i in items)
        assert items[0].code == "crc"
    fixed = raw[:-2] + bytes.fromhex(vector["expected_crc_bytes"])
    frame = decode_one(fixed)
    msg = decode_message(frame)
    assert_fields(msg, frame, fixed, vector["decoded"])
    assert encode_message(msg, frame.seq) == fixed


@pytest.mark.parametrize("vector", by_kind("bad_length"))
def test_wrong_length_byte_rejected(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    for kwargs in ({}, {"lenient_crc": True}, {"length_filter": plausible_length}):
        items = FrameDecoder(**kwargs).feed(raw)  # type: ignore[arg-type]
        assert items and not any(isinstance(i, Frame) for i in items)
        assert items[0].code in ("crc", "bad_header")


def test_wrong_length_0x0a_is_the_derived_vector_with_a_fixed_length_byte() -> None:
    bad = next(bytes.fromhex(v["hex"]) for v in VECTORS if classify(v) == "bad_length")
    good = next(bytes.fromhex(v["hex"]) for v in VECTORS if v["type"] == "0x0A" and v["derived"])
    assert bad[0] == good[0] and bad[2:] == good[2:] and (bad[1], good[1]) == (0x5A, 0x5E)
    assert isinstance(decode_message(decode_one(good)), BillingModelReply)


@pytest.mark.parametrize("vector", by_kind("bad_payload"))
def test_malformed_payload_frames_pass_framing_but_not_decoding(vector: dict[str, Any]) -> None:
    raw = bytes.fromhex(vector["hex"])
    frame = decode_one(raw)  # the CRC is good
    with pytest.raises(DecodeError) as err:
        decode_message(frame)
    assert err.value.code == "length" and err.value.raw == raw
    # with the optional length filter the decoder already refuses the header
    items = FrameDecoder(length_filter=plausible_length).feed(raw)
    assert items[0].code == "bad_header" and not any(isinstance(i, Frame) for i in items)


def test_vector_file_coverage() -> None:
    kinds = [classify(v) for v in VECTORS]
    assert kinds.count("positive") == 35
    assert kinds.count("be_crc") == 7
    assert kinds.count("bad_crc") == 3
    assert kinds.count("bad_length") == 1
    assert kinds.count("bad_payload") == 2
