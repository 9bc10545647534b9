"""Starting, stopping and settling: 0x31-0x36, 0x3B (and V1.7's 0x3D), 0x40, 0xA1-0xA4 (§5.4, §7, §8).

Money units: balances in fen (0.01 yuan), amounts in 0.0001 yuan, unit prices in
0.00001 yuan/kWh, energy in 0.0001 kWh. The same 32-digit ``trade_no`` links 0x32/0x34, 0x13 and
0x3B; treat it as an opaque key (P18).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from pile_link.ykc.base import Layout, Message, register
from pile_link.ykc.cp56 import CP56
from pile_link.ykc.datatypes import (
    GUN_NO,
    LOGICAL_CARD_NO,
    PHYSICAL_CARD,
    PILE_NO,
    TRADE_NO,
    U8,
    U16,
    U32,
    U40,
    VIN,
    VIN_REVERSED,
    Array,
    Bcd,
    Raw,
    Record,
)

PARALLEL_NO = Bcd(6)  # V1.6 parallel-session id, YYMMDDhhmmss

# StartRequest.start_type
START_BY_CARD, START_BY_ACCOUNT, START_BY_VIN = 1, 2, 3
# TransactionRecord.trade_type (交易标识)
TRADE_APP, TRADE_CARD, TRADE_OFFLINE_CARD, TRADE_VIN = 0x01, 0x02, 0x04, 0x05


# -- charger-initiated start (card / VIN) ----------------------------------------------------------

_START_REQUEST_LAYOUT: Layout = (
    ("pile_no", PILE_NO),
    ("gun_no", GUN_NO),
    ("start_type", U8),
    ("password_required", U8),
    ("card_no", PHYSICAL_CARD),
    ("password", Raw(16)),
    ("vin", VIN_REVERSED),
)


@register
@dataclass(frozen=True)
class StartRequest(Message):
    """0x31 充电桩主动申请启动充电 (C→P): a card swipe or a VIN start; answer with 0x32.

    ``card_no`` is the account or physical card number, 8 raw bytes (P13). ``password`` is the MD5
    of what the driver typed, raw 16 bytes. ``vin`` is in normal reading order: the wire carries
    it reversed (P14, "VIN码需要反序上送") and the codec undoes that.
    """

    TYPE: ClassVar[int] = 0x31
    pile_no: str
    gun_no: str
    start_type: int  # 1 card, 2 account, 3 VIN
    password_required: int  # 0 no, 1 yes
    card_no: bytes
    password: bytes
    vin: str
    LAYOUT: ClassVar[Layout] = _START_REQUEST_LAYOUT


_START_AUTH_LAYOUT: Layout = (
    ("trade_no", TRADE_NO),
    ("pile_no", PILE_NO),
    ("gun_no", GUN_NO),
    ("logical_card_no", LOGICAL_CARD_NO),
    ("balance_fen", U32),
    ("result", U8),
    ("fail_reason", U8),
)


@register
@dataclass(frozen=True)
class StartAuthReply(Message):
    """0x32 运营平台确认启动充电 (P→C). result 0x01 = authorised, 0x00 = refused (P11).

    ``fail_reason`` is typed BCD in the spec but its codes 0x0A and 0x0B are not BCD, so it is a
    plain byte (P16). JCPP's 40-byte version of this frame (no balance) is rejected (P4).
    """

    TYPE: ClassVar[int] = 0x32
    trade_no: str
    pile_no: str
    gun_no: str
    logical_card_no: str
    balance_fen: int  # 0.01 yuan
    result: int
    fail_reason: int  # 1 no account, 2 frozen, 3 balance, ... 0x0B pile takes no cards
    LAYOUT: ClassVar[Layout] = _START_AUTH_LAYOUT


# -- platform-initiated start and stop ------------------------------------------------------------

_REMOTE_START_REPLY_LAYOUT: Layout = (
    ("trade_no", TRADE_NO),
    ("pile_no", PILE_NO),
    ("gun_no", GUN_NO),
    ("result", U8),
    ("fail_reason", U8),
)


@register
@dataclass(frozen=True)
class RemoteStartReply(Message):
    """0x33 远程启动充电命令回复 (C→P). result 0x01 = started. fail_reason: 0 none, 1 pile mismatch,
    2 gun busy, 3 device fault, 4 offline, 5 not plugged (a second 0x33 may follow within 60 s)."""

    TYPE: ClassVar[int] = 0x33
    trade_no: str
    pile_no: str
    gun_no: str
    result: int
    fail_reason: int
    LAYOUT: ClassVar[Layout] = _REMOTE_START_REPLY_LAYOUT


_REMOTE_START_LAYOUT: Layout = (
    ("trade_no", TRADE_NO),
    ("pile_no", PILE_NO),
    ("gun_no", GUN_NO),
    ("logical_card_no", LOGICAL_CARD_NO),
    ("physical_card", PHYSICAL_CARD),
    ("balance_fen", U32),
)


@register
@dataclass(frozen=True)
class RemoteStart(Message):
    """0x34 运营平台远程控制启机 (P→C). The pile must answer 0x33 and report charging within 90 s."""

    TYPE: ClassVar[int] = 0x34
    trade_no: str
    pile_no: str
    gun_no: str
    logical_card_no: str
    physical_card: bytes
    balance_fen: int  # 0.01 yuan, LE (S4 writes it big-endian, P10)
    LAYOUT: ClassVar[Layout] = _REMOTE_START_LAYOUT


@register
@dataclass(frozen=True)
class RemoteStopReply(Message):
    """0x35 远程停机命令回复 (C→P). result 0x01 = stopped. fail_reason: 0 none, 1 pile mismatch,
    2 gun not charging, 3 other."""

    TYPE: ClassVar[int] = 0x35
    pile_no: str
    gun_no: str
    result: int
    fail_reason: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("gun_no", GUN_NO), ("result", U8), ("fail_reason", U8))


@register
@dataclass(frozen=True)
class RemoteStop(Message):
    """0x36 运营平台远程停机 (P→C). A 0x36 must always stop charging."""

    TYPE: ClassVar[int] = 0x36
    pile_no: str
    gun_no: str
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("gun_no", GUN_NO))


# -- transaction record ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TierUsage:
    """One tier of a transaction record (0x3B §7)."""

    price: int  # 0.00001 yuan/kWh, electricity + service rate of the tier
    energy: int  # 0.0001 kWh
    loss_energy: int  # 0.0001 kWh incl. loss ratio
    amount: int  # 0.0001 yuan


TIER_USAGE = Record(TierUsage, (("price", U32), ("energy", U32), ("loss_energy", U32), ("amount", U32)))

_RECORD_HEAD: Layout = (
    ("trade_no", TRADE_NO),
    ("pile_no", PILE_NO),
    ("gun_no", GUN_NO),
    ("start_time", CP56),
    ("end_time", CP56),
)
_RECORD_BODY: Layout = (
    ("tiers", Array(TIER_USAGE, 4)),
    ("meter_start", U40),
    ("meter_end", U40),
    ("energy", U32),
    ("loss_energy", U32),
    ("amount", U32),
    ("vin", VIN),
    ("trade_type", U8),
    ("trade_time", CP56),
    ("stop_reason", U8),
    ("physical_card", PHYSICAL_CARD),
)


@register
@dataclass(frozen=True)
class TransactionRecord(Message):
    """0x3B 交易记录 (C→P), V1.5/V1.6, 158 bytes. Answer every one with 0x40, duplicates too (P20).

    Tolerances, all from the note: ``stop_reason`` and ``trade_type`` are any byte (the spec's own
    sample uses stop reason 0x00, which is not in its table; §7.1); times keep whatever weekday/IV
    bits the pile set (S3 sets the weekday, P17) and all-zero times decode to None; the VIN is in
    forward order here, unlike 0x31 (P14); meter readings are the 5-byte V1.5 fields (P10).
    The codec does not check the sums (tiers vs totals, meter delta): that is the ledger's job, on
    the raw values this record keeps.
    """

    TYPE: ClassVar[int] = 0x3B
    trade_no: str
    pile_no: str
    gun_no: str
    start_time: datetime | None
    end_time: datetime | None
    tiers: tuple[TierUsage, TierUsage, TierUsage, TierUsage]  # sharp, peak, flat, valley
    meter_start: int  # 0.0001 kWh, 5 bytes
    meter_end: int
    energy: int  # total, 0.0001 kWh
    loss_energy: int
    amount: int  # total, 0.0001 yuan
    vin: str
    trade_type: int  # 0x01 app, 0x02 card, 0x04 offline card, 0x05 VIN
    trade_time: datetime | None
    stop_reason: int  # §7.1: 0x40-0x49 normal, 0x4A-0x69 start failed, 0x6A-0x8F abnormal, 0x90 unknown
    physical_card: bytes
    LAYOUT: ClassVar[Layout] = _RECORD_HEAD + _RECORD_BODY

    @property
    def energy_by_tier(self) -> tuple[int, int, int, int]:
        return tuple(t.energy for t in self.tiers)  # type: ignore[return-value]


@register
@dataclass(frozen=True)
class TransactionRecordV17(TransactionRecord):
    """0x3D: V1.7's transaction record, 0x3B plus 43 bytes of meter data after the end time.

    V1.7 is out of scope for this platform, but the frame is settled exactly like 0x3B, so it is a
    subclass: a handler for TransactionRecord handles both. Added so a V1.7 pile's money is not
    dropped as an unknown frame.
    """

    TYPE: ClassVar[int] = 0x3D
    meter_no: str  # 6 BCD
    meter_cipher: bytes  # 34 bytes
    meter_protocol_version: int
    encryption_method: int
    LAYOUT: ClassVar[Layout] = (
        _RECORD_HEAD
        + (
            ("meter_no", Bcd(6)),
            ("meter_cipher", Raw(34)),
            ("meter_protocol_version", U16),
            ("encryption_method", U8),
        )
        + _RECORD_BODY
    )


@register
@dataclass(frozen=True)
class TransactionConfirm(Message):
    """0x40 交易记录确认 (P→C). result 0x00 = accepted, 0x01 = invalid bill. Send only after the record
    is stored; it means "received", not "settled"."""

    TYPE: ClassVar[int] = 0x40
    trade_no: str
    result: int
    LAYOUT: ClassVar[Layout] = (("trade_no", TRADE_NO), ("result", U8))


# -- V1.6 parallel (dual-gun) charging ------------------------------------------------------------
# Separate classes rather than subclasses of 0x31-0x34: a parallel start must be authorised on
# every gun, so a handler for a plain start must not catch it by accident.


@register
@dataclass(frozen=True)
class ParallelStartRequest(Message):
    """0xA1 (C→P): 0x31 plus main/aux flag and the charger-generated parallel-session id."""

    TYPE: ClassVar[int] = 0xA1
    pile_no: str
    gun_no: str
    start_type: int
    password_required: int
    card_no: bytes
    password: bytes
    vin: str  # reversed on the wire, as in 0x31
    main_aux: int  # 0 main gun, 1 auxiliary gun
    parallel_no: str  # YYMMDDhhmmss, same on both guns
    LAYOUT: ClassVar[Layout] = _START_REQUEST_LAYOUT + (("main_aux", U8), ("parallel_no", PARALLEL_NO))


@register
@dataclass(frozen=True)
class ParallelStartAuthReply(Message):
    """0xA2 (P→C): 0x32 plus the parallel-session id. The spec's sample wrongly shows type 0x32."""

    TYPE: ClassVar[int] = 0xA2
    trade_no: str
    pile_no: str
    gun_no: str
    logical_card_no: str
    balance_fen: int
    result: int
    fail_reason: int
    parallel_no: str
    LAYOUT: ClassVar[Layout] = _START_AUTH_LAYOUT + (("parallel_no", PARALLEL_NO),)


@register
@dataclass(frozen=True)
class ParallelRemoteStartReply(Message):
    """0xA3 (C→P): 0x33 plus main/aux flag and parallel-session id (the spec's table has the
    direction of 0xA3/0xA4 swapped)."""

    TYPE: ClassVar[int] = 0xA3
    trade_no: str
    pile_no: str
    gun_no: str
    result: int
    fail_reason: int
    main_aux: int
    parallel_no: str
    LAYOUT: ClassVar[Layout] = _REMOTE_START_REPLY_LAYOUT + (("main_aux", U8), ("parallel_no", PARALLEL_NO))


@register
@dataclass(frozen=True)
class ParallelRemoteStart(Message):
    """0xA4 (P→C): 0x34 plus the platform-generated parallel-session id. Balance in fen as in 0x34
    (S3 forgets the x100 here, P9)."""

    TYPE: ClassVar[int] = 0xA4
    trade_no: str
    pile_no: str
    gun_no: str
    logical_card_no: str
    physical_card: bytes
    balance_fen: int
    parallel_no: str
    LAYOUT: ClassVar[Layout] = _REMOTE_START_LAYOUT + (("parallel_no", PARALLEL_NO),)
