"""Message base class and registry.

Each frame type is one frozen dataclass (like ``mobilityhouse/ocpp``: one class per message, no
if/elif chain). A class lists its fields as ordinary dataclass fields and its wire layout as
``LAYOUT``, a tuple of ``(field name, codec)`` in payload order; :func:`register` checks the two
agree and files the class under its ``TYPE`` code. Decoding and encoding are generic.

Length rules (P4: "validate the length per frame type"):

* a fixed layout needs exactly its size;
* a layout ending in a :class:`~pile_link.ykc.datatypes.Repeated` list needs at least the fixed
  part, and the list must fill the rest exactly;
* a class with ``LENIENT_TRAILING = True`` also accepts *more* bytes than its layout and keeps
  them in its ``trailing`` field so the frame still re-encodes byte for byte. Only the frame types
  where the protocol note documents such frames in the field have this, each explained in its
  docstring.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from pile_link.ykc.datatypes import Codec, Repeated
from pile_link.ykc.errors import FIELD, LENGTH, DecodeError, EncodeError

Layout = tuple[tuple[str | tuple[str, ...], Codec], ...]

MESSAGES: dict[int, type[Message]] = {}
"""The registry: frame type code -> message class."""

M = TypeVar("M", bound="Message")


def _names(name: str | tuple[str, ...]) -> tuple[str, ...]:
    return name if isinstance(name, tuple) else (name,)


class Message:
    """Base of every message dataclass. Subclasses set ``TYPE`` and ``LAYOUT`` and are registered."""

    TYPE: ClassVar[int]
    LAYOUT: ClassVar[Layout]
    LENIENT_TRAILING: ClassVar[bool] = False
    _FIXED_SIZE: ClassVar[int]
    _TAIL: ClassVar[Repeated | None]

    @property
    def uplink(self) -> bool:
        """True for charger -> platform frames (odd type codes), False for platform -> charger."""
        return self.TYPE % 2 == 1

    @classmethod
    def payload_size(cls) -> int:
        """Bytes of the fixed part of the payload (the whole payload for most types)."""
        return cls._FIXED_SIZE

    @classmethod
    def plausible_payload_length(cls, n: int) -> bool:
        if cls._TAIL is not None:
            return n >= cls._FIXED_SIZE and cls._TAIL.plausible(n - cls._FIXED_SIZE)
        return n == cls._FIXED_SIZE or (cls.LENIENT_TRAILING and n > cls._FIXED_SIZE)

    @classmethod
    def decode(cls: type[M], payload: bytes) -> M:
        """Decode a payload (the bytes after the type byte) or raise DecodeError with the reason."""
        payload = bytes(payload)
        name = f"0x{cls.TYPE:02X} {cls.__name__}"
        fixed, tail = cls._FIXED_SIZE, cls._TAIL
        n = len(payload)
        if tail is None and n != fixed and not (cls.LENIENT_TRAILING and n > fixed):
            need = f"at least {fixed}" if cls.LENIENT_TRAILING else str(fixed)
            raise DecodeError(f"{name} needs {need} payload bytes, got {n}", payload, LENGTH, cls.TYPE)
        if tail is not None and n < fixed:
            raise DecodeError(f"{name} needs at least {fixed} payload bytes, got {n}", payload, LENGTH, cls.TYPE)
        values: dict[str, Any] = {}
        pos = 0
        for field, codec in cls.LAYOUT:
            size = codec.size if codec.size is not None else n - pos
            try:
                value = codec.decode(payload[pos : pos + size])
            except ValueError as exc:
                code = LENGTH if codec is tail else FIELD
                raise DecodeError(f"{name}.{'/'.join(_names(field))}: {exc}", payload, code, cls.TYPE) from None
            if isinstance(field, tuple):
                values.update(zip(field, value, strict=True))
            else:
                values[field] = value
            pos += size
        if cls.LENIENT_TRAILING:
            values["trailing"] = payload[pos:]
        return cls(**values)

    def encode(self) -> bytes:
        """The payload bytes. Raises EncodeError naming the field if a value does not fit."""
        parts = []
        for field, codec in self.LAYOUT:
            value = tuple(getattr(self, f) for f in field) if isinstance(field, tuple) else getattr(self, field)
            try:
                parts.append(codec.encode(value))
            except (TypeError, ValueError) as exc:
                names = "/".join(_names(field))
                raise EncodeError(f"0x{self.TYPE:02X} {type(self).__name__}.{names}: {exc}") from None
        if self.LENIENT_TRAILING:
            trailing = getattr(self, "trailing")
            if not isinstance(trailing, (bytes, bytearray)):
                raise EncodeError(f"0x{self.TYPE:02X} {type(self).__name__}.trailing must be bytes")
            parts.append(bytes(trailing))
        return b"".join(parts)


def register(cls: type[M]) -> type[M]:
    """Class decorator: validate a message dataclass against its LAYOUT and add it to MESSAGES.

    Checking at import time that every dataclass field appears in the layout exactly once (plus
    ``trailing`` for lenient types) turns a typo in a 60-field table into an import error instead
    of a silently wrong decoder.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass (apply @register above @dataclass)")
    code = cls.TYPE
    if not isinstance(code, int) or not 0 <= code <= 0xFF:
        raise TypeError(f"{cls.__name__}.TYPE must be a byte")
    if code in MESSAGES and MESSAGES[code] is not cls:
        raise ValueError(f"type 0x{code:02X} already registered to {MESSAGES[code].__name__}")
    layout_names = [n for field, _ in cls.LAYOUT for n in _names(field)]
    field_names = [f.name for f in dataclasses.fields(cls)]
    expected = layout_names + (["trailing"] if cls.LENIENT_TRAILING else [])
    if sorted(expected) != sorted(field_names):
        raise TypeError(f"{cls.__name__}: layout fields {expected} do not match dataclass fields {field_names}")
    sizes = [codec.size for _, codec in cls.LAYOUT]
    if None in sizes[:-1]:
        raise TypeError(f"{cls.__name__}: only the last field may be variable-length")
    tail = cls.LAYOUT[-1][1] if sizes and sizes[-1] is None else None
    if tail is not None and cls.LENIENT_TRAILING:
        raise TypeError(f"{cls.__name__}: a variable-length layout cannot also accept trailing bytes")
    cls._FIXED_SIZE = sum(s for s in sizes if s is not None)
    cls._TAIL = tail  # type: ignore[assignment]
    MESSAGES[code] = cls
    return cls


def message_class(frame_type: int) -> type[Message] | None:
    return MESSAGES.get(frame_type)


def plausible_length(frame_type: int, length_byte: int) -> bool:
    """A ``FrameDecoder`` length filter: can a frame of this type have this length byte?

    Unknown types pass (they are reported later, whole, as ``unknown_type``).
    """
    cls = MESSAGES.get(frame_type)
    return cls is None or cls.plausible_payload_length(length_byte - 4)

