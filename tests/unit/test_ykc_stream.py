"""YKC stream reassembly: split and coalesced reads, garbage, resynchronisation, fuzzing.

The property every test leans on is the byte accounting of :class:`FrameDecoder`: each byte it
was fed is, at any moment, in exactly one place: a returned frame, a consumed encrypted frame,
the garbage counter, or the (bounded) buffer. If that holds for arbitrary input, nothing was
silently lost and nothing was counted twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pile_link.ykc import (
    MAX_FRAME,
    DecodeError,
    Frame,
    FrameDecoder,
    Heartbeat,
    decode_message,
    encode_frame,
    encode_message,
    plausible_length,
)

VECTORS: list[dict[str, Any]] = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "ykc-vectors.json").read_text("utf-8")
)
GOOD = [bytes.fromhex(v["hex"]) for v in VECTORS if v["crc_ok"] and v["length_ok"]]  # 37 intact LE frames
BE_ONLY = [bytes.fromhex(v["hex"]) for v in VECTORS if v["crc_ok_if_read_big_endian"]]
HEARTBEAT = encode_message(Heartbeat("20231212000010", "01", 0), b"\x00\x07")
STREAM = GOOD[0] + GOOD[16] + HEARTBEAT + GOOD[-1]  # 0x02, 0x31, 0x03, 0x3B

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


class Recorder:
    """Feeds chunks into a decoder and checks its invariants after every call."""

    def __init__(self, **kwargs: Any) -> None:
        self.decoder = FrameDecoder(**kwargs)
        self.items: list[Frame | DecodeError] = []

    def feed(self, chunk: bytes) -> None:
        out = self.decoder.feed(chunk)
        assert all(isinstance(i, (Frame, DecodeError)) for i in out)
        assert self.decoder.buffered < MAX_FRAME
        self.items += out
        self.check_accounting()

    def flush(self) -> None:
        self.items += self.decoder.flush()
        assert self.decoder.buffered == 0
        self.check_accounting()

    def check_accounting(self) -> None:
        d = self.decoder
        in_frames = sum(len(f.encode()) for f in self.frames)
        encrypted = sum(len(e.raw) for e in self.errors if e.code == "encrypted")
        assert in_frames + encrypted + d.garbage_bytes + d.buffered == d.bytes_received
        assert d.frames == len(self.frames) and d.errors == len(self.errors)

    @property
    def frames(self) -> list[Frame]:
        return [i for i in self.items if isinstance(i, Frame)]

    @property
    def errors(self) -> list[DecodeError]:
        return [i for i in self.items if isinstance(i, DecodeError)]


def frames_of(data: bytes, *chunk_sizes: int, **kwargs: Any) -> Recorder:
    rec = Recorder(**kwargs)
    pos = 0
    for size in chunk_sizes:
        rec.feed(data[pos : pos + size])
        pos += size
    rec.feed(data[pos:])
    return rec


def raws(rec: Recorder) -> list[bytes]:
    return [f.encode() for f in rec.frames]


# -- coalesced and split reads --------------------------------------------------------------------


def test_all_intact_vectors_coalesced_in_one_read() -> None:
    rec = frames_of(b"".join(GOOD))
    assert raws(rec) == GOOD and rec.errors == [] and rec.decoder.buffered == 0
    for frame in rec.frames:
        if frame.frame_type == 0x44 or (frame.frame_type == 0x32 and len(frame.payload) != 38):
            with pytest.raises(DecodeError):  # the vector file's two malformed payloads
                decode_message(frame)
        else:
            decode_message(frame)


def test_split_at_every_byte_boundary() -> None:
    expected = [GOOD[0], GOOD[16], HEARTBEAT, GOOD[-1]]
    for cut in range(len(STREAM) + 1):
        rec = frames_of(STREAM, cut)
        assert raws(rec) == expected, cut
        assert rec.errors == []


def test_split_at_every_pair_of_boundaries_of_a_small_stream() -> None:
    data = GOOD[0] + HEARTBEAT
    for a in range(len(data) + 1):
        for b in range(len(data) - a + 1):
            assert raws(frames_of(data, a, b)) == [GOOD[0], HEARTBEAT]


def test_one_byte_at_a_time() -> None:
    rec = frames_of(STREAM, *([1] * len(STREAM)))
    assert raws(rec) == [GOOD[0], GOOD[16], HEARTBEAT, GOOD[-1]]


@FUZZ
@given(st.lists(st.sampled_from(GOOD), min_size=1, max_size=8), st.lists(st.integers(0, 300), max_size=12))
def test_random_read_sizes(frames: list[bytes], sizes: list[int]) -> None:
    rec = frames_of(b"".join(frames), *sizes)
    assert raws(rec) == frames and rec.errors == []


# -- garbage and resynchronisation ----------------------------------------------------------------


def test_garbage_between_frames_is_reported_and_counted() -> None:
    junk1, junk2 = b"\x00\xff\x13\x37", b"GET / HTTP/1.1\r\n"
    rec = frames_of(junk1 + HEARTBEAT + junk2 + GOOD[0] + junk1)
    assert raws(rec) == [HEARTBEAT, GOOD[0]]
    assert [e.raw for e in rec.errors] == [junk1, junk2, junk1]
    assert {e.code for e in rec.errors} == {"garbage"}
    assert rec.decoder.garbage_bytes == 2 * len(junk1) + len(junk2)


def test_corrupted_crc_then_good_frame_resynchronises() -> None:
    bad = GOOD[-1][:-1] + bytes([GOOD[-1][-1] ^ 0xFF])
    rec = frames_of(bad + HEARTBEAT)
    assert raws(rec) == [HEARTBEAT]
    assert rec.errors[0].code == "crc" and rec.errors[0].raw == bad  # the whole candidate, for the hex log
    assert rec.errors[0].frame_type == 0x3B
    assert rec.decoder.garbage_bytes == len(bad)


@pytest.mark.parametrize("offset", [2, 3, 5, 10, 50, 100])
def test_corrupted_payload_byte_then_good_frames(offset: int) -> None:
    frame = bytearray(GOOD[-1])
    frame[offset] ^= 0x5A
    rec = frames_of(bytes(frame) + GOOD[0] + HEARTBEAT)
    rec.flush()
    assert raws(rec) == [GOOD[0], HEARTBEAT]
    assert rec.errors[0].code == "crc"


def test_corrupted_length_byte_then_good_frame() -> None:
    frame = bytearray(HEARTBEAT)
    frame[1] = 0x30  # claims 52 bytes: swallows the next frame as its body, then fails its CRC
    rec = frames_of(bytes(frame) + GOOD[16] + GOOD[0])
    rec.flush()
    assert raws(rec) == [GOOD[16], GOOD[0]]


def test_stray_start_flag_waits_without_filter_and_flush_recovers() -> None:
    stray = bytes.fromhex("68FF00000003")  # plausible header: flag 0, type 0x03, length 255
    rec = frames_of(stray + HEARTBEAT)
    assert rec.frames == [] and rec.decoder.buffered == len(stray + HEARTBEAT)  # waiting for 259 bytes
    rec.flush()
    assert raws(rec) == [HEARTBEAT]
    assert rec.errors[0].code == "truncated"


def test_length_filter_rejects_an_implausible_header_at_once() -> None:
    stray = bytes.fromhex("68FF00000003")
    rec = frames_of(stray + HEARTBEAT, length_filter=plausible_length)
    assert raws(rec) == [HEARTBEAT]
    assert rec.errors[0].code == "bad_header" and rec.errors[0].frame_type == 0x03


def test_impossible_headers_are_rejected_early() -> None:
    rec = frames_of(bytes.fromhex("6803") + bytes.fromhex("68FF000007") + HEARTBEAT)
    assert raws(rec) == [HEARTBEAT]
    assert [e.code for e in rec.errors][:2] == ["bad_header", "bad_header"]  # length < 4; flag 0x07


def test_encrypted_frame_is_consumed_whole_and_reported() -> None:
    encrypted = Frame(b"\x00\x09", 1, 0x03, bytes.fromhex("202312120000100100")).encode()
    rec = frames_of(encrypted + HEARTBEAT)
    assert raws(rec) == [HEARTBEAT]
    assert len(rec.errors) == 1 and rec.errors[0].code == "encrypted" and rec.errors[0].raw == encrypted
    assert rec.decoder.garbage_bytes == 0


def test_lenient_crc_in_a_stream() -> None:
    data = b"".join(b + g for b, g in zip(BE_ONLY, GOOD))
    strict = frames_of(data)
    assert raws(strict) == GOOD[: len(BE_ONLY)]
    assert [e.code for e in strict.errors] == ["crc"] * len(BE_ONLY)
    lenient = frames_of(data, lenient_crc=True)
    assert [f.crc_order for f in lenient.frames] == ["be", "le"] * len(BE_ONLY)
    assert raws(lenient) == [x for pair in zip(BE_ONLY, GOOD) for x in pair]


def test_a_garbage_only_pile_is_detectable() -> None:
    rec = frames_of(bytes(range(0x69, 0x100)) * 40)
    assert rec.decoder.frames == 0
    assert rec.decoder.garbage_bytes == rec.decoder.bytes_received == 151 * 40


def test_buffer_stays_bounded_on_a_never_ending_frame() -> None:
    rec = Recorder()
    rec.feed(b"\x68\xff\x00\x00\x00\x03")
    for _ in range(100):
        rec.feed(b"\x00" * 50)
    assert rec.decoder.buffered < MAX_FRAME
    assert rec.errors and rec.errors[0].code == "crc"


def test_flush_on_empty_decoder() -> None:
    assert FrameDecoder().flush() == []


def test_encode_frame_round_trips_through_the_decoder() -> None:
    for frame_type, payload in ((0x7E, b""), (0x13, bytes(251))):
        raw = encode_frame(frame_type, payload, b"\xab\xcd")
        (frame,) = frames_of(raw).frames
        assert (frame.frame_type, frame.payload, frame.seq) == (frame_type, payload, b"\xab\xcd")


# -- fuzzing --------------------------------------------------------------------------------------


DECODER_MODES = [{}, {"lenient_crc": True, "length_filter": plausible_length}]


def _decode_all(rec: Recorder) -> None:
    """decode_message on whatever frames came out: a message or a DecodeError, nothing else."""
    for frame in rec.frames:
        try:
            decode_message(frame)
        except DecodeError:
            pass


@pytest.mark.parametrize("kwargs", DECODER_MODES, ids=["plain", "lenient+filter"])
@FUZZ
@given(data=st.binary(max_size=2000), sizes=st.lists(st.integers(1, 400), max_size=8))
def test_fuzz_random_bytes(kwargs: dict[str, Any], data: bytes, sizes: list[int]) -> None:
    rec = frames_of(data, *sizes, **kwargs)
    rec.flush()
    _decode_all(rec)
    whole = frames_of(data, **kwargs)
    whole.flush()
    assert rec.frames == whole.frames, "how the bytes were split never changes the frames"
    assert rec.decoder.garbage_bytes == whole.decoder.garbage_bytes


@pytest.mark.parametrize("kwargs", DECODER_MODES, ids=["plain", "lenient+filter"])
@FUZZ
@given(data=st.binary(max_size=600).map(lambda b: bytes(0x68 if x < 40 else x for x in b)))
def test_fuzz_start_flag_heavy_bytes(kwargs: dict[str, Any], data: bytes) -> None:
    """Many 0x68s: many candidates, nested resyncs."""
    rec = frames_of(data, **kwargs)
    rec.flush()
    _decode_all(rec)


mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 10_000), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.binary(min_size=1, max_size=20)),
    st.tuples(st.just("delete"), st.integers(0, 10_000), st.integers(1, 20)),
)


@FUZZ
@given(
    frames=st.lists(st.sampled_from(GOOD + BE_ONLY), min_size=1, max_size=6),
    mutations=st.lists(mutation, max_size=4),
    sizes=st.lists(st.integers(1, 300), max_size=6),
    lenient=st.booleans(),
)
def test_fuzz_mutated_valid_frames(
    frames: list[bytes], mutations: list[tuple[str, int, Any]], sizes: list[int], lenient: bool
) -> None:
    data = bytearray(b"".join(frames))
    for kind, where, arg in mutations:
        where %= len(data) + 1
        if kind == "set" and where < len(data):
            data[where] = arg
        elif kind == "insert":
            data[where:where] = arg
        elif kind == "delete":
            del data[where : where + arg]
    rec = frames_of(bytes(data), *sizes, lenient_crc=lenient)
    rec.flush()
    _decode_all(rec)
    for frame in rec.frames:
        assert frame.encode() in bytes(data)
    whole = frames_of(bytes(data), lenient_crc=lenient)
    whole.flush()
    assert rec.frames == whole.frames


@FUZZ
@given(
    frames=st.lists(st.sampled_from(GOOD), min_size=1, max_size=6),
    junk=st.lists(st.binary(max_size=40), min_size=7, max_size=7),
    sizes=st.lists(st.integers(1, 300), max_size=6),
)
def test_fuzz_garbage_between_frames_never_costs_a_frame(
    frames: list[bytes], junk: list[bytes], sizes: list[int]
) -> None:
    data = junk[0] + b"".join(f + j for f, j in zip(frames, junk[1:]))
    rec = frames_of(data, *sizes)
    rec.flush()
    got = iter(raws(rec))
    assert all(any(f == g for g in got) for f in frames), "every real frame comes out, in order"
