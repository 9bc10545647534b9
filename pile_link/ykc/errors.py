"""Errors of the YKC codec.

A pile can send anything. The stream decoder never raises on bad input: it hands back a
:class:`DecodeError` *value* next to the frames it did decode, so one malformed frame cannot kill a
connection handler. :func:`pile_link.ykc.decode_message` raises the same class, so a caller needs one
``except DecodeError`` to cover every way a pile's bytes can be wrong.

Every error carries the offending bytes (``raw``) so the link can log them in hex, and a stable
``code`` so it can count errors by kind without parsing the message.
"""

from __future__ import annotations

# Stable error codes. The link counts these; keep them stable.
GARBAGE = "garbage"  # bytes outside any frame candidate (no 0x68 start flag)
BAD_HEADER = "bad_header"  # a 0x68 whose length or encryption byte cannot start a frame
CRC = "crc"  # a complete candidate whose CRC does not match
ENCRYPTED = "encrypted"  # a well-formed frame with encryption flag != 0 (3DES is not supported, P7)
TRUNCATED = "truncated"  # a partial candidate given up by FrameDecoder.flush()
UNKNOWN_TYPE = "unknown_type"  # a well-formed frame of a type no message class is registered for
LENGTH = "length"  # payload length does not fit the frame type's layout
FIELD = "field"  # a field value that cannot be decoded (bad date, tier index out of range, ...)

_HEX_PREVIEW = 64  # bytes shown in str(); ``raw`` itself is never truncated


class YkcError(Exception):
    """Base class of everything this package raises."""


class DecodeError(YkcError, ValueError):
    """Bytes from a pile that cannot be turned into a frame or a message.

    ``reason`` is for people, ``code`` is one of the module constants, ``raw`` the bytes involved
    (a whole candidate frame, a run of garbage, or a payload), ``frame_type`` the frame type when it
    is known.
    """

    def __init__(self, reason: str, raw: bytes = b"", code: str = FIELD, frame_type: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = bytes(raw)
        self.code = code
        self.frame_type = frame_type

    @property
    def hex(self) -> str:
        """The raw bytes as upper-case hex, the form the protocol note and pile vendors use."""
        return self.raw.hex().upper()

    def __str__(self) -> str:
        preview = self.raw[:_HEX_PREVIEW].hex().upper()
        more = f"... ({len(self.raw)} bytes)" if len(self.raw) > _HEX_PREVIEW else ""
        return f"{self.reason} [{self.code}] raw={preview}{more}"

    def __repr__(self) -> str:
        return f"DecodeError({self.reason!r}, code={self.code!r}, raw={self.hex!r})"


class EncodeError(YkcError, ValueError):
    """A message or frame the platform asked to send does not fit the wire format.

    This is a programming or data error on our side (a 15-digit pile number, a negative price), so
    it is raised, never returned.
    """
