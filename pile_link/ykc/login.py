"""Registration, heartbeat and billing model: 0x01-0x06, 0x09/0x0A, 0x57/0x58 (note §5.1, §6).

Result polarity is not uniform across the protocol (P11); each ack documents its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pile_link.ykc.base import Layout, Message, register
from pile_link.ykc.datatypes import GUN_NO, MODEL_NO, PILE_NO, U8, U32, Array, Ascii, Bcd, Record, UInt

TIERS = ("sharp", "peak", "flat", "valley")  # 尖 峰 平 谷: the YKC tier numbers 0..3, in this order
SHARP, PEAK, FLAT, VALLEY = range(4)
SLOTS_PER_DAY = 48


@register
@dataclass(frozen=True)
class Login(Message):
    """0x01 充电桩登录认证 (C→P). Answer with 0x02; on failure close the socket."""

    TYPE: ClassVar[int] = 0x01
    pile_no: str
    pile_type: int  # 0 DC, 1 AC
    gun_count: int
    protocol_version: int  # version x 10: 0x0F = V1.5, 0x10 = V1.6
    firmware_version: str  # ASCII, e.g. "V4.1.50"
    network_type: int  # 0 SIM, 1 LAN, 2 WAN, 3 other
    sim: str  # ICCID as BCD nibbles (may contain A-F); zeros if unknown
    carrier: int  # 0 China Mobile, 2 China Telecom, 3 China Unicom, 4 other
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        ("pile_type", U8),
        ("gun_count", U8),
        ("protocol_version", U8),
        ("firmware_version", Ascii(8)),
        ("network_type", U8),
        ("sim", Bcd(10)),
        ("carrier", U8),
    )


@register
@dataclass(frozen=True)
class LoginAck(Message):
    """0x02 登录认证应答 (P→C). result 0x00 = success, 0x01 = failure."""

    TYPE: ClassVar[int] = 0x02
    pile_no: str
    result: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("result", U8))


@register
@dataclass(frozen=True)
class Heartbeat(Message):
    """0x03 充电桩心跳包 (C→P), every 10 s per gun; three missed mean the link is down."""

    TYPE: ClassVar[int] = 0x03
    pile_no: str
    gun_no: str
    gun_status: int  # 0 normal, 1 fault
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("gun_no", GUN_NO), ("gun_status", U8))


@register
@dataclass(frozen=True)
class HeartbeatAck(Message):
    """0x04 心跳包应答 (P→C). The ack byte is always 0."""

    TYPE: ClassVar[int] = 0x04
    pile_no: str
    gun_no: str
    ack: int = 0
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("gun_no", GUN_NO), ("ack", U8))


@register
@dataclass(frozen=True)
class BillingModelVerify(Message):
    """0x05 计费模型验证请求 (C→P). ``model_no`` is "0000" on first connection; compare as a token (P8)."""

    TYPE: ClassVar[int] = 0x05
    pile_no: str
    model_no: str
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("model_no", MODEL_NO))


@register
@dataclass(frozen=True)
class BillingModelVerifyAck(Message):
    """0x06 计费模型验证请求应答 (P→C). result 0x00 = model matches, 0x01 = differs (pile then sends 0x09)."""

    TYPE: ClassVar[int] = 0x06
    pile_no: str
    model_no: str
    result: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("model_no", MODEL_NO), ("result", U8))


@register
@dataclass(frozen=True)
class BillingModelRequest(Message):
    """0x09 充电桩计费模型请求 (C→P). Answer with 0x0A."""

    TYPE: ClassVar[int] = 0x09
    pile_no: str
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO),)


@dataclass(frozen=True)
class TierRate:
    """One tariff tier: electricity and service rate, each in 0.00001 yuan/kWh (P9: x10^5)."""

    electricity_price: int
    service_price: int


TIER_RATE = Record(TierRate, (("electricity_price", U32), ("service_price", U32)))
TIER_SLOT = UInt(1, max_value=3)  # 0 sharp, 1 peak, 2 flat, 3 valley

_BILLING_MODEL_LAYOUT: Layout = (
    ("pile_no", PILE_NO),
    ("model_no", MODEL_NO),
    ("tiers", Array(TIER_RATE, 4)),
    ("loss_ratio", U8),
    ("slots", Array(TIER_SLOT, SLOTS_PER_DAY)),
)


@dataclass(frozen=True)
class _BillingModel(Message):
    """The 90-byte billing model shared by 0x0A and 0x58 (note §6).

    ``tiers`` are (sharp, peak, flat, valley). ``slots[i]`` is the tier of local time
    [i x 30 min, (i+1) x 30 min) from 00:00. A slot byte other than 0..3 is rejected both ways:
    a pile must never be sent, and we never accept, a model that names a tier that does not exist.
    ``loss_ratio`` has no stated unit (presumably %); the spec asks platforms to send 0.
    """

    pile_no: str
    model_no: str
    tiers: tuple[TierRate, TierRate, TierRate, TierRate]
    loss_ratio: int
    slots: tuple[int, ...]
    LAYOUT: ClassVar[Layout] = _BILLING_MODEL_LAYOUT


@register
@dataclass(frozen=True)
class BillingModelReply(_BillingModel):
    """0x0A 计费模型请求应答 (P→C), answering 0x09 with the same seq.

    JCPP's sample of this frame carries length byte 0x5A for a 94-byte body (P4); we always send
    the right length, 0x5E, and reject the wrong one (its CRC fails over the declared length).
    """

    TYPE: ClassVar[int] = 0x0A


@register
@dataclass(frozen=True)
class BillingModelSet(_BillingModel):
    """0x58 计费模型设置 (P→C): push a new model unprompted (only while the pile is idle). Answered by 0x57."""

    TYPE: ClassVar[int] = 0x58


@register
@dataclass(frozen=True)
class BillingModelSetAck(Message):
    """0x57 计费模型应答 (C→P). result 0x00 = fail, 0x01 = success (the opposite of 0x06, P11)."""

    TYPE: ClassVar[int] = 0x57
    pile_no: str
    result: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("result", U8))
