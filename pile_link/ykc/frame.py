"""The YKC frame envelope: CRC, one frame, and a stream reassembler.

Wire layout (protocol note §1.2)::

    68 | len | seq(2) | enc(1) | type(1) | payload(N) | crc(2)
         len = N + 4;  CRC-16/MODBUS over seq..payload, low byte first

TCP gives no message boundaries: one ``recv`` may hold half a frame or three frames, and piles do
send garbage. :class:`FrameDecoder` turns arbitrary chunks into frames, reports everything else as
:class:`~pile_link.ykc.errors.DecodeError` values, and resynchronises on the next ``0x68``.
It never raises on input, always makes progress, and buffers less than one maximal frame between
calls.

Quirks handled here (see the note's §9):

* P1 CRC byte order. Some piles (and JCPP's samples) send the CRC high byte first because the
  spec's reference routine returns the byte-swapped word. Strict mode rejects them; with
  ``lenient_crc=True`` they are accepted and :attr:`Frame.crc_order` records ``"be"`` so the link
  can log it (and, if it chooses, answer that pile in kind).
* P5 sequence byte order is undefined, so :attr:`Frame.seq` is two opaque bytes; replies echo them.
* P7 encryption: only flag 0 is supported. A well-formed frame with flag 1 is consumed whole and
  reported (code ``encrypted``); any other flag value cannot start a frame and triggers a resync.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pile_link.ykc.errors import BAD_HEADER, CRC, ENCRYPTED, GARBAGE, TRUNCATED, DecodeError, EncodeError

START = 0x68
MIN_LENGTH = 4  # seq(2) + encryption flag(1) + type(1)
MAX_LENGTH = 0xFF  # the length byte; the spec says <= 200 but V1.7's 0x3D already uses 205
MAX_PAYLOAD = MAX_LENGTH - MIN_LENGTH  # 251
MAX_FRAME = MAX_LENGTH + 4  # start + len + (seq..payload) + crc = 259 bytes

CrcOrder = Literal["le", "be"]


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_modbus(data: bytes) -> int:
    """Standard CRC-16/MODBUS (poly 0x8005 reflected, init 0xFFFF, no final xor); check value 0x4B37.

    The spec's "polynomial 0x180D" label is wrong (P2); its table routine is plain Modbus. The result
    is the standard value; on the wire it goes low byte first (``crc & 0xFF`` then ``crc >> 8``).
    """
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def _crc_bytes(crc: int, order: CrcOrder) -> bytes:
    lo, hi = crc & 0xFF, crc >> 8
    return bytes((lo, hi)) if order == "le" else bytes((hi, lo))


@dataclass(frozen=True)
class Frame:
    """One intact frame as received (or to be sent).

    ``seq`` is kept as the two wire bytes, never as a number: the spec does not define its byte
    order (P5), so the only safe thing is to echo it verbatim in the reply. ``crc_order`` is the
    order the CRC arrived in ("le" is the spec; "be" only in lenient mode). :meth:`encode` rebuilds
    the exact wire bytes, so a frame is also its own raw log record.
    """

    seq: bytes
    encrypt_flag: int
    frame_type: int
    payload: bytes
    crc_order: CrcOrder = "le"

    def encode(self) -> bytes:
        """The exact bytes of this frame on the wire."""
        return _build(self.frame_type, self.payload, self.seq, self.crc_order, self.encrypt_flag)

    @property
    def raw(self) -> bytes:
        return self.encode()

    def __repr__(self) -> str:
        return (
            f"Frame(type=0x{self.frame_type:02X}, seq={self.seq.hex().upper()}, "
            f"enc={self.encrypt_flag}, crc={self.crc_order}, payload={self.payload.hex().upper()})"
        )


def _build(frame_type: int, payload: bytes, seq: bytes, crc_order: str, encrypt_flag: int = 0) -> bytes:
    if not isinstance(seq, (bytes, bytearray)) or len(seq) != 2:
        raise EncodeError(f"seq must be exactly 2 bytes (echo the request's), got {seq!r}")
    if not isinstance(frame_type, int) or not 0 <= frame_type <= 0xFF:
        raise EncodeError(f"frame type must be a byte, got {frame_type!r}")
    if not isinstance(encrypt_flag, int) or not 0 <= encrypt_flag <= 0xFF:
        raise EncodeError(f"encryption flag must be a byte, got {encrypt_flag!r}")
    if crc_order not in ("le", "be"):
        raise EncodeError(f"crc_order must be 'le' or 'be', got {crc_order!r}")
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise EncodeError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte maximum")
    body = bytes(seq) + bytes((encrypt_flag, frame_type)) + payload
    return bytes((START, len(body))) + body + _crc_bytes(crc16_modbus(body), crc_order)  # type: ignore[arg-type]


def encode_frame(frame_type: int, payload: bytes, seq: bytes, crc_order: CrcOrder = "le") -> bytes:
    """Build one plain (unencrypted) frame.

    Always send the CRC low byte first (the spec). ``crc_order="be"`` exists only to answer a pile
    that itself sends high-byte-first CRCs and is known to reject the standard order.
    """
    return _build(frame_type, payload, seq, crc_order)


class SequenceCounter:
    """Sequence numbers for frames the platform originates (0x12, 0x34, 0x36, 0x56, 0x58 ...).

    Replies never use this: they echo the request's ``seq`` (P6). Counts big-endian like the real
    charger in the note's S5 captures, wrapping at 0xFFFF (either order would do, P5).
    """

    __slots__ = ("_next",)

    def __init__(self, start: int = 0) -> None:
        self._next = start & 0xFFFF

    def next(self) -> bytes:
        value = self._next
        self._next = (value + 1) & 0xFFFF
        return value.to_bytes(2, "big")


LengthFilter = Callable[[int, int], bool]


class FrameDecoder:
    """Reassemble frames from a byte stream; one instance per TCP connection.

    ``feed(chunk)`` returns, in stream order, every :class:`Frame` completed by the chunk and a
    :class:`DecodeError` for everything that was not a frame. Recovery follows the note's recipe:
    on a bad candidate drop one byte and rescan for the next 0x68.

    * ``lenient_crc``: also accept a CRC sent high byte first (P1); the frame records "be".
    * ``length_filter(frame_type, length_byte) -> bool``: optional early plausibility check, e.g.
      :func:`pile_link.ykc.plausible_length`. Without it, a stray 0x68 followed by a large length
      byte holds back the frames behind it until enough bytes arrive to fail its CRC; with it such
      a candidate is rejected as soon as its type byte is in. Unknown types should pass.

    Counters for link policy: ``frames``, ``errors``, ``garbage_bytes`` (bytes thrown away, each
    counted once) and ``bytes_received``. A pile that has sent many garbage bytes and no frame is
    not speaking YKC and can be disconnected.
    """

    __slots__ = ("lenient_crc", "length_filter", "_buf", "_base", "_reported_until", "_pending_garbage", "frames",
                 "errors", "garbage_bytes", "bytes_received")  # one per connection: no __dict__

    def __init__(self, *, lenient_crc: bool = False, length_filter: LengthFilter | None = None) -> None:
        self.lenient_crc = lenient_crc
        self.length_filter = length_filter
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._reported_until = 0  # stream offset up to which bytes were already shown in an error
        self._pending_garbage = bytearray()
        self.frames = 0
        self.errors = 0
        self.garbage_bytes = 0
        self.bytes_received = 0

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a frame. Always < MAX_FRAME between calls."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | DecodeError]:
        """Add a chunk from the socket; return what it completed. Never raises on any byte content."""
        self._buf += data
        self.bytes_received += len(data)
        out: list[Frame | DecodeError] = []
        buf = self._buf
        pos = 0
        while pos < len(buf):
            start = buf.find(START, pos)
            if start < 0:
                self._discard(pos, len(buf))
                pos = len(buf)
                break
            if start > pos:
                self._discard(pos, start)
                pos = start
            step = self._try_candidate(pos, out)
            if step == 0:
                break  # an incomplete but still plausible frame: wait for more bytes
            pos += step
        self._flush_garbage(out)
        del buf[:pos]
        self._base += pos
        return out

    def flush(self) -> list[Frame | DecodeError]:
        """End of input: give up on incomplete candidates and decode whatever the rest still holds.

        Call it when the pile has gone quiet with bytes held back (``buffered > 0``) for longer
        than a frame takes to arrive, or when the connection closes. The partial candidate at the
        head is reported as ``truncated``; like any bad candidate it is abandoned one byte at a
        time, so a complete frame hiding behind a stray 0x68 is still returned.
        """
        out: list[Frame | DecodeError] = []
        while self._buf:
            self._reject(0, len(self._buf), f"incomplete frame abandoned ({len(self._buf)} bytes held)", TRUNCATED, out)
            del self._buf[:1]
            self._base += 1
            out += self.feed(b"")
        return out

    # -- internals ------------------------------------------------------------------------------

    def _try_candidate(self, pos: int, out: list[Frame | DecodeError]) -> int:
        """Examine the candidate starting at ``buf[pos] == 0x68``; return how many bytes to consume.

        0 means "incomplete, wait". A rejected candidate consumes 1 byte (its start flag) so the
        rescan starts inside it; a well-formed frame (even an encrypted one) is consumed whole.
        """
        buf = self._buf
        avail = len(buf) - pos
        if avail < 2:
            return 0
        length = buf[pos + 1]
        if length < MIN_LENGTH:
            return self._reject(pos, pos + 2, f"length byte {length} < {MIN_LENGTH}", BAD_HEADER, out)
        if avail >= 5 and buf[pos + 4] not in (0x00, 0x01):
            return self._reject(pos, pos + 5, f"encryption flag 0x{buf[pos + 4]:02X} is not 0 or 1", BAD_HEADER, out)
        if avail >= 6 and self.length_filter is not None and not self.length_filter(buf[pos + 5], length):
            frame_type = buf[pos + 5]
            reason = f"length byte {length} implausible for type 0x{frame_type:02X}"
            return self._reject(pos, pos + 6, reason, BAD_HEADER, out, frame_type)
        total = length + 4
        if avail < total:
            return 0
        end = pos + total
        body = bytes(buf[pos + 2 : end - 2])
        crc = crc16_modbus(body)
        wire_lo, wire_hi = buf[end - 2], buf[end - 1]
        if wire_lo == crc & 0xFF and wire_hi == crc >> 8:
            order: CrcOrder = "le"
        elif self.lenient_crc and wire_hi == crc & 0xFF and wire_lo == crc >> 8:
            order = "be"
        else:
            expected = _crc_bytes(crc, "le").hex().upper()
            reason = f"CRC mismatch: got {wire_lo:02X}{wire_hi:02X}, expected {expected} (low byte first)"
            return self._reject(pos, end, reason, CRC, out, body[3])
        seq, flag, frame_type, payload = body[0:2], body[2], body[3], body[4:]
        self._flush_garbage(out)
        if flag != 0:
            self.errors += 1
            self._mark_reported(end)
            out.append(
                DecodeError(
                    f"encrypted frame (flag 0x{flag:02X}) of type 0x{frame_type:02X}: 3DES is not supported",
                    bytes(buf[pos:end]),
                    ENCRYPTED,
                    frame_type,
                )
            )
            return total
        self.frames += 1
        out.append(Frame(seq=seq, encrypt_flag=flag, frame_type=frame_type, payload=payload, crc_order=order))
        return total

    def _reject(
        self, pos: int, end: int, reason: str, code: str, out: list[Frame | DecodeError], frame_type: int | None = None
    ) -> int:
        self._flush_garbage(out)
        self.errors += 1
        self.garbage_bytes += 1  # the start flag; the rest is rescanned and counted when discarded
        out.append(DecodeError(reason, bytes(self._buf[pos:end]), code, frame_type))
        self._mark_reported(end)
        return 1

    def _mark_reported(self, end: int) -> None:
        self._reported_until = max(self._reported_until, self._base + end)

    def _discard(self, start: int, end: int) -> None:
        """Bytes that cannot begin a frame. Count them; keep for a garbage report those not yet shown."""
        self.garbage_bytes += end - start
        first_unreported = max(start, self._reported_until - self._base)
        if first_unreported < end:
            self._pending_garbage += self._buf[first_unreported:end]

    def _flush_garbage(self, out: list[Frame | DecodeError]) -> None:
        if self._pending_garbage:
            raw = bytes(self._pending_garbage)
            self._pending_garbage.clear()
            self.errors += 1
            out.append(DecodeError(f"{len(raw)} bytes outside any frame", raw, GARBAGE))
