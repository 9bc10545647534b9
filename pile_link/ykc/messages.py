"""Frames <-> message dataclasses: the registry's front door.

Importing this module registers every message class (they live in modules by frame range:
:mod:`.login`, :mod:`.realtime`, :mod:`.bms`, :mod:`.transactions`, :mod:`.cards`,
:mod:`.maintenance`). A link does::

    for item in decoder.feed(chunk):
        if isinstance(item, DecodeError): log(item.hex, item.reason); continue
        try:
            msg = decode_message(item)
        except DecodeError as e: log(e.hex, e.reason); continue
        handlers[type(msg)](item, msg)
    ...
    writer.write(encode_reply(frame, HeartbeatAck(pile_no, gun_no)))
"""

from __future__ import annotations

from pile_link.ykc import bms, cards, login, maintenance, realtime, transactions  # noqa: F401  (registers)
from pile_link.ykc.base import MESSAGES, Message, message_class, plausible_length
from pile_link.ykc.errors import ENCRYPTED, UNKNOWN_TYPE, DecodeError, EncodeError
from pile_link.ykc.frame import CrcOrder, Frame, encode_frame

__all__ = ["MESSAGES", "decode_message", "encode_message", "encode_reply", "message_class", "plausible_length"]


def decode_message(frame: Frame) -> Message:
    """Decode a frame's payload into its message class; raise DecodeError on anything wrong.

    Raises (never returns) for: an encrypted frame, an unregistered type (code ``unknown_type``),
    a payload length the type does not allow (``length``), an undecodable field (``field``).
    The error's ``raw`` is the whole frame, ready for a hex log.
    """
    # the raw bytes (rebuilt from the frame, CRC and all) only on the error paths: a hot path
    # that decodes thousands of heartbeats a second should not pay for a log record it never writes
    if frame.encrypt_flag != 0:
        raise DecodeError("encrypted frames are not supported", frame.encode(), ENCRYPTED, frame.frame_type)
    cls = MESSAGES.get(frame.frame_type)
    if cls is None:
        reason = f"no message class for frame type 0x{frame.frame_type:02X}"
        raise DecodeError(reason, frame.encode(), UNKNOWN_TYPE, frame.frame_type)
    try:
        return cls.decode(frame.payload)
    except DecodeError as exc:
        raise DecodeError(exc.reason, frame.encode(), exc.code, frame.frame_type) from None


def encode_message(msg: Message, seq: bytes, crc_order: CrcOrder = "le") -> bytes:
    """A complete frame for ``msg``. Use the request's ``seq`` for replies, a SequenceCounter otherwise."""
    if not isinstance(msg, Message):
        raise EncodeError(f"not a YKC message: {msg!r}")
    return encode_frame(msg.TYPE, msg.encode(), seq, crc_order)


def encode_reply(request: Frame, msg: Message, *, mirror_crc: bool = False) -> bytes:
    """Answer ``request`` with ``msg``, echoing its seq bytes verbatim (P5, P6).

    The CRC goes low byte first unless ``mirror_crc`` is set, in which case it copies the order the
    request arrived in: for a pile known to accept only its own (high-byte-first) order.
    """
    return encode_message(msg, request.seq, request.crc_order if mirror_crc else "le")
