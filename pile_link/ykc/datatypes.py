"""Field codecs: the YKC data types (protocol note §2) as small composable objects.

A message class declares its payload as a layout, a tuple of ``(field name, codec)`` pairs, and
the generic code in :mod:`pile_link.ykc.base` walks it. Writing layouts instead of offset
arithmetic keeps each message a readable copy of the spec table, and lets the tests derive a
hypothesis strategy for every field automatically.

Every codec is *exact*: for any bytes it accepts, ``encode(decode(b)) == b``. That is why some
values keep more than their meaning (the CP56Time2a weekday bits, NUL bytes inside an ASCII field,
hex nibbles in a BCD field): a record we cannot reproduce byte for byte is a record an auditor
cannot check against the raw frame.

Codecs raise :class:`ValueError` (decoding) or :class:`TypeError`/:class:`ValueError` (encoding)
with a short reason; the message layer adds the field name and turns them into
:class:`~pile_link.ykc.errors.DecodeError` / :class:`~pile_link.ykc.errors.EncodeError`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

# -- the codec protocol ----------------------------------------------------------------------------


class Codec(Protocol):
    """``size`` bytes on the wire (None: variable, takes the rest of the payload; last field only)."""

    size: int | None

    def decode(self, buf: bytes) -> Any: ...

    def encode(self, value: Any) -> bytes: ...


def check_int(value: Any, lo: int, hi: int) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{value} outside {lo}..{hi}")
    return value


# -- integers -------------------------------------------------------------------------------------


class UInt:
    """BIN: unsigned little-endian integer of 1, 2, 3, 4 or 5 bytes ("BIN码均为低位在前高位在后").

    ``max_value`` narrows the accepted range (e.g. a tariff slot is 0..3) on decode and encode.
    """

    def __init__(self, size: int, max_value: int | None = None) -> None:
        self.size = size
        self.max_value = (1 << (8 * size)) - 1 if max_value is None else max_value

    def decode(self, buf: bytes) -> int:
        value = int.from_bytes(buf, "little")
        if value > self.max_value:
            raise ValueError(f"{value} exceeds the maximum {self.max_value}")
        return value

    def encode(self, value: Any) -> bytes:
        return check_int(value, 0, self.max_value).to_bytes(self.size, "little")


U8, U16, U24, U32, U40 = UInt(1), UInt(2), UInt(3), UInt(4), UInt(5)


class Offset:
    """An unsigned field with a fixed offset: value = raw + offset.

    Used for temperatures (raw − 50 °C), the GB/T BMS currents in 0x17 and 0x23 (raw − 4000 in
    0.1 A, i.e. −400 A), BMS cell/probe numbers (raw + 1) and the BRM production year (raw + 1985).
    """

    def __init__(self, inner: UInt, offset: int) -> None:
        self.inner = inner
        self.offset = offset
        self.size = inner.size
        self.min_value = offset
        self.max_value = inner.max_value + offset

    def decode(self, buf: bytes) -> int:
        return self.inner.decode(buf) + self.offset

    def encode(self, value: Any) -> bytes:
        return self.inner.encode(check_int(value, self.min_value, self.max_value) - self.offset)


TEMP_C = Offset(U8, -50)  # 1 byte, °C + 50 on the wire
BMS_CURRENT_DA = Offset(U16, -4000)  # 2 bytes, 0.1 A with −400 A offset (0x17, 0x23 only; not 0x13)
PLUS_ONE = Offset(U8, 1)  # BSM cell / probe numbers are sent minus one


class BitSplit:
    """One LE integer holding several bit fields, low bits first; decodes to a tuple.

    The 0x23 "highest cell" word: bits 0-11 voltage in 0.01 V, bits 12-15 group number.
    """

    def __init__(self, size: int, widths: Sequence[int]) -> None:
        if sum(widths) != 8 * size:
            raise ValueError("bit widths must fill the field")
        self.size = size
        self.widths = tuple(widths)

    def decode(self, buf: bytes) -> tuple[int, ...]:
        word = int.from_bytes(buf, "little")
        parts = []
        for width in self.widths:
            parts.append(word & ((1 << width) - 1))
            word >>= width
        return tuple(parts)

    def encode(self, value: Any) -> bytes:
        word, shift = 0, 0
        for part, width in zip(value, self.widths, strict=True):
            word |= check_int(part, 0, (1 << width) - 1) << shift
            shift += width
        return word.to_bytes(self.size, "little")


def bit_pair(value: int, index: int) -> int:
    """The ``index``-th 2-bit field of a flag word, LSB first ("2位" means 2 bits, P12)."""
    return (value >> (2 * index)) & 0b11


# -- identifiers and text -------------------------------------------------------------------------

_HEX_DIGITS = re.compile(r"[0-9A-F]*")


class Bcd:
    """Packed BCD, most significant digit first, left-padded with 0 to the field width.

    Decodes to the string of nibbles, e.g. ``32 01 06 00 01 92 36`` -> ``"32010600019236"``.
    Nibbles A-F are kept (upper case) rather than rejected: identifiers are opaque tokens to the
    codec (P18 trade numbers, P8 model numbers), real SIM ICCIDs contain them, and a gun byte sent
    in binary by a sloppy pile (P15) should reach the link's "unknown gun" logic, not vanish as a
    decode error. Whether an identifier is valid is the domain's call. On encode the string may be
    shorter than the field and is left-padded with "0" as the spec says.
    """

    def __init__(self, size: int) -> None:
        self.size = size

    def decode(self, buf: bytes) -> str:
        return buf.hex().upper()

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"expected a digit string, got {type(value).__name__}")
        if not _HEX_DIGITS.fullmatch(value):
            raise ValueError(f"{value!r} is not a BCD digit string")
        if len(value) > 2 * self.size:
            raise ValueError(f"{value!r} has more than {2 * self.size} digits")
        return bytes.fromhex(value.rjust(2 * self.size, "0"))


PILE_NO = Bcd(7)  # 14 digits
GUN_NO = Bcd(1)  # "01", "02", ...
TRADE_NO = Bcd(16)  # 32 digits: pile(14) + gun(2) + YYMMDDhhmmss(12) + seq(4), opaque when parsing
LOGICAL_CARD_NO = Bcd(8)  # 16 digits printed on the card
MODEL_NO = Bcd(2)  # billing model number, an opaque 2-byte token (P8), e.g. "0001"


class Ascii:
    """ASCII text right-padded with NUL; ``reverse`` for the 0x31/0xA1 VIN sent back to front (P14).

    Decoding strips trailing NULs only and maps bytes 1:1 (Latin-1), so any byte survives a
    round trip: one odd byte in a firmware string must not lock a pile out at login.
    """

    def __init__(self, size: int, *, reverse: bool = False) -> None:
        self.size = size
        self.reverse = reverse

    def decode(self, buf: bytes) -> str:
        if self.reverse:
            buf = buf[::-1]
        return buf.rstrip(b"\x00").decode("latin-1")

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"expected str, got {type(value).__name__}")
        raw = value.encode("latin-1")  # UnicodeEncodeError is a ValueError
        if len(raw) > self.size:
            raise ValueError(f"{value!r} is longer than {self.size} bytes")
        if raw.endswith(b"\x00"):
            raise ValueError("text must not end in NUL (padding would swallow it)")
        raw = raw.ljust(self.size, b"\x00")
        return raw[::-1] if self.reverse else raw


VIN = Ascii(17)
VIN_REVERSED = Ascii(17, reverse=True)


class Raw:
    """Bytes kept as they are: physical card UIDs (P13: compare byte-wise, never as a number),
    MD5 passwords, reserved fields, the BEM/CEM flag block."""

    def __init__(self, size: int) -> None:
        self.size = size

    def decode(self, buf: bytes) -> bytes:
        return bytes(buf)

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError(f"expected bytes, got {type(value).__name__}")
        if len(value) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(value)}")
        return bytes(value)


PHYSICAL_CARD = Raw(8)


# -- composites -----------------------------------------------------------------------------------


class Record:
    """A fixed group of fields decoded into a small frozen dataclass (a tariff tier, a card entry)."""

    def __init__(self, cls: type, layout: Sequence[tuple[str, Codec]]) -> None:
        self.cls = cls
        self.layout = tuple(layout)
        sizes = [codec.size for _, codec in self.layout]
        if any(s is None for s in sizes):
            raise ValueError("records hold fixed-size fields only")
        self.size = sum(sizes)  # type: ignore[arg-type]

    def decode(self, buf: bytes) -> Any:
        values, pos = {}, 0
        for name, codec in self.layout:
            size = codec.size
            assert size is not None
            try:
                values[name] = codec.decode(buf[pos : pos + size])
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            pos += size
        return self.cls(**values)

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, self.cls):
            raise TypeError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        parts = []
        for name, codec in self.layout:
            try:
                parts.append(codec.encode(getattr(value, name)))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name}: {exc}") from None
        return b"".join(parts)


class Array:
    """Exactly ``count`` items in a row, as a tuple (the four tariff tiers, the 48 half-hour slots)."""

    def __init__(self, item: Codec, count: int) -> None:
        assert item.size is not None
        self.item = item
        self.count = count
        self.item_size: int = item.size
        self.size = item.size * count

    def decode(self, buf: bytes) -> tuple[Any, ...]:
        n = self.item_size
        items = []
        for i in range(self.count):
            try:
                items.append(self.item.decode(buf[i * n : (i + 1) * n]))
            except ValueError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
        return tuple(items)

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"expected a tuple of {self.count}, got {type(value).__name__}")
        if len(value) != self.count:
            raise ValueError(f"expected {self.count} items, got {len(value)}")
        return b"".join(self.item.encode(v) for v in value)


class Repeated:
    """A variable list filling the rest of the payload, with or without a leading count byte.

    0x44/0x46/0x48 send a count byte (``counted=True``) and must hold exactly that many items.
    0x45/0x47 send none; the item count follows from the payload length, which must divide evenly.
    """

    size = None

    def __init__(self, item: Codec, *, counted: bool, max_count: int) -> None:
        assert item.size is not None
        self.item = item
        self.item_size: int = item.size
        self.counted = counted
        self.max_count = max_count

    def plausible(self, n: int) -> bool:
        """Whether a remainder of ``n`` bytes can hold a valid list (used before the bytes arrive)."""
        body = n - 1 if self.counted else n
        return body >= 0 and body % self.item_size == 0 and body // self.item_size <= self.max_count

    def decode(self, buf: bytes) -> tuple[Any, ...]:
        size = self.item_size
        if self.counted:
            if not buf:
                raise ValueError("count byte missing")
            count, body = buf[0], buf[1:]
            if len(body) != count * size:
                raise ValueError(
                    f"count byte says {count} items ({count * size} bytes) but {len(body)} bytes follow"
                )
        else:
            body = buf
            if len(body) % size:
                raise ValueError(f"{len(body)} bytes is not a whole number of {size}-byte items")
            count = len(body) // size
        if count > self.max_count:
            raise ValueError(f"{count} items exceed the spec's maximum of {self.max_count}")
        items = []
        for i in range(count):
            try:
                items.append(self.item.decode(body[i * size : (i + 1) * size]))
            except ValueError as exc:
                raise ValueError(f"[{i}]: {exc}") from None
        return tuple(items)

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"expected a tuple, got {type(value).__name__}")
        if len(value) > self.max_count:
            raise ValueError(f"{len(value)} items exceed the spec's maximum of {self.max_count}")
        body = b"".join(self.item.encode(v) for v in value)
        return bytes((len(value),)) + body if self.counted else body
