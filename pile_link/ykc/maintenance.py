"""Settings and maintenance: 0x51/0x52, 0x55/0x56, 0x61-0x63, 0x91-0x94 (note §5.7)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from pile_link.ykc.base import Layout, Message, register
from pile_link.ykc.cp56 import CP56
from pile_link.ykc.datatypes import GUN_NO, PILE_NO, U8, U16, Ascii, Raw


@register
@dataclass(frozen=True)
class WorkParamsAck(Message):
    """0x51 充电桩工作参数设置应答 (C→P). result 0 fail, 1 success."""

    TYPE: ClassVar[int] = 0x51
    pile_no: str
    result: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("result", U8))


@register
@dataclass(frozen=True)
class WorkParams(Message):
    """0x52 充电桩工作参数设置 (P→C). disabled: 0x00 allowed to work, 0x01 locked.

    ``max_power_pct`` is 30-100 in the spec, but the codec carries any byte (JCPP sends 240): range
    policy belongs to the command that builds this message, not to the wire format.
    """

    TYPE: ClassVar[int] = 0x52
    pile_no: str
    disabled: int
    max_power_pct: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("disabled", U8), ("max_power_pct", U8))


@register
@dataclass(frozen=True)
class TimeSyncAck(Message):
    """0x55 对时设置应答 (C→P): the 0x56 body echoed back."""

    TYPE: ClassVar[int] = 0x55
    pile_no: str
    time: datetime | None
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("time", CP56))


@register
@dataclass(frozen=True)
class TimeSync(Message):
    """0x56 对时设置 (P→C): the pile's local wall-clock time (China time), naive. Send after login
    and at least daily."""

    TYPE: ClassVar[int] = 0x56
    pile_no: str
    time: datetime | None
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("time", CP56))


@register
@dataclass(frozen=True)
class ParkingLockStatus(Message):
    """0x61 地锁数据上送 (C→P). lock_state 00 not in position, 0x55 raised, 0xFF lowered;
    parking_state 00 empty, 0xFF occupied; alarm 00 none, 0xFF arm damaged, 0x55 lift fault."""

    TYPE: ClassVar[int] = 0x61
    pile_no: str
    gun_no: str
    lock_state: int
    parking_state: int
    lock_battery_pct: int
    alarm: int
    reserved: bytes
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        ("gun_no", GUN_NO),
        ("lock_state", U8),
        ("parking_state", U8),
        ("lock_battery_pct", U8),
        ("alarm", U8),
        ("reserved", Raw(4)),
    )


@register
@dataclass(frozen=True)
class ParkingLockCommand(Message):
    """0x62 遥控地锁升锁与降锁命令 (P→C). command 0x55 raise, 0xFF lower. Length 0x11 (the spec's
    samples say 0x0D, which does not match the body, P3)."""

    TYPE: ClassVar[int] = 0x62
    pile_no: str
    gun_no: str
    command: int
    reserved: bytes = bytes(4)
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("gun_no", GUN_NO), ("command", U8), ("reserved", Raw(4)))


@register
@dataclass(frozen=True)
class ParkingLockReply(Message):
    """0x63 充电桩返回数据 (C→P), answering 0x62."""

    TYPE: ClassVar[int] = 0x63
    pile_no: str
    gun_no: str
    result: int
    reserved: bytes
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("gun_no", GUN_NO), ("result", U8), ("reserved", Raw(4)))


@register
@dataclass(frozen=True)
class RebootAck(Message):
    """0x91 远程重启应答 (C→P). result 0 fail, 1 success."""

    TYPE: ClassVar[int] = 0x91
    pile_no: str
    result: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("result", U8))


@register
@dataclass(frozen=True)
class Reboot(Message):
    """0x92 远程重启 (P→C). exec_control 1 immediately, 2 when idle.

    Lenient (P21): JCPP writes exec_control as a 4-byte big-endian int (length 0x0F). We read the
    first byte, as the note allows, and keep the other bytes in ``trailing``; for JCPP's frame that
    gives exec_control 0 (it meant 1). We always send the 1-byte form.
    """

    TYPE: ClassVar[int] = 0x92
    LENIENT_TRAILING: ClassVar[bool] = True
    pile_no: str
    exec_control: int
    trailing: bytes = b""
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("exec_control", U8))


@register
@dataclass(frozen=True)
class RemoteUpdateAck(Message):
    """0x93 远程更新应答 (C→P). status 0x00 success, 1 wrong pile, 2 firmware/model mismatch, 3 timeout."""

    TYPE: ClassVar[int] = 0x93
    pile_no: str
    status: int
    LAYOUT: ClassVar[Layout] = (("pile_no", PILE_NO), ("status", U8))


@register
@dataclass(frozen=True)
class RemoteUpdate(Message):
    """0x94 远程更新 (P→C): an FTP download described by server, port, user, password and path."""

    TYPE: ClassVar[int] = 0x94
    pile_no: str
    pile_model: int  # 1 DC, 2 AC
    pile_power: int  # BIN, 2 bytes
    server: str  # ASCII(16)
    port: int
    username: str  # ASCII(16)
    password: str  # ASCII(16)
    file_path: str  # ASCII(32)
    exec_control: int  # 1 immediately, 2 when idle
    timeout_min: int  # download timeout
    LAYOUT: ClassVar[Layout] = (
        ("pile_no", PILE_NO),
        ("pile_model", U8),
        ("pile_power", U16),
        ("server", Ascii(16)),
        ("port", U16),
        ("username", Ascii(16)),
        ("password", Ascii(16)),
        ("file_path", Ascii(32)),
        ("exec_control", U8),
        ("timeout_min", U8),
    )
