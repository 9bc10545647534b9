"""CP56Time2a (IEC 60870-5-4), the YKC time format: 7 bytes, milliseconds to years (protocol note §2).

Split from :mod:`pile_link.ykc.datatypes` (the other field codecs), whose rules it follows: exact
(``encode(decode(b)) == b``, so the flag bits a pile sets survive), and a short ``ValueError`` /
``TypeError`` reason the message layer names the field in.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pile_link.ykc.datatypes import check_int

# The bits of each CP56Time2a byte that are not part of the date/time value (IEC 60870-5-4):
# byte 2 D6 reserved + D7 IV, byte 3 D5-D6 reserved + D7 SU, byte 4 D5-D7 day of week,
# byte 5 D4-D7 reserved, byte 6 D7 reserved.
_FLAG_MASKS = (0x00, 0x00, 0xC0, 0xE0, 0xE0, 0xF0, 0x80)
_NO_FLAGS = bytes(7)


class Cp56Datetime(datetime):
    """A naive local datetime (the pile's wall clock, China time) read from a CP56Time2a field.

    It *is* a ``datetime``, compares and hashes like one, and ignores the extra wire bits for
    equality. It also remembers those bits (day of week, IV, SU, reserved), because piles set them
    (S3's 0x3B sends weekday 3) and re-encoding must give back the exact bytes. A plain
    ``datetime`` encodes with all of them zero ("day of week not used"). Arithmetic and
    ``replace()`` drop the bits, which is right: they described the old value.
    """

    _flags: bytes

    def __new__(cls, *args: Any, flags: bytes = _NO_FLAGS, **kwargs: Any) -> Cp56Datetime:
        self = super().__new__(cls, *args, **kwargs)
        if len(flags) != 7 or any(b & ~m for b, m in zip(flags, _FLAG_MASKS)):
            raise ValueError("flags must be 7 bytes using only the CP56Time2a flag bits")
        self._flags = bytes(flags)
        return self

    @classmethod
    def from_datetime(
        cls, dt: datetime, *, weekday: int = 0, invalid: bool = False, summer_time: bool = False
    ) -> Cp56Datetime:
        """Wrap a naive datetime, e.g. ``from_datetime(now, weekday=now.isoweekday())``."""
        flags = bytearray(7)
        flags[2] = 0x80 if invalid else 0
        flags[3] = 0x80 if summer_time else 0
        flags[4] = check_int(weekday, 0, 7) << 5
        return cls(
            dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond, dt.tzinfo, flags=bytes(flags)
        )

    @property
    def flags(self) -> bytes:
        """The 7 wire bytes masked to the non-time bits."""
        return getattr(self, "_flags", _NO_FLAGS)

    @property
    def wire_weekday(self) -> int:
        """Day of week as sent: 1 = Monday ... 7 = Sunday, 0 = not used. Not checked against the date."""
        return self.flags[4] >> 5

    @property
    def invalid(self) -> bool:
        """The IV bit: the pile itself says this time is not valid."""
        return bool(self.flags[2] & 0x80)

    @property
    def summer_time(self) -> bool:
        return bool(self.flags[3] & 0x80)

    def __reduce_ex__(self, protocol: Any) -> Any:  # keep the flags through pickle/copy
        return (
            _restore_cp56,
            (self.year, self.month, self.day, self.hour, self.minute, self.second, self.microsecond, self.flags),
        )

    def __repr__(self) -> str:
        base = datetime.__repr__(self)
        return base if self.flags == _NO_FLAGS else f"{base[:-1]}, flags={self.flags.hex().upper()})"


def _restore_cp56(*args: Any) -> Cp56Datetime:
    *parts, flags = args
    return Cp56Datetime(*parts, flags=flags)


class Cp56Time:
    """CP56Time2a, 7 bytes (note §2.2): ms-in-minute LE(2), minute, hour, day|weekday, month, year-2000.

    Every field is masked (P17); the masked-off bits ride along in :class:`Cp56Datetime`. Seven
    zero bytes decode to ``None`` ("no time": a pile without a set clock) rather than failing the
    whole frame, because that frame may be a transaction record we must not drop; ``None``
    encodes back to zeros. Any other impossible date or time is a decode error.
    """

    size = 7

    def decode(self, buf: bytes) -> Cp56Datetime | None:
        if buf == _NO_FLAGS:
            return None
        ms = buf[0] | buf[1] << 8
        if ms > 59_999:
            raise ValueError(f"milliseconds-in-minute {ms} > 59999")
        flags = bytes(b & m for b, m in zip(buf, _FLAG_MASKS))
        try:
            return Cp56Datetime(
                2000 + (buf[6] & 0x7F),
                buf[5] & 0x0F,
                buf[4] & 0x1F,
                buf[3] & 0x1F,
                buf[2] & 0x3F,
                ms // 1000,
                (ms % 1000) * 1000,
                flags=flags,
            )
        except ValueError as exc:  # month 0, hour 27, 31 February ...
            raise ValueError(f"not a valid CP56Time2a time ({buf.hex().upper()}): {exc}") from None

    def encode(self, value: Any) -> bytes:
        if value is None:
            return _NO_FLAGS
        if not isinstance(value, datetime):
            raise TypeError(f"expected datetime, got {type(value).__name__}")
        if value.tzinfo is not None:
            raise ValueError("CP56Time2a carries the pile's local wall-clock time: pass a naive datetime")
        check_int(value.year, 2000, 2127)
        flags = value.flags if isinstance(value, Cp56Datetime) else _NO_FLAGS
        ms = value.second * 1000 + value.microsecond // 1000
        return bytes(
            (
                ms & 0xFF,
                ms >> 8,
                value.minute | flags[2],
                value.hour | flags[3],
                value.day | flags[4],
                value.month | flags[5],
                (value.year - 2000) | flags[6],
            )
        )


CP56 = Cp56Time()
