"""Every registered message type round-trips: one representative instance each, and hypothesis over
every field of every type (values drawn from the field codecs themselves, so new types are covered)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pile_link.ykc import (
    MAX_PAYLOAD,
    MESSAGES,
    Cp56Datetime,
    DecodeError,
    Message,
    decode_message,
    encode_message,
    plausible_length,
)
from pile_link.ykc.cp56 import Cp56Time
from pile_link.ykc.datatypes import Array, Ascii, Bcd, BitSplit, Offset, Raw, Record, Repeated, UInt
from tests.unit.ykc.examples import EXAMPLES, decode_one


def test_examples_cover_every_registered_type() -> None:
    assert sorted(m.TYPE for m in EXAMPLES) == sorted(MESSAGES)


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: f"0x{m.TYPE:02X}-{type(m).__name__}")
def test_example_round_trip(msg: Message) -> None:
    raw = encode_message(msg, b"\x12\x34")
    frame = decode_one(raw)
    assert frame.frame_type == msg.TYPE and frame.seq == b"\x12\x34"
    assert decode_message(frame) == msg
    assert plausible_length(msg.TYPE, raw[1])


# -- hypothesis: every registered type, every field ------------------------------------------------

_FLAG_MASKS = (0x00, 0x00, 0xC0, 0xE0, 0xE0, 0xF0, 0x80)
_DATETIMES = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2127, 12, 31, 23, 59, 59)).map(
    lambda dt: dt.replace(microsecond=dt.microsecond // 1000 * 1000)
)
_CP56_FLAGS = st.tuples(*(st.integers(0, 255).map(lambda b, m=m: b & m) for m in _FLAG_MASKS)).map(bytes)
CP56_VALUES = st.one_of(
    st.none(),
    _DATETIMES,  # plain datetimes encode with zero flags
    st.builds(
        lambda dt, flags: Cp56Datetime(
            dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, flags=flags
        ),
        _DATETIMES,
        _CP56_FLAGS,
    ),
)


def for_codec(codec: Any) -> st.SearchStrategy[Any]:
    """A strategy for any value a field codec accepts; derived from the codec so new types are covered."""
    if isinstance(codec, Offset):
        return st.integers(codec.min_value, codec.max_value)
    if isinstance(codec, UInt):
        return st.integers(0, codec.max_value)
    if isinstance(codec, BitSplit):
        return st.tuples(*(st.integers(0, (1 << w) - 1) for w in codec.widths))
    if isinstance(codec, Bcd):
        n = 2 * codec.size
        return st.text(alphabet="0123456789", min_size=n, max_size=n) | st.text(
            alphabet="0123456789ABCDEF", min_size=n, max_size=n
        )
    if isinstance(codec, Ascii):
        return st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=codec.size)
    if isinstance(codec, Raw):
        return st.binary(min_size=codec.size, max_size=codec.size)
    if isinstance(codec, Cp56Time):
        return CP56_VALUES
    if isinstance(codec, Record):
        return st.builds(codec.cls, **{name: for_codec(c) for name, c in codec.layout})
    if isinstance(codec, Array):
        return st.lists(for_codec(codec.item), min_size=codec.count, max_size=codec.count).map(tuple)
    if isinstance(codec, Repeated):
        return st.lists(for_codec(codec.item), max_size=codec.max_count).map(tuple)
    raise TypeError(f"no strategy for codec {codec!r}")


def for_message(cls: type[Message]) -> st.SearchStrategy[Message]:
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field, codec in cls.LAYOUT:
        parts["|".join(field) if isinstance(field, tuple) else field] = for_codec(codec)
    if cls.LENIENT_TRAILING:
        parts["trailing"] = st.binary(max_size=MAX_PAYLOAD - cls.payload_size())

    def build(values: dict[str, Any]) -> Message:
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            kwargs.update(zip(key.split("|"), value, strict=True) if "|" in key else {key: value})
        return cls(**kwargs)

    return st.fixed_dictionaries(parts).map(build)


ALL_TYPES = [pytest.param(cls, id=f"0x{code:02X}-{cls.__name__}") for code, cls in sorted(MESSAGES.items())]


@pytest.mark.parametrize("cls", ALL_TYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_type_round_trips(cls: type[Message], data: st.DataObject) -> None:
    msg = data.draw(for_message(cls))
    payload = msg.encode()
    decoded = cls.decode(payload)
    assert decoded == msg
    assert decoded.encode() == payload  # including CP56 weekday/IV/SU bits
    seq = data.draw(st.binary(min_size=2, max_size=2))
    order = data.draw(st.sampled_from(["le", "be"]))
    raw = encode_message(msg, seq, order)
    frame = decode_one(raw, lenient=True)
    symmetric = raw[-1] == raw[-2]  # both orders read the same: recorded as the spec's "le"
    assert (frame.seq, frame.crc_order) == (seq, "le" if symmetric else order)
    assert decode_message(frame) == msg


@pytest.mark.parametrize("cls", ALL_TYPES)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_type_decodes_random_payloads_exactly_or_says_why(cls: type[Message], data: st.DataObject) -> None:
    """Any payload either fails with DecodeError or decodes to a message that re-encodes to it byte for byte."""
    size = cls.payload_size()
    if cls._TAIL is not None:  # counted or implied lists: a count byte that is sometimes right
        n = data.draw(st.integers(0, 6))
        item = cls._TAIL.item_size
        body = st.binary(min_size=size, max_size=size).map(
            lambda b: b + (bytes((n,)) if cls._TAIL.counted else b"")  # type: ignore[union-attr]
        )
        tail = st.binary(min_size=n * item, max_size=n * item + 2)
        payload = data.draw(st.builds(lambda a, b: a + b, body, tail))
    else:
        payload = data.draw(st.binary(min_size=size, max_size=size) | st.binary(max_size=MAX_PAYLOAD))
    try:
        msg = cls.decode(payload)
    except DecodeError as exc:
        assert exc.code in ("length", "field") and exc.frame_type == cls.TYPE
        return
    assert msg.encode() == payload
