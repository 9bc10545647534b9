"""Balance updates and the offline card list: 0x41-0x48 (note §5.6).

Physical card numbers are 8 raw bytes, compared byte-wise (P13: implementations disagree on how
to print them). The variable lists are validated strictly: a count byte must match the bytes that
follow, and the spec's maxima (15 / 24 / 26 cards) hold both ways.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pile_link.ykc.base import Layout, Message, register
from pile_link.ykc.datatypes import GUN_NO, LOGICAL_CARD_NO, PHYSICAL_CARD, PILE_NO, U8, U32, Record, Repeated


@register
@dataclass(frozen=True)
class BalanceUpdateAck(Message):
    """0x41 余额更新应答 (C→P). No gun field. result: 0 OK, 1 wrong pile, 2 wrong card.

    The spec's sample says length 0x13; the body is 16 bytes so the length is 0x14 (we use 0x14).
    """

    TYPE: ClassVar[int] = 0x41
    pile_no: str
    physical_card: bytes
    result: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("physical_card", PHYSICAL_CARD), ("result", U8))


@register
@dataclass(frozen=True)
class BalanceUpdate(Message):
    """0x42 远程账户余额更新 (P→C). A zero card updates whoever is charging on the gun."""

    TYPE: ClassVar[int] = 0x42
    pile_no: str
    gun_no: str
    physical_card: bytes
    balance_fen: int
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        ("gun_no", GUN_NO),
        ("physical_card", PHYSICAL_CARD),
        ("balance_fen", U32),
    )


@dataclass(frozen=True)
class OfflineCard:
    logical_card_no: str
    physical_card: bytes


@dataclass(frozen=True)
class CardClearResult:
    physical_card: bytes
    result: int  # 0 fail, 1 cleared
    fail_reason: int


@dataclass(frozen=True)
class CardQueryResult:
    physical_card: bytes
    exists: int  # 0 no, 1 yes


@register
@dataclass(frozen=True)
class OfflineCardSyncAck(Message):
    """0x43 离线卡数据同步应答 (C→P). result 0 fail, 1 saved; fail_reason 1 bad format, 2 storage full."""

    TYPE: ClassVar[int] = 0x43
    pile_no: str
    result: int
    fail_reason: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("result", U8), ("fail_reason", U8))


@register
@dataclass(frozen=True)
class OfflineCardSync(Message):
    """0x44 离线卡数据同步 (P→C): count(1, <= 15) + count x (logical 8 BCD, physical 8)."""

    TYPE: ClassVar[int] = 0x44
    pile_no: str
    cards: tuple[OfflineCard, ...]
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        (
            "cards",
            Repeated(
                Record(OfflineCard, (("logical_card_no", LOGICAL_CARD_NO), ("physical_card", PHYSICAL_CARD))),
                counted=True,
                max_count=15,
            ),
        ),
    )


@register
@dataclass(frozen=True)
class OfflineCardClearAck(Message):
    """0x45 离线卡数据清除应答 (C→P): n x (physical 8, result 1, fail reason 1), no count byte."""

    TYPE: ClassVar[int] = 0x45
    pile_no: str
    results: tuple[CardClearResult, ...]
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        (
            "results",
            Repeated(
                Record(CardClearResult, (("physical_card", PHYSICAL_CARD), ("result", U8), ("fail_reason", U8))),
                counted=False,
                max_count=24,
            ),
        ),
    )


@register
@dataclass(frozen=True)
class OfflineCardClear(Message):
    """0x46 离线卡数据清除 (P→C): count(1, <= 24) + count x physical(8)."""

    TYPE: ClassVar[int] = 0x46
    pile_no: str
    physical_cards: tuple[bytes, ...]
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        ("physical_cards", Repeated(PHYSICAL_CARD, counted=True, max_count=24)),
    )


@register
@dataclass(frozen=True)
class OfflineCardQueryAck(Message):
    """0x47 离线卡数据查询应答 (C→P): n x (physical 8, exists 1), no count byte."""

    TYPE: ClassVar[int] = 0x47
    pile_no: str
    results: tuple[CardQueryResult, ...]
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        (
            "results",
            Repeated(
                Record(CardQueryResult, (("physical_card", PHYSICAL_CARD), ("exists", U8))),
                counted=False,
                max_count=26,
            ),
        ),
    )


@register
@dataclass(frozen=True)
class OfflineCardQuery(Message):
    """0x48 离线卡数据查询 (P→C): count(1, <= 26) + count x physical(8)."""

    TYPE: ClassVar[int] = 0x48
    pile_no: str
    physical_cards: tuple[bytes, ...]
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        ("physical_cards", Repeated(PHYSICAL_CARD, counted=True, max_count=26)),
    )
